//! A real S3 server for tests: `moto_server`, started once per test binary on a free
//! loopback port, and a fresh bucket per test.
//!
//! If `moto_server` is not installed, tests fail when `CI=true` (a skipped suite must never
//! look green there) and are skipped loudly otherwise. `scripts/ensure-test-deps.sh`
//! installs it.
//!
//! moto checks `If-None-Match: *` and then stores the object as two steps, on a thread per
//! request, so two concurrent creates can both succeed (real S3 decides atomically). The
//! harness therefore serialises moto's request handling through a `sitecustomize` module
//! on `PYTHONPATH` that wraps moto's WSGI app in a lock; otherwise the create-race tests
//! would test moto's race instead of segstore.
//!
//! The server dies with the test process: it is started with `PR_SET_PDEATHSIG`, from a
//! thread that lives as long as the process (the signal fires when the *thread* that
//! spawned the child exits, and test threads come and go).

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use segstore::backend::s3::{S3Config, S3Credentials};

/// Static credentials for the shared server (moto accepts any unless auth is enabled).
pub const ACCESS_KEY: &str = "segstore-test-access-key";
/// A secret distinctive enough to search for in error messages.
pub const SECRET_KEY: &str = "segstore-test-SECRET-d0n0tL3ak";
/// Region used with moto.
pub const REGION: &str = "us-east-1";
/// How long moto may take to start (Python imports are slow on a busy machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Where its output goes, for debugging a failed test.
    pub log: PathBuf,
}

/// Points the S3 tests at another server already running on loopback instead of
/// starting moto (`scripts/test-second-s3-server.sh` sets it): `http://127.0.0.1:PORT`,
/// accepting [`ACCESS_KEY`]/[`SECRET_KEY`].
pub const EXTERNAL_ENDPOINT_VAR: &str = "SEGSTORE_S3_TEST_ENDPOINT";

/// The binary's shared server, started on first use (or the external server of
/// [`EXTERNAL_ENDPOINT_VAR`]); `None` means "skip this test".
pub fn server() -> Option<&'static MotoServer> {
    static SHARED: OnceLock<Option<MotoServer>> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var(EXTERNAL_ENDPOINT_VAR) {
            Ok(endpoint) => Some(external(&endpoint)),
            Err(_) => start_or_skip("shared"),
        })
        .as_ref()
}

fn external(endpoint: &str) -> MotoServer {
    let port = endpoint
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{EXTERNAL_ENDPOINT_VAR} must be http://127.0.0.1:PORT"));
    MotoServer {
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
        log: PathBuf::from("(external server)"),
    }
}

/// A second server with IAM authentication enforced, holding one bucket (returned) that
/// was created before auth was switched on. No credentials are valid on it, which is all a
/// wrong-credentials test needs.
pub async fn auth_server() -> Option<(&'static MotoServer, String)> {
    static AUTH: OnceLock<Option<MotoServer>> = OnceLock::new();
    static BUCKET: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let server = AUTH.get_or_init(|| start_or_skip("auth")).as_ref()?;
    let bucket = BUCKET
        .get_or_init(|| async {
            let bucket = "segstore-auth-bucket".to_owned();
            admin_client(&server.endpoint)
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .expect("creating the bucket on the auth server");
            let reply = http_request(server.port, "POST", "/moto-api/reset-auth", "0")
                .expect("enabling auth on moto");
            assert!(
                reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
                "{reply}"
            );
            bucket
        })
        .await;
    Some((server, bucket.clone()))
}

/// Creates a new, empty bucket on the shared server and returns a config for it, with a
/// key prefix, static test credentials, short timeouts and S3's smallest part size (so
/// multipart paths are exercised with small files). `None` means "skip this test".
pub async fn fresh_bucket() -> Option<S3Config> {
    let server = server()?;
    let bucket = new_bucket_name();
    admin_client(&server.endpoint)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bucket {bucket} on moto: {e:?}"));
    Some(config_for(&server.endpoint, &bucket))
}

/// A test config for `bucket` at `endpoint` (which need not exist).
pub fn config_for(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = S3Config::new(bucket);
    config.prefix = "segstore-test".into();
    config.region = Some(REGION.into());
    config.endpoint = Some(endpoint.to_owned());
    config.force_path_style = true;
    config.credentials = Some(S3Credentials::new(ACCESS_KEY, SECRET_KEY));
    config.connect_timeout = Duration::from_secs(2);
    config.operation_timeout = Duration::from_secs(30);
    config.max_attempts = 2;
    config.multipart_threshold = 5 * 1024 * 1024;
    config.part_size = 5 * 1024 * 1024;
    config.max_parts_in_flight = 2;
    config
}

/// A unique, valid bucket name.
pub fn new_bucket_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "segstore-{}-{}-{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}
/// A new bucket on the server at `endpoint`, with a config using the library's default
/// part sizes and retries (not the tests' small parts) and a long operation timeout: what
/// benchmarks measure.
pub async fn bench_bucket(endpoint: &str) -> S3Config {
    let bucket = new_bucket_name();
    admin_client(endpoint)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("creating the bench bucket");
    let mut config = config_for(endpoint, &bucket);
    let defaults = S3Config::default();
    config.multipart_threshold = defaults.multipart_threshold;
    config.part_size = defaults.part_size;
    config.max_parts_in_flight = defaults.max_parts_in_flight;
    config.operation_timeout = Duration::from_secs(120);
    config.max_attempts = defaults.max_attempts;
    config
}

/// A raw SDK client for test setup and for looking behind the backend's back (for
/// example at multipart uploads left over).
pub fn admin_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port");
    listener.local_addr().expect("local addr").port()
}

fn start_or_skip(which: &str) -> Option<MotoServer> {
    match start(which) {
        Ok(server) => Some(server),
        Err(Missing(why)) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "moto_server is required in CI but {why}; \
                     run scripts/ensure-test-deps.sh before cargo test"
                );
            }
            // Written to the stderr handle directly: libtest captures `eprintln!` of
            // passing tests, and this must be seen.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n######## SKIP: {why}. S3 tests are NOT running. \
                 Install it with scripts/ensure-test-deps.sh ########\n"
            );
            None
        }
    }
}

struct Missing(String);

fn start(which: &str) -> Result<MotoServer, Missing> {
    let port = closed_port();
    // One log per test binary and server, replaced on each run, in cargo's scratch dir.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".into());
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-{binary}-{which}.log"));
    let (tx, rx) = mpsc::channel();
    let log_path = log.clone();
    // This thread spawns the server and then parks forever: PR_SET_PDEATHSIG fires when
    // the spawning thread exits, so it must outlive every test of the binary.
    std::thread::Builder::new()
        .name(format!("moto-{which}"))
        .spawn(move || {
            let spawned = spawn_moto(port, &log_path);
            let failed = spawned.is_err();
            let _ = tx.send(spawned);
            if failed {
                return;
            }
            loop {
                std::thread::park();
            }
        })
        .expect("spawning the moto thread");
    let mut child = rx
        .recv()
        .expect("moto thread died")
        .map_err(|e| Missing(format!("moto_server could not be started ({e})")))?;

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // 127: a shim (pyenv) exists but the command does not.
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            if status.code() == Some(127) {
                return Err(Missing(format!(
                    "moto_server is not installed ({})",
                    output.trim()
                )));
            }
            panic!("moto_server exited at startup with {status}; its output:\n{output}");
        }
        if http_request(port, "GET", "/moto-api/", "").is_ok_and(|r| r.starts_with("HTTP/1")) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("moto_server did not answer within {STARTUP_TIMEOUT:?}; its output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        output.contains(SERIALISED_MARKER),
        "moto started, but its request handling could not be serialised, so create races \
         would be moto's own; its output:\n{output}"
    );
    // The child handle is dropped without waiting: the process lives on until the test
    // binary exits, and the kernel kills it then.
    Ok(MotoServer {
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
        log,
    })
}

/// Python run at interpreter start (as `sitecustomize`): wraps moto's WSGI entry point in a
/// process-wide lock, and says so on stderr so the harness can check it took effect.
const SERIALISE_MOTO: &str = r#"
import sys, threading
try:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication as _App
except Exception as e:
    sys.stderr.write("segstore-harness: could not serialise moto: %r\n" % (e,))
else:
    _lock = threading.Lock()
    _call = _App.__call__
    def _serialised(self, environ, start_response):
        with _lock:
            return _call(self, environ, start_response)
    _App.__call__ = _serialised
    sys.stderr.write("segstore-harness: moto requests serialised\n")
"#;

/// Marker `SERIALISE_MOTO` prints when it worked.
const SERIALISED_MARKER: &str = "segstore-harness: moto requests serialised";

fn spawn_moto(port: u16, log: &PathBuf) -> std::io::Result<std::process::Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let site_dir = log.with_extension("site");
    std::fs::create_dir_all(&site_dir)?;
    std::fs::write(site_dir.join("sitecustomize.py"), SERIALISE_MOTO)?;
    let python_path = match std::env::var_os("PYTHONPATH") {
        Some(existing) if !existing.is_empty() => {
            let mut joined = site_dir.into_os_string();
            joined.push(":");
            joined.push(existing);
            joined
        }
        _ => site_dir.into_os_string(),
    };
    let mut command = Command::new("moto_server");
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONPATH", python_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A minimal HTTP/1.1 request over a fresh connection; returns the whole response.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}
