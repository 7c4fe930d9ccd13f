//! Every way opening an S3 backend can fail gets a typed error, quickly, and no error
//! reveals the secret key. Also: how conditional creates behave when the network or the
//! server misbehaves (through a fault-injecting proxy in front of moto).

mod support;

use std::time::Duration;

use bytes::Bytes;
use segstore::backend::s3::{S3Backend, S3Config, S3Credentials};
use segstore::backend::{ObjectBackend, PutOutcome};
use segstore::keys::ObjectKey;
use segstore::{Error, S3Storage, SegmentStorage, StorageBackend, StoragePath};
use support::proxy::{Fault, Proxy};
use support::{moto, proxy};

/// Connects, expecting failure, and checks the error never shows the secret.
async fn connect_err(config: S3Config) -> Error {
    let err = S3Storage::connect(config)
        .await
        .expect_err("connect should have failed");
    assert_no_secret(&err);
    eprintln!("ERR: {err}\n DBG: {err:?}");
    err
}

fn assert_no_secret(err: &Error) {
    let mut shown = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        shown.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    assert!(
        !shown.contains(moto::SECRET_KEY),
        "the secret key leaked into an error: {shown}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_permission_denied() {
    let Some((server, bucket)) = moto::auth_server().await else {
        return;
    };
    let mut config = moto::config_for(&server.endpoint, &bucket);
    config.credentials = Some(S3Credentials::new("AKIAWRONGWRONGWRONG0", moto::SECRET_KEY));
    match connect_err(config).await {
        Error::PermissionDenied { .. } => {}
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_bucket_is_bucket_not_found() {
    let Some(server) = moto::server() else { return };
    let bucket = moto::new_bucket_name(); // never created
    match connect_err(moto::config_for(&server.endpoint, &bucket)).await {
        Error::BucketNotFound { bucket: b } => assert_eq!(b, bucket),
        other => panic!("expected BucketNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    // Needs no server: a loopback port nobody listens on refuses at once.
    let endpoint = format!("http://127.0.0.1:{}", moto::closed_port());
    let mut config = moto::config_for(&endpoint, "some-bucket");
    config.connect_timeout = Duration::from_millis(500);
    match connect_err(config).await {
        Error::Unavailable { .. } => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn server_without_conditional_writes_is_unsupported() {
    let Some(server) = moto::server() else { return };
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    // The same moto, seen through a proxy that drops If-None-Match: it then accepts a
    // second create of the same key, like a server without conditional writes.
    let port = proxy::strip_request_header(server.port, "If-None-Match");
    let mut config = moto::config_for(&format!("http://127.0.0.1:{port}"), &config.bucket);
    config.prefix = "through-proxy".into();
    match connect_err(config).await {
        Error::Unsupported(message) => {
            assert!(message.contains("If-None-Match"), "{message}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn conditional_writes_check_passes_without_the_proxy() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    S3Storage::connect(config)
        .await
        .expect("moto enforces If-None-Match");
}

#[tokio::test]
async fn invalid_config_is_rejected_before_any_request() {
    let endpoint = format!("http://127.0.0.1:{}", moto::closed_port());
    type Breakage = Box<dyn Fn(&mut S3Config)>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("empty bucket", Box::new(|c| c.bucket.clear())),
        ("escaping prefix", Box::new(|c| c.prefix = "a/../b".into())),
        ("tiny parts", Box::new(|c| c.part_size = 1024)),
        ("no attempts", Box::new(|c| c.max_attempts = 0)),
        ("no parallelism", Box::new(|c| c.max_parts_in_flight = 0)),
        (
            "bad endpoint",
            Box::new(|c| c.endpoint = Some("127.0.0.1:9".into())),
        ),
    ];
    for (name, break_it) in cases {
        let mut config = moto::config_for(&endpoint, "bucket");
        break_it(&mut config);
        match connect_err(config).await {
            Error::InvalidConfig(_) => {}
            other => panic!("{name}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn config_debug_redacts_the_secret() {
    let mut config = moto::config_for("http://127.0.0.1:1", "bucket");
    config.credentials = Some(
        S3Credentials::new(moto::ACCESS_KEY, moto::SECRET_KEY).with_session_token("tok-SECRET"),
    );
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(moto::SECRET_KEY) && !shown.contains("tok-SECRET"),
        "{shown}"
    );
    assert!(shown.contains(moto::ACCESS_KEY));
}

/// A backend on a fresh bucket, reached through a proxy that injects no fault yet (so
/// that `connect`'s own checks pass).
async fn through_proxy() -> Option<(S3Backend, Proxy)> {
    let server = moto::server()?;
    let bucket = moto::fresh_bucket().await?.bucket;
    let proxy = Proxy::start(server.port, Fault::None);
    let config = moto::config_for(&proxy.endpoint(), &bucket);
    Some((S3Backend::connect(config).await.unwrap(), proxy))
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

#[tokio::test]
async fn conditional_put_retries_after_conflicts() {
    let Some((b, proxy)) = through_proxy().await else {
        return;
    };
    // 409 ConditionalRequestConflict: another conditional write was in flight and ours was
    // rejected unapplied, so asking again is safe.
    proxy.set_fault(Fault::ConflictOnConditionalPut(2));
    let k = key("manifests/c/00000000000000000001");
    let outcome = b
        .put_if_absent(&k, Bytes::from_static(b"mine"))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(
        proxy.fault(),
        Fault::ConflictOnConditionalPut(0),
        "both 409s were seen"
    );
    assert_eq!(b.get(&k).await.unwrap(), "mine");
}

#[tokio::test]
async fn conditional_put_that_keeps_conflicting_decides_by_reading() {
    let Some((b, proxy)) = through_proxy().await else {
        return;
    };
    proxy.set_fault(Fault::ConflictOnConditionalPut(usize::MAX));
    // Nothing there: every attempt was rejected, and no guess is made.
    let absent = key("manifests/c/00000000000000000001");
    let err = b
        .put_if_absent(&absent, Bytes::from_static(b"mine"))
        .await
        .unwrap_err();
    assert_no_secret(&err);
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(b.head(&absent).await.unwrap().is_none());
    // Another writer's object there (plain puts pass the proxy): ours never landed.
    let taken = key("manifests/c/00000000000000000002");
    b.put(&taken, Bytes::from_static(b"theirs")).await.unwrap();
    let outcome = b
        .put_if_absent(&taken, Bytes::from_static(b"mine"))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::AlreadyExists);
    assert_eq!(b.get(&taken).await.unwrap(), "theirs");
}

#[tokio::test]
async fn lost_answer_to_a_conditional_put_is_an_error_not_a_guess() {
    let Some((b, proxy)) = through_proxy().await else {
        return;
    };
    proxy.set_fault(Fault::LoseConditionalPutAnswers);
    let k = key("manifests/c/00000000000000000001");
    let err = b
        .put_if_absent(&k, Bytes::from_static(b"mine"))
        .await
        .expect_err("an unanswered create must not be reported as Created or AlreadyExists");
    assert_no_secret(&err);
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    // The server did apply it; reading back is how the commit layer learns it won.
    proxy.set_fault(Fault::None);
    assert_eq!(b.get(&k).await.unwrap(), "mine");
}

#[tokio::test]
async fn a_commit_that_lands_after_the_client_gave_up_is_never_reported_as_failed() {
    let Some(server) = moto::server() else { return };
    let Some(direct) = moto::fresh_bucket().await else {
        return;
    };
    let proxy = Proxy::start(server.port, Fault::None);
    let mut config = moto::config_for(&proxy.endpoint(), &direct.bucket);
    config.operation_timeout = Duration::from_millis(500);
    let store = S3Storage::connect(config).await.unwrap();
    let path = |name: &str| StoragePath::new("c", StorageBackend::Tantivy, "s", name);
    store.write(&path("first"), b"1").await.unwrap();
    // The commit PUT stalls until the client times out, and reaches the server only after
    // the writer has read the version back and found it absent.
    proxy.set_fault(Fault::DelayConditionalPuts(1));
    let result = store
        .store()
        .write_bytes(&path("late"), "late".into())
        .await;
    let waiting = proxy.clone();
    tokio::task::spawn_blocking(move || waiting.wait_for_late_requests())
        .await
        .unwrap();
    assert_eq!(proxy.counts().applied_late, 1, "the delayed create arrived");
    proxy.set_fault(Fault::None);
    let fresh = S3Storage::connect(direct).await.unwrap();
    let landed = fresh.read(&path("late")).await.ok() == Some(b"late".to_vec());
    match result {
        Ok(info) => assert!(landed && info.version == 2, "{info:?}"),
        Err(Error::CommitOutcomeUnknown {
            version, commit_id, ..
        }) => {
            let won = fresh
                .root_at("c", version)
                .await
                .is_ok_and(|r| r.commit_id == commit_id);
            assert_eq!(won, landed);
        }
        Err(e) => assert!(!landed, "the commit failed ({e}) but landed later"),
    }
    assert_eq!(fresh.head("c").await.unwrap().version, 2, "one version");
}
