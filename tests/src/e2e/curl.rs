//! What an application of an HTTP proxy port sees: curl fetching through it, and a raw
//! exchange (the request's bytes written by hand, the proxy's whole answer read back), which
//! shows every byte of a refusal and whether the proxy closed after it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::daemon::require_program;

/// Proxy settings in the environment would let a client bypass the proxy under test.
pub const PROXY_ENV: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// What curl saw.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// curl exited with success (a 4xx or 5xx from a plain request still counts as success;
    /// a refused CONNECT does not).
    pub ok: bool,
    /// The last response's status (`%{http_code}`): the origin's, or a plain request's proxy
    /// refusal; 0 when there was none.
    pub status: u16,
    /// The proxy's answer to CONNECT (`%{http_connect}`), 0 when none was sent.
    pub connect_status: u16,
    pub body: Vec<u8>,
    pub stderr: String,
}

/// curl fetching `url` through the HTTP proxy `proxy` (`http://[user:pass@]host:port`), as a
/// plain proxied request or, with `tunnel`, through CONNECT (`-p`). No retries, at most 30 s.
pub fn curl(proxy: &str, url: &str, tunnel: bool) -> Fetched {
    let curl = require_program("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "30", "-x", proxy, "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{http_connect}"]);
    if tunnel {
        cmd.arg("-p");
    }
    cmd.arg(url);
    for v in PROXY_ENV {
        cmd.env_remove(v);
    }
    let r = cmd.output().expect("cannot run curl");
    let codes = String::from_utf8_lossy(&r.stdout).to_string();
    let mut it = codes
        .split_whitespace()
        .map(|c| c.parse::<u16>().unwrap_or(0));
    Fetched {
        ok: r.status.success(),
        status: it.next().unwrap_or(0),
        connect_status: it.next().unwrap_or(0),
        body: std::fs::read(&out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&r.stderr).trim().to_string(),
    }
}

/// How a raw exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// The proxy closed (EOF).
    Closed,
    /// The proxy reset the connection.
    Reset,
    /// Still open when the wait was over.
    Open,
}

/// Writes `request` to `port` in one go and reads until the proxy closes or `wait` passes
/// with nothing more: what came back, and how it ended.
pub fn raw_exchange(port: SocketAddr, request: &[u8], wait: Duration) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect_timeout(&port, wait).expect("connect to the proxy port");
    s.set_read_timeout(Some(wait)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(request).expect("write the request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, End::Closed),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (got, End::Open)
            }
            Err(_) => return (got, End::Reset),
        }
    }
}

/// `bytes` as text, with anything not printable ASCII (and `\r`, `\n`) escaped, cut to `max`
/// characters: for messages comparing answers.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let s: String = bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if s.len() > max {
        format!("{}... ({} bytes)", &s[..max], bytes.len())
    } else {
        s
    }
}
