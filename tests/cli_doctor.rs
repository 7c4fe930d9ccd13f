//! `segstore doctor` through the real binary: every check on a healthy local store, a
//! missing store, a bad L1 directory, and S3 (moto) healthy, with refused credentials and
//! unreachable; credentials never printed, nothing written.

mod support;

use std::path::Path;

use support::cli::{json, ok, run, tree};
use support::moto;

fn s3_toml(dir: &Path, bucket: &str, endpoint: &str, key: &str, secret: &str) {
    let toml = format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{bucket}\"\nregion = \"{}\"\n\
         prefix = \"doctor\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\n\
         [storage.s3.credentials]\naccess_key_id = \"{key}\"\nsecret_access_key = \"{secret}\"\n",
        moto::REGION
    );
    std::fs::write(dir.join("s3.toml"), toml).unwrap();
}

/// `check -> status` of a `--json doctor` run, and its exit code.
fn checks(args: &[&str], cwd: &Path) -> (Vec<(String, String)>, Option<i32>, String) {
    let out = run(args, cwd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let list = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (list, out.status.code(), text)
}

fn status<'a>(list: &'a [(String, String)], check: &str) -> &'a str {
    list.iter()
        .find(|(c, _)| c == check)
        .map_or("absent", |(_, s)| s.as_str())
}

#[test]
fn a_healthy_local_store_passes_every_check_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/f", "f"], cwd);
    let before = tree(&cwd.join("segstore-data"));
    let text = ok(&["doctor"], cwd);
    for check in [
        "connectivity",
        "credentials",
        "conditional writes",
        "clock skew",
    ] {
        let line = text.lines().find(|l| l.contains(check)).unwrap_or_default();
        assert!(line.starts_with("ok "), "{check}: {text}");
    }
    assert!(text.lines().all(|l| l.len() <= 80), "{text}");
    let report = json(&["doctor"], cwd);
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(
        tree(&cwd.join("segstore-data")),
        before,
        "doctor wrote to the store"
    );
}

#[test]
fn a_missing_store_and_a_bad_l1_directory_fail() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let (list, code, text) = checks(&["--json", "--data-dir", "typo", "doctor"], cwd);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(status(&list, "store"), "fail", "{text}");
    assert!(!cwd.join("typo").exists(), "doctor created a store");
    std::fs::write(cwd.join("f"), b"x").unwrap();
    ok(&["put", "c/tantivy/f", "f"], cwd);
    std::fs::write(cwd.join("l1"), b"a file, not a directory").unwrap();
    std::fs::write(
        cwd.join("cached.toml"),
        "[storage]\nbackend = \"cached\"\n[storage.local]\ndata_dir = \"segstore-data\"\n\
         [storage.cached]\nl1_path = \"l1\"\nl1_max_size_gb = 1\nl2_backend = \"local\"\n",
    )
    .unwrap();
    let (list, code, text) = checks(&["--json", "--config", "cached.toml", "doctor"], cwd);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(status(&list, "l1 directory"), "fail", "{text}");
    assert_eq!(status(&list, "connectivity"), "ok", "{text}");
}

#[tokio::test]
async fn s3_connectivity_and_credentials_are_checked_and_never_printed() {
    let Some(config) = moto::fresh_bucket().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let endpoint = config.endpoint.clone().unwrap();
    s3_toml(
        &cwd,
        &config.bucket,
        &endpoint,
        moto::ACCESS_KEY,
        moto::SECRET_KEY,
    );
    let auth = moto::auth_server().await;
    let closed = format!("http://127.0.0.1:{}", moto::closed_port());
    tokio::task::spawn_blocking(move || {
        std::fs::write(cwd.join("f"), b"x").unwrap();
        ok(&["--config", "s3.toml", "put", "c/tantivy/f", "f"], &cwd);
        let (list, code, text) = checks(&["--json", "--config", "s3.toml", "doctor"], &cwd);
        assert_eq!(code, Some(0), "{text}");
        for check in ["connectivity", "credentials", "clock skew"] {
            assert_eq!(status(&list, check), "ok", "{check}: {text}");
        }
        assert_ne!(status(&list, "conditional writes"), "absent", "{text}");
        assert!(!text.contains(moto::SECRET_KEY), "{text}");
        // Unreachable: connectivity fails, credentials are not checked.
        s3_toml(&cwd, "b", &closed, "AKIAEXAMPLE", "wrong-secret-1234");
        let (list, code, text) = checks(&["--json", "--config", "s3.toml", "doctor"], &cwd);
        assert_eq!(code, Some(1), "{text}");
        assert_eq!(status(&list, "connectivity"), "fail", "{text}");
        assert_eq!(status(&list, "credentials"), "warn", "{text}");
        assert!(!text.contains("wrong-secret-1234"), "{text}");
        // Refused credentials.
        if let Some((server, bucket)) = auth {
            s3_toml(
                &cwd,
                &bucket,
                &server.endpoint,
                "AKIAEXAMPLE",
                "wrong-secret-1234",
            );
            let (list, code, text) = checks(&["--json", "--config", "s3.toml", "doctor"], &cwd);
            assert_eq!(code, Some(1), "{text}");
            assert_eq!(status(&list, "credentials"), "fail", "{text}");
            assert!(!text.contains("wrong-secret-1234"), "{text}");
        }
    })
    .await
    .unwrap();
}
