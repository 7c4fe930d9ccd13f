//! [`S3Config`]: where the S3 backend stores objects and how patiently it talks to the
//! server.
//!
//! Credentials live in [`S3Credentials`], whose `Debug` never prints the secret parts, so a
//! config can be logged or put in an error without leaking them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::keys;

/// S3's smallest allowed multipart part (except for the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest allowed part, and the largest object a single `CopyObject` can copy.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// Settings of an [`S3Backend`](super::S3Backend).
///
/// Deserializes from any serde format; every field but `bucket` has a default, and unknown
/// fields are rejected so a typo does not silently fall back to a default. Durations are
/// given as seconds (`2.5`) or as a string with a unit (`"500ms"`, `"30s"`, `"2m"`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket name. Required.
    pub bucket: String,
    /// Key prefix under which every object is stored, such as `"prod/search"`. May be
    /// empty; it is normalised to end with `/`.
    pub prefix: String,
    /// The bucket's region. `None` takes it from the standard AWS sources (`AWS_REGION`,
    /// the profile), falling back to `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint such as `http://127.0.0.1:9000` for MinIO, moto or R2. `None` uses
    /// AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`; most
    /// self-hosted servers need this.
    pub force_path_style: bool,
    /// Static credentials. `None` uses the standard AWS chain (environment, profile, SSO,
    /// web identity, container and instance metadata).
    pub credentials: Option<S3Credentials>,
    /// How long to wait for a TCP/TLS connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Limit for one whole operation including retries; also the longest a download may
    /// stall between two chunks of its body.
    #[serde(deserialize_with = "duration")]
    pub operation_timeout: Duration,
    /// Attempts per operation for transient failures (throttling, 5xx, connection loss),
    /// including the first. Conditional creates are never retried blindly, see
    /// [`put_if_absent`](super::S3Backend).
    pub max_attempts: u32,
    /// Uploads smaller than this are sent with one `PutObject`; larger ones go multipart.
    pub multipart_threshold: u64,
    /// Size of each multipart part. At least 5 MiB (S3's minimum).
    pub part_size: u64,
    /// How many parts of one upload may be in flight at once. Memory use of an upload is
    /// about `(max_parts_in_flight + 1) * part_size`.
    pub max_parts_in_flight: usize,
    /// Objects larger than this are copied with a multipart `UploadPartCopy` instead of one
    /// `CopyObject`. At most 5 GiB, S3's limit for `CopyObject`; lower values exist mainly
    /// for tests.
    pub multipart_copy_threshold: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            force_path_style: false,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(60),
            max_attempts: 3,
            multipart_threshold: 8 * MIB,
            part_size: 8 * MIB,
            max_parts_in_flight: 4,
            multipart_copy_threshold: MAX_PART_SIZE,
        }
    }
}

impl S3Config {
    /// A default config for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            ..S3Config::default()
        }
    }

    /// Checks every value and normalises the prefix (no leading `/`, a trailing `/` unless
    /// empty). Called by [`S3Backend::connect`](super::S3Backend::connect).
    pub fn validate(mut self) -> Result<Self> {
        if self.bucket.is_empty() {
            return Err(Error::InvalidConfig("s3: bucket must not be empty".into()));
        }
        if self.bucket.contains('/') || self.bucket.chars().any(char::is_whitespace) {
            return Err(Error::InvalidConfig(format!(
                "s3: bucket name {:?} contains '/' or whitespace",
                self.bucket
            )));
        }
        self.prefix = normalise_prefix(&self.prefix)?;
        if self.max_attempts == 0 {
            return Err(Error::InvalidConfig(
                "s3: max_attempts must be at least 1".into(),
            ));
        }
        if self.part_size < MIN_PART_SIZE || self.part_size > MAX_PART_SIZE {
            return Err(Error::InvalidConfig(format!(
                "s3: part_size {} must be between 5 MiB and 5 GiB",
                self.part_size
            )));
        }
        if self.multipart_copy_threshold > MAX_PART_SIZE {
            return Err(Error::InvalidConfig(
                "s3: multipart_copy_threshold must be at most 5 GiB".into(),
            ));
        }
        if self.max_parts_in_flight == 0 {
            return Err(Error::InvalidConfig(
                "s3: max_parts_in_flight must be at least 1".into(),
            ));
        }
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(Error::InvalidConfig("s3: timeouts must not be zero".into()));
        }
        Ok(self)
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Spelled out rather than derived so that adding a field is a conscious choice; the
        // credentials redact themselves.
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .field("multipart_copy_threshold", &self.multipart_copy_threshold)
            .finish()
    }
}

/// Static S3 credentials. `Debug` shows the access key id only; the secret key and session
/// token are never printed, and there is deliberately no public getter for them.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    access_key_id: String,
    // Read only by the S3 client.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl S3Credentials {
    /// Long-term credentials: an access key id and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Adds the session token of temporary (STS) credentials.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// The access key id, which identifies but does not authenticate.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// Converts into the SDK's credentials, which also redact themselves in `Debug`.
    #[cfg(feature = "s3")]
    pub(crate) fn to_sdk(&self) -> aws_sdk_s3::config::Credentials {
        aws_sdk_s3::config::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "segstore-static",
        )
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// `""` stays empty; `"/a/b"` and `"a/b/"` become `"a/b/"`. The result is validated like an
/// object key prefix, so no prefix can contain `..` or empty components.
fn normalise_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let normalised = format!("{trimmed}/");
    keys::validate_prefix(&normalised)
        .map_err(|e| Error::InvalidConfig(format!("s3: bad prefix {prefix:?}: {e}")))?;
    Ok(normalised)
}

/// Deserializes a duration from a number of seconds or a string such as `"250ms"`.
fn duration<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    let secs = match Raw::deserialize(de)? {
        Raw::Seconds(secs) => secs,
        Raw::Text(text) => parse_duration_text(&text).map_err(serde::de::Error::custom)?,
    };
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

fn parse_duration_text(text: &str) -> std::result::Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: expected e.g. \"30s\" or \"500ms\""))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        other => return Err(format!("bad duration unit {other:?} in {text:?}")),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_normalisation() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("a/b").unwrap(), "a/b/");
        assert_eq!(normalise_prefix("/a/b/").unwrap(), "a/b/");
        for bad in ["a/../b", "a//b", "..", "a\\b"] {
            assert!(normalise_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut config = S3Config::new("b");
        config.credentials =
            Some(S3Credentials::new("AKIDEXAMPLE", "s3cr3t").with_session_token("t0k3n"));
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_text("250ms").unwrap(), 0.25);
        assert_eq!(parse_duration_text("2m").unwrap(), 120.0);
        assert_eq!(parse_duration_text("1.5").unwrap(), 1.5);
        assert!(parse_duration_text("5 fortnights").is_err());
    }
}
