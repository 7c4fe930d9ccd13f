//! Building the SDK client from an [`S3Config`], and the per-request overrides used where
//! the defaults would be wrong.

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{ProvideCredentials, Region};
use aws_sdk_s3::Client;

use crate::backend::s3::config::S3Config;
use crate::error::{Error, Result};

/// Region used when neither the config nor the environment names one; custom endpoints
/// (MinIO, moto) accept any.
const FALLBACK_REGION: &str = "us-east-1";
/// Upper bound for each check [`S3Backend::connect`](super::S3Backend::connect) makes, so
/// a bad endpoint or credentials fail in seconds rather than after minutes of retries.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts for each open-time check: one retry absorbs a transient blip.
const CHECK_ATTEMPTS: u32 = 2;

/// Builds the client. With no static credentials, resolves the default chain once, so that
/// missing credentials are reported now as [`Error::PermissionDenied`] rather than as a
/// confusing failure of the first request.
pub(super) async fn build(
    config: &S3Config,
    observer: super::server_time::DateObserver,
) -> Result<Client> {
    if let Some(endpoint) = &config.endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::InvalidConfig(format!(
                "s3: endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_timeout(config.operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
    loader = match &config.region {
        Some(region) => loader.region(Region::new(region.clone())),
        None => loader.region(RegionProviderChain::default_provider().or_else(FALLBACK_REGION)),
    };
    if let Some(credentials) = &config.credentials {
        loader = loader.credentials_provider(credentials.to_sdk());
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk_config = loader.load().await;

    if config.credentials.is_none() {
        let provider = sdk_config.credentials_provider().ok_or_else(|| {
            Error::InvalidConfig("s3: no AWS credentials provider is configured".into())
        })?;
        match tokio::time::timeout(CHECK_TIMEOUT, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::PermissionDenied {
                    context: "loading AWS credentials".into(),
                    message: super::errors::cause_chain(&e),
                })
            }
            Err(_) => {
                return Err(Error::Unavailable {
                    context: "loading AWS credentials".into(),
                    message: format!("no answer within {CHECK_TIMEOUT:?}"),
                    source: None,
                })
            }
        }
    }

    let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
        .force_path_style(config.force_path_style)
        .interceptor(observer)
        .interceptor(super::meter::RequestMeter)
        .build();
    Ok(Client::from_conf(s3_config))
}

/// Override for requests that must be sent exactly once: a retry of a request that may
/// have been applied would make its answer ambiguous.
pub(super) fn single_attempt() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
}

/// Override for the checks made at open: few attempts and a short deadline.
pub(super) fn open_check(config: &S3Config) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .retry_config(
            RetryConfig::standard().with_max_attempts(config.max_attempts.min(CHECK_ATTEMPTS)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_timeout(config.operation_timeout.min(CHECK_TIMEOUT))
                .build(),
        )
}

/// Throughput assumed for server-side copies when sizing their deadline: S3 copies
/// inside the region, but a multi-GiB `CopyObject` can still take minutes.
const COPY_BYTES_PER_SEC: u64 = 20 * 1024 * 1024;

/// Override for a server-side copy of `bytes`: the configured operation timeout plus time
/// in proportion to the size, since the whole copy happens within one request.
pub(super) fn copy_of(config: &S3Config, bytes: u64) -> aws_sdk_s3::config::Builder {
    let extra = Duration::from_secs(bytes / COPY_BYTES_PER_SEC);
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_timeout(config.operation_timeout + extra)
            .build(),
    )
}
