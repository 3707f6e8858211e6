//! What the end-to-end tests of the real binary share: one raw HTTP/1.1 exchange and a
//! terminal's signed TMS client. Each test file adds its own calls on top (`impl Tms` blocks).
#![allow(dead_code, reason = "each test binary uses its own part of this module")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long one HTTP exchange may take (a debug build on a busy 2-core machine).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// One HTTP/1.1 exchange: status, head, JSON body (`Null` when the body is not JSON).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A terminal's TMS client: every request signed with its credential and a fresh nonce.
pub struct Tms {
    pub addr: SocketAddr,
    pub terminal_id: String,
    /// The terminal's TMS credential (tests scan for it: it must never be logged or stored).
    pub credential: String,
    nonce: AtomicU64,
}

impl Tms {
    pub fn new(addr: SocketAddr, terminal_id: &str, credential: &str) -> Tms {
        Tms { addr, terminal_id: terminal_id.to_owned(), credential: credential.to_owned(), nonce: AtomicU64::new(0) }
    }

    /// A signed `POST path` (with the operator session when not empty): status and JSON body.
    pub fn call(&self, path: &str, session: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let nonce = format!("e2e-nonce-{:016}", self.nonce.fetch_add(1, Ordering::SeqCst));
        let timestamp_ms = now_ms();
        let signature = kassa_tms::signature::sign(
            self.credential.as_bytes(),
            "POST",
            path,
            &self.terminal_id,
            timestamp_ms,
            &nonce,
            session,
            body.as_bytes(),
        );
        let timestamp = timestamp_ms.to_string();
        let mut headers = vec![
            ("X-Kassa-Terminal", self.terminal_id.as_str()),
            ("X-Kassa-Timestamp", timestamp.as_str()),
            ("X-Kassa-Nonce", nonce.as_str()),
            ("X-Kassa-Signature", signature.as_str()),
        ];
        if !session.is_empty() {
            headers.push(("X-Kassa-Session", session));
        }
        let (status, _, answer) = http(self.addr, "POST", path, &headers, &body);
        (status, answer)
    }
}
