//! A loopback HTTP proxy in front of moto that injects faults into S3 traffic: it can
//! imitate a server without conditional writes (drop `If-None-Match`), a server busy with
//! concurrent conditional writes (answer 409), or a network that loses the answer to a
//! create after the server applied it. It also logs every request line it saw, which the
//! S3 bench uses to count real HTTP requests per commit.
//!
//! It understands just enough HTTP/1.1 to find request boundaries on kept-alive
//! connections (the header block, then a `Content-Length` or chunked body). Requests are
//! handled one at a time per connection, as the SDK's client never pipelines.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy does to requests.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A running proxy; it lives until the test process exits.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
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
        };
        let shared = proxy.fault.clone();
        let requests = proxy.requests.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let fault = shared.clone();
                let requests = requests.clone();
                thread::spawn(move || {
                    let _ = serve(client, upstream_port, &fault, &requests);
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

fn serve(
    client: TcpStream,
    upstream_port: u16,
    fault: &Mutex<Fault>,
    requests: &Mutex<Vec<String>>,
) -> io::Result<()> {
    let upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
    let mut to_client = client.try_clone()?;
    let mut from_upstream = upstream.try_clone()?;
    let responses = thread::spawn(move || {
        let _ = io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut answer_client = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let mut upstream_writer = upstream;
    let result = (|| -> io::Result<()> {
        while let Some(request) = read_request(&mut reader)? {
            if let Some(line) = request.head.first() {
                requests.lock().unwrap().push(line.trim_end().to_owned());
            }
            let conditional = request.has_header("if-none-match");
            let action = {
                let mut fault = fault.lock().unwrap();
                match &mut *fault {
                    Fault::ConflictOnConditionalPut(left) if conditional && *left > 0 => {
                        *left -= 1;
                        Fault::ConflictOnConditionalPut(1)
                    }
                    Fault::LoseConditionalPutAnswers if conditional => {
                        Fault::LoseConditionalPutAnswers
                    }
                    Fault::StripHeader(h) => Fault::StripHeader(h.clone()),
                    _ => Fault::None,
                }
            };
            match action {
                Fault::None => upstream_writer.write_all(&request.to_bytes(None, &[]))?,
                Fault::StripHeader(h) => {
                    upstream_writer.write_all(&request.to_bytes(Some(&h), &[]))?
                }
                Fault::ConflictOnConditionalPut(_) => answer_conflict(&mut answer_client)?,
                Fault::LoseConditionalPutAnswers => {
                    // Let the server apply it over a side connection, then hang up on the
                    // client as if the network died before the answer arrived.
                    let mut side = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
                    side.write_all(&request.to_bytes(Some("connection"), &["Connection: close"]))?;
                    let mut ignored = Vec::new();
                    side.read_to_end(&mut ignored)?;
                    let _ = answer_client.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
        }
        Ok(())
    })();
    let _ = upstream_writer.shutdown(Shutdown::Both);
    let _ = responses.join();
    result
}

fn answer_conflict(client: &mut TcpStream) -> io::Result<()> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
                <Code>ConditionalRequestConflict</Code>\
                <Message>A conflicting operation occurred.</Message></Error>";
    write!(
        client,
        "HTTP/1.1 409 Conflict\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
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
