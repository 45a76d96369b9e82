//! A minimal HTTP/1.1 client for the server's HTTP front (status line, token API, metrics),
//! written against RFC 9112 over a blocking `TcpStream`: one request per connection, as the
//! server answers with `Connection: close`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use super::socks5::IO_TIMEOUT;

/// A response as received.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics, showing it, if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }
}

/// Sends one request to `addr` and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    api_key: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = api_key {
        req.push_str(&format!("X-API-Key: {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path}: malformed response {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect::<Option<_>>()?;
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return None;
        }
        body.truncate(len);
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// The API of one server, with its key.
pub struct Api {
    pub addr: SocketAddr,
    pub key: String,
}

impl Api {
    pub fn new(addr: SocketAddr, key: &str) -> Api {
        Api {
            addr,
            key: key.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, Some(&self.key), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        request(
            self.addr,
            "POST",
            path,
            Some(&self.key),
            Some(&body.to_string()),
        )
    }

    pub fn delete(&self, path: &str, body: Option<&Value>) -> Response {
        let b = body.map(Value::to_string);
        request(self.addr, "DELETE", path, Some(&self.key), b.as_deref())
    }

    /// `GET /api/status` as JSON (asserting a 200).
    #[track_caller]
    pub fn status(&self) -> Value {
        let r = self.get("/api/status");
        assert_eq!(r.status, 200, "status: {r:?}");
        r.json()
    }

    /// The status line of `token`, if listed.
    pub fn token_status(&self, token: &str) -> Option<Value> {
        self.status()["tokens"]
            .as_array()?
            .iter()
            .find(|t| t["token"] == token)
            .cloned()
    }

    /// `POST /api/token` with `body`, asserting success; the response JSON.
    #[track_caller]
    pub fn add_token(&self, body: Value) -> Value {
        let r = self.post("/api/token", &body);
        let v = r.json();
        assert!(
            r.status == 200 && v["success"] == true,
            "adding {body} failed: {r:?}"
        );
        v
    }

    /// `GET /metrics` (asserting a 200).
    #[track_caller]
    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "metrics: {r:?}");
        Metrics(r.body)
    }
}

/// A Prometheus text exposition.
#[derive(Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample named exactly `series` (`name` or `name{label="v"}`).
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                (name == series).then(|| v.parse().ok())?
            })
    }

    /// Like [`Metrics::value`], panicking (with the text) when the series is missing.
    #[track_caller]
    pub fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no {series} in metrics:\n{}", self.0))
    }
}
