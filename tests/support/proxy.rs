//! A loopback HTTP proxy in front of moto that injects faults into S3 traffic: it can
//! imitate a server without conditional writes (drop `If-None-Match`), a server busy with
//! concurrent conditional writes (answer 409), or a network that loses the answer to a
//! create after the server applied it. In its random mode it injects, at a given rate,
//! 500s, 503 SlowDowns, connection resets, stalls past the client's timeout and lost
//! answers, some of them after the server applied the request, and counts them by kind.
//! It also logs every request line it saw, which the S3 bench uses to count real HTTP
//! requests per commit.
//!
//! It understands just enough HTTP/1.1 to find request boundaries on kept-alive
//! connections (the header block, then a `Content-Length` or chunked body). Requests are
//! handled one at a time per connection, as the SDK's client never pipelines.

// This file waits for or measures real processes and servers: wall-clock time is the point.
#![allow(clippy::disallowed_methods)]

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward everything untouched.
    None,
    /// Remove this request header (any case) from every request.
    StripHeader(String),
    /// Answer the next `n` requests carrying `If-None-Match` with 409
    /// `ConditionalRequestConflict` without forwarding them, then forward again.
    ConflictOnConditionalPut(usize),
    /// Forward requests carrying `If-None-Match` to the server, wait for its answer, then
    /// close the client's connection without passing the answer on.
    LoseConditionalPutAnswers,
    /// Holds the next `n` creates of a manifest (requests carrying `If-None-Match`; blobs
    /// and tree nodes are created that way too) without an answer until the client gives up, then applies them at the server: a request delayed in the network
    /// that lands after the client stopped waiting.
    DelayConditionalPuts(usize),
    /// Injects a random [`FaultKind`] into each request with probability `rate` (requests
    /// carrying `If-None-Match`, the commit points, with `conditional_rate`).
    Random {
        /// Probability for most requests.
        rate: f64,
        /// Probability for conditional creates.
        conditional_rate: f64,
    },
    /// A flaky network, per request: `reset` connection resets (before the server saw the
    /// request), `slow_down` 503 SlowDowns, `lost` answers dropped after the server
    /// applied the request, `delay` requests held for 1.5 s and then forwarded.
    Flaky {
        /// Probability of a reset.
        reset: f64,
        /// Probability of a 503 SlowDown.
        slow_down: f64,
        /// Probability of a lost answer (applied).
        lost: f64,
        /// Probability of a 1.5 s delay.
        delay: f64,
    },
    /// A server whose `If-None-Match: *` is check-then-write: the proxy asks the server
    /// whether the key exists (`HEAD`), answers 412 if it does, and otherwise waits
    /// `window` and forwards the write *without* the condition. Concurrent creates of one
    /// key then all succeed; sequential ones are refused.
    CheckThenWrite {
        /// Time between the check and the write.
        window: Duration,
    },
    /// Holds every request this long, then forwards it: S3's first-byte latency on a
    /// loopback server, for the contention test and the latency bench
    /// ([`latency_from_env`]).
    Latency(Duration),
}

/// The per-request latency the latency test and bench inject: `SEGSTORE_PROXY_LATENCY_MS`
/// milliseconds, 20 by default.
pub fn latency_from_env() -> Duration {
    let ms = std::env::var("SEGSTORE_PROXY_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    Duration::from_millis(ms)
}

/// The faults of [`Fault::Random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `500 InternalError`; half of them after forwarding the request (S3 may have
    /// applied a request it answers with 500).
    InternalError,
    /// `503 SlowDown`, never forwarded (S3 throttles before applying).
    SlowDown,
    /// The connection is reset (RST); half of them after the server applied the request.
    Reset,
    /// No answer until the client gives up and closes the connection. A third are applied
    /// at the server first, a third only after the client gave up (a delayed request), a
    /// third never.
    Timeout,
    /// The server applies the request, then the connection closes without the answer.
    LostAnswer,
}

impl FaultKind {
    /// Every kind, in the order of [`FaultCounts::by_kind`].
    pub const ALL: [FaultKind; 5] = [
        FaultKind::InternalError,
        FaultKind::SlowDown,
        FaultKind::Reset,
        FaultKind::Timeout,
        FaultKind::LostAnswer,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether this kind may be injected after forwarding the request.
    fn may_apply(self) -> bool {
        !matches!(self, FaultKind::SlowDown)
    }
}

/// How many faults a [`Proxy`] injected.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FaultCounts {
    /// Per kind, in the order of [`FaultKind::ALL`].
    pub by_kind: [u64; 5],
    /// Faults injected after the server applied the request.
    pub applied: u64,
    /// Stalls whose request was applied only after the client gave up.
    pub applied_late: u64,
    /// Faults injected into conditional creates.
    pub conditional: u64,
    /// Requests seen, faulted or not.
    pub requests: u64,
}

impl FaultCounts {
    /// All faults injected.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} faults in {} requests (", self.total(), self.requests)?;
        for (kind, n) in FaultKind::ALL.iter().zip(self.by_kind) {
            write!(f, "{kind:?} {n}, ")?;
        }
        write!(
            f,
            "{} after the server applied the request, {} applied after the client gave up, \
             {} on conditional creates)",
            self.applied, self.applied_late, self.conditional
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    by_kind: [AtomicU64; 5],
    applied: AtomicU64,
    applied_late: AtomicU64,
    /// Delayed requests not yet applied.
    pending_late: AtomicU64,
    conditional: AtomicU64,
    requests: AtomicU64,
}

/// A running proxy; it lives until the test process exits.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    counters: Arc<Counters>,
}

/// What one connection's handler shares with the proxy.
struct Shared {
    upstream_port: u16,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    counters: Arc<Counters>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream_port` with the given fault.
    pub fn start(upstream_port: u16, fault: Fault) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Proxy {
            port,
            fault: Arc::new(Mutex::new(fault)),
            requests: Arc::new(Mutex::new(Vec::new())),
            counters: Arc::new(Counters::default()),
        };
        let shared = Arc::new(Shared {
            upstream_port,
            fault: proxy.fault.clone(),
            requests: proxy.requests.clone(),
            counters: proxy.counters.clone(),
        });
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the fault for requests from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// The current fault (a countdown shows how many injections are left).
    pub fn fault(&self) -> Fault {
        self.fault.lock().unwrap().clone()
    }

    /// The faults injected so far by [`Fault::Random`].
    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        FaultCounts {
            by_kind: std::array::from_fn(|i| c.by_kind[i].load(Ordering::Relaxed)),
            applied: c.applied.load(Ordering::Relaxed),
            applied_late: c.applied_late.load(Ordering::Relaxed),
            conditional: c.conditional.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
        }
    }

    /// Waits until every request held for late application has been applied (or given
    /// up on), so that nothing lands behind a check's back. Bounded by the stall limit.
    pub fn wait_for_late_requests(&self) {
        let deadline = std::time::Instant::now() + STALL_LIMIT + LATE_BY * 2;
        while self.counters.pending_late.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "late requests never finished"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The request lines (`PUT /bucket/key?x-id=PutObject HTTP/1.1`) seen since the last
    /// [`take_requests`](Self::take_requests), oldest first; clears the log.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Starts a proxy that removes `header` from every request; returns its port.
pub fn strip_request_header(upstream_port: u16, header: &str) -> u16 {
    Proxy::start(upstream_port, Fault::StripHeader(header.to_owned())).port
}

/// One request as read off the wire.
struct Request {
    /// Header lines (each with its CRLF), without the final empty line.
    head: Vec<String>,
    /// The body exactly as framed on the wire.
    body: Vec<u8>,
}

impl Request {
    fn has_header(&self, name: &str) -> bool {
        self.head
            .iter()
            .skip(1)
            .any(|line| header_name(line) == name)
    }

    fn to_bytes(&self, drop_header: Option<&str>, extra: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 1024);
        for (i, line) in self.head.iter().enumerate() {
            if i > 0 && drop_header.is_some_and(|h| header_name(line).eq_ignore_ascii_case(h)) {
                continue;
            }
            out.extend_from_slice(line.as_bytes());
        }
        for line in extra {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn header_name(line: &str) -> String {
    line.split_once(':')
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What to do with one request.
enum Action {
    Forward,
    Strip(String),
    Conflict,
    LoseAnswer,
    Delay,
    Inject {
        kind: FaultKind,
        apply: Apply,
    },
    /// Hold the request this long, then forward it.
    Pause(Duration),
    /// Check with a `HEAD`, then write without the condition.
    CheckThenWrite(Duration),
}

/// When an injected fault lets the server apply the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Apply {
    Never,
    First,
    AfterHangUp,
}

fn choose(fault: &Mutex<Fault>, conditional: bool, manifest: bool) -> Action {
    let mut fault = fault.lock().unwrap();
    match &mut *fault {
        Fault::ConflictOnConditionalPut(left) if conditional && *left > 0 => {
            *left -= 1;
            Action::Conflict
        }
        Fault::LoseConditionalPutAnswers if conditional => Action::LoseAnswer,
        Fault::DelayConditionalPuts(left) if conditional && manifest && *left > 0 => {
            *left -= 1;
            Action::Delay
        }
        Fault::StripHeader(h) => Action::Strip(h.clone()),
        Fault::Latency(latency) => Action::Pause(*latency),
        Fault::CheckThenWrite { window } if conditional => Action::CheckThenWrite(*window),
        Fault::Flaky {
            reset,
            slow_down,
            lost,
            delay,
        } => {
            let (reset, slow_down, lost, delay) = (*reset, *slow_down, *lost, *delay);
            let x = rand::random::<f64>();
            if x < reset {
                Action::Inject {
                    kind: FaultKind::Reset,
                    apply: Apply::Never,
                }
            } else if x < reset + slow_down {
                Action::Inject {
                    kind: FaultKind::SlowDown,
                    apply: Apply::Never,
                }
            } else if x < reset + slow_down + lost {
                Action::Inject {
                    kind: FaultKind::LostAnswer,
                    apply: Apply::First,
                }
            } else if x < reset + slow_down + lost + delay {
                Action::Pause(Duration::from_millis(1500))
            } else {
                Action::Forward
            }
        }
        Fault::Random {
            rate,
            conditional_rate,
        } => {
            let p = if conditional {
                *conditional_rate
            } else {
                *rate
            };
            if rand::random::<f64>() >= p {
                return Action::Forward;
            }
            let kind = FaultKind::ALL[rand::random_range(0..FaultKind::ALL.len())];
            let apply = match kind {
                FaultKind::LostAnswer => Apply::First,
                FaultKind::Timeout => {
                    [Apply::Never, Apply::First, Apply::AfterHangUp][rand::random_range(0..3)]
                }
                k if k.may_apply() && rand::random::<bool>() => Apply::First,
                _ => Apply::Never,
            };
            Action::Inject { kind, apply }
        }
        _ => Action::Forward,
    }
}

fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let upstream_port = shared.upstream_port;
    let upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
    let mut to_client = client.try_clone()?;
    let mut from_upstream = upstream.try_clone()?;
    // Set when the client's connection must end in a reset: then nobody may shut it down
    // gracefully (a FIN), and the last close of the socket sends the RST.
    let reset = Arc::new(AtomicBool::new(false));
    let reset_seen = reset.clone();
    let responses = thread::spawn(move || {
        let _ = io::copy(&mut from_upstream, &mut to_client);
        if !reset_seen.load(Ordering::SeqCst) {
            let _ = to_client.shutdown(Shutdown::Write);
        }
    });
    let mut answer_client = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let mut upstream_writer = upstream;
    let result = (|| -> io::Result<()> {
        while let Some(request) = read_request(&mut reader)? {
            if let Some(line) = request.head.first() {
                shared
                    .requests
                    .lock()
                    .unwrap()
                    .push(line.trim_end().to_owned());
            }
            shared.counters.requests.fetch_add(1, Ordering::Relaxed);
            let conditional = request.has_header("if-none-match");
            let is_head = request.head.first().is_some_and(|l| l.starts_with("HEAD "));
            let manifest = request
                .head
                .first()
                .is_some_and(|l| l.contains("/manifests/"));
            match choose(&shared.fault, conditional, manifest) {
                Action::Forward => upstream_writer.write_all(&request.to_bytes(None, &[]))?,
                Action::Pause(pause) => {
                    thread::sleep(pause);
                    upstream_writer.write_all(&request.to_bytes(None, &[]))?
                }
                Action::CheckThenWrite(window) => {
                    if exists_upstream(upstream_port, &request)? {
                        answer_error(
                            &mut answer_client,
                            false,
                            "412 Precondition Failed",
                            "PreconditionFailed",
                        )?
                    } else {
                        thread::sleep(window);
                        upstream_writer.write_all(&request.to_bytes(Some("if-none-match"), &[]))?
                    }
                }
                Action::Strip(h) => upstream_writer.write_all(&request.to_bytes(Some(&h), &[]))?,
                Action::Conflict => answer_error(
                    &mut answer_client,
                    is_head,
                    "409 Conflict",
                    "ConditionalRequestConflict",
                )?,
                Action::LoseAnswer => {
                    // Let the server apply it, then hang up on the client as if the network
                    // died before the answer arrived.
                    apply_aside(upstream_port, &request)?;
                    let _ = answer_client.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Action::Delay => {
                    stall_then_apply(&mut reader, &answer_client, shared, &request)?;
                    return Ok(());
                }
                Action::Inject { kind, apply } => {
                    let counters = &shared.counters;
                    counters.by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
                    if conditional {
                        counters.conditional.fetch_add(1, Ordering::Relaxed);
                    }
                    if apply == Apply::First {
                        counters.applied.fetch_add(1, Ordering::Relaxed);
                        apply_aside(upstream_port, &request)?;
                    }
                    match kind {
                        FaultKind::InternalError => answer_error(
                            &mut answer_client,
                            is_head,
                            "500 Internal Server Error",
                            "InternalError",
                        )?,
                        FaultKind::SlowDown => {
                            answer_error(&mut answer_client, is_head, "503 Slow Down", "SlowDown")?
                        }
                        FaultKind::Reset => {
                            reset.store(true, Ordering::SeqCst);
                            set_linger_zero(&answer_client);
                            return Ok(());
                        }
                        FaultKind::Timeout => {
                            if apply == Apply::AfterHangUp {
                                counters.applied.fetch_add(1, Ordering::Relaxed);
                                stall_then_apply(&mut reader, &answer_client, shared, &request)?;
                            } else {
                                stall(&mut reader, &answer_client)?;
                            }
                            return Ok(());
                        }
                        FaultKind::LostAnswer => {
                            let _ = answer_client.shutdown(Shutdown::Both);
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    })();
    drop(reader);
    drop(answer_client);
    let _ = upstream_writer.shutdown(Shutdown::Both);
    let _ = responses.join();
    result
}

/// The longest a stalled connection is held open.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How long after the client gave up a delayed request reaches the server: long enough
/// for the client to have read the key back and found nothing.
const LATE_BY: Duration = Duration::from_millis(300);

/// Stalls like [`stall`], then applies the request [`LATE_BY`] after the client gave up.
/// Counted as pending from before the stall, so that [`Proxy::wait_for_late_requests`]
/// cannot miss it.
fn stall_then_apply(
    reader: &mut BufReader<TcpStream>,
    client: &TcpStream,
    shared: &Shared,
    request: &Request,
) -> io::Result<()> {
    let counters = &shared.counters;
    counters.pending_late.fetch_add(1, Ordering::SeqCst);
    let result = stall(reader, client).and_then(|()| {
        thread::sleep(LATE_BY);
        apply_aside(shared.upstream_port, request)
    });
    counters.applied_late.fetch_add(1, Ordering::SeqCst);
    counters.pending_late.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Silence until the client's timeout makes it hang up (bounded, in case a client has no
/// timeout at all), then closes the connection.
fn stall(reader: &mut BufReader<TcpStream>, client: &TcpStream) -> io::Result<()> {
    reader.get_ref().set_read_timeout(Some(STALL_LIMIT))?;
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Sends `request` to the server over a connection of its own and waits for the answer,
/// which is dropped: the server has applied the request.
fn apply_aside(upstream_port: u16, request: &Request) -> io::Result<()> {
    let mut side = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
    side.write_all(&request.to_bytes(Some("connection"), &["Connection: close"]))?;
    let mut ignored = Vec::new();
    side.read_to_end(&mut ignored)?;
    Ok(())
}

/// Whether the object a request names exists, asked with a `HEAD` over a connection of
/// its own, carrying the request's `Authorization` line (moto does not check signatures,
/// but refuses anonymous reads).
fn exists_upstream(upstream_port: u16, request: &Request) -> io::Result<bool> {
    let target = request
        .head
        .first()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let auth = request
        .head
        .iter()
        .skip(1)
        .find(|line| header_name(line) == "authorization")
        .map(String::as_str)
        .unwrap_or("");
    let mut side = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
    write!(
        side,
        "HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    side.read_to_end(&mut answer)?;
    Ok(answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200"))
}

/// Makes the socket's last close send a reset instead of a graceful close.
fn set_linger_zero(socket: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket we own, with a correctly sized `linger`.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Answers with an S3 error document, keeping the connection open. The answer to a HEAD
/// must have no body, or its bytes would be read as the start of the next answer.
fn answer_error(client: &mut TcpStream, head: bool, status: &str, code: &str) -> io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
         <Code>{code}</Code><Message>Injected by the test proxy.</Message></Error>"
    );
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\n\r\n{}",
        body.len(),
        if head { "" } else { &body }
    )?;
    client.flush()
}

/// Reads one request, or `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    let mut content_length = 0u64;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        let name = header_name(&line);
        let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
        if name == "content-length" {
            content_length = value.parse().unwrap_or(0);
        }
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        head.push(line);
    }
    let mut body = Vec::new();
    if chunked {
        read_chunked(reader, &mut body)?;
    } else {
        reader
            .by_ref()
            .take(content_length)
            .read_to_end(&mut body)?;
    }
    Ok(Some(Request { head, body }))
}

/// Reads a chunked body, keeping its framing.
fn read_chunked(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        body.extend_from_slice(size_line.as_bytes());
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                body.extend_from_slice(line.as_bytes());
                if line == "\r\n" || line.is_empty() {
                    return Ok(());
                }
            }
        }
        // The chunk and its CRLF.
        reader.by_ref().take(size + 2).read_to_end(body)?;
    }
}
