//! A loopback TCP proxy that drops one request header, to imitate an S3-compatible server
//! that ignores it (for example one without conditional writes, by removing
//! `If-None-Match`). Responses pass through untouched.
//!
//! It understands just enough HTTP/1.1 to find request boundaries on kept-alive
//! connections: the header block, then a `Content-Length` or chunked body.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::thread;

/// Starts a proxy to `127.0.0.1:upstream_port` that removes `header` (any case) from every
/// request, and returns its port. It runs until the test process exits.
pub fn strip_request_header(upstream_port: u16, header: &str) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let header = header.to_ascii_lowercase();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let header = header.clone();
            thread::spawn(move || {
                let _ = serve(client, upstream_port, &header);
            });
        }
    });
    port
}

fn serve(client: TcpStream, upstream_port: u16, header: &str) -> io::Result<()> {
    let upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
    let mut to_client = client.try_clone()?;
    let mut from_upstream = upstream.try_clone()?;
    let responses = thread::spawn(move || {
        let _ = io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client);
    let mut writer = upstream;
    let result = forward_requests(&mut reader, &mut writer, header);
    let _ = writer.shutdown(Shutdown::Write);
    let _ = responses.join();
    result
}

fn forward_requests(
    reader: &mut BufReader<TcpStream>,
    upstream: &mut TcpStream,
    header: &str,
) -> io::Result<()> {
    loop {
        let mut head = Vec::new();
        let mut content_length = 0u64;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(()); // client closed the connection
            }
            let is_end = line == "\r\n";
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim();
                if name == header {
                    continue;
                }
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                }
                if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
            head.extend_from_slice(line.as_bytes());
            if is_end {
                break;
            }
        }
        upstream.write_all(&head)?;
        if chunked {
            forward_chunked(reader, upstream)?;
        } else {
            let copied = io::copy(&mut reader.by_ref().take(content_length), upstream)?;
            if copied < content_length {
                return Ok(());
            }
        }
    }
}

fn forward_chunked(reader: &mut BufReader<TcpStream>, upstream: &mut TcpStream) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        upstream.write_all(size_line.as_bytes())?;
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                upstream.write_all(line.as_bytes())?;
                if line == "\r\n" || line.is_empty() {
                    return Ok(());
                }
            }
        }
        // The chunk and its CRLF.
        io::copy(&mut reader.by_ref().take(size + 2), upstream)?;
    }
}
