//! The HTTP token API of the server (spec section 7), sans-IO: a parsed request in, a status
//! and a JSON body out. The runtime reads the request and writes the response; the decisions
//! live here, beside the machine they change.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::session::{ListenerState, ReverseTokenSpec, ServerMachine, SocksListen, TokenType};
use crate::socks::credentials::ct_eq;
use crate::socks::Credentials;
use crate::time::Instant;

/// One API request, as the runtime read it.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// The `X-API-Key` header, if any.
    pub api_key: Option<&'a str>,
    pub body: &'a [u8],
}

/// What to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// A reverse token was added whose SOCKS5 listener is still opening: the runtime waits
    /// for [`ServerMachine::listener_state`] of this token to settle, then answers with
    /// [`settle`], so that the port serves once the caller has the answer.
    pub pending_listener: Option<String>,
}

impl ApiResponse {
    fn json(status: u16, v: Value) -> Self {
        ApiResponse {
            status,
            content_type: "application/json",
            body: v.to_string(),
            pending_listener: None,
        }
    }

    fn error(status: u16, msg: &str) -> Self {
        Self::json(status, json!({"success": false, "error": msg}))
    }

    fn empty(status: u16) -> Self {
        ApiResponse {
            status,
            content_type: "",
            body: String::new(),
            pending_listener: None,
        }
    }
}

/// Settings the API needs beyond the machine.
pub struct ApiContext<'a> {
    /// The configured key (the API is only served when one is set).
    pub key: &'a str,
    pub version: &'a str,
    /// Host new reverse tokens' SOCKS listeners bind.
    pub socks_host: &'a str,
    /// Picks a free port for a reverse token that names none (the runtime probes the pool).
    pub pick_port: &'a mut dyn FnMut() -> Option<u16>,
}

/// Handle one request under `/api/` (and `/metrics`).
pub fn handle(
    server: &mut ServerMachine,
    now: Instant,
    ctx: &mut ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> ApiResponse {
    let offered = req.api_key.unwrap_or("").as_bytes();
    if !ct_eq(ctx.key.as_bytes(), offered) {
        return ApiResponse::error(401, "invalid API key");
    }
    let path = req.path.trim_end_matches('/');
    match (req.method, path) {
        ("GET", "/api/status") => status(server, ctx),
        (_, "/api/status") => ApiResponse::empty(405),
        ("POST", "/api/token") => add_token(server, ctx, req.body),
        ("DELETE", "/api/token") => {
            let token = serde_json::from_slice::<Value>(req.body)
                .ok()
                .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_string))
                .filter(|t| !t.is_empty());
            match token {
                Some(t) => remove(server, now, &t),
                None => ApiResponse::error(200, "token not specified"),
            }
        }
        ("DELETE", p) if p.starts_with("/api/token/") => {
            let t = percent_decode(&p["/api/token/".len()..]);
            remove(server, now, &t)
        }
        (_, p) if p == "/api/token" || p.starts_with("/api/token/") => ApiResponse::empty(405),
        ("GET", "/metrics") => ApiResponse {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: metrics(server),
            pending_listener: None,
        },
        _ => ApiResponse {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: "404 page not found\n".into(),
            pending_listener: None,
        },
    }
}

fn status(server: &ServerMachine, ctx: &ApiContext<'_>) -> ApiResponse {
    let tokens: Vec<Value> = server
        .status()
        .into_iter()
        .filter(|t| t.kind != TokenType::Connector)
        .map(|t| {
            let mut v = json!({
                "token": t.token,
                "type": match t.kind { TokenType::Forward => "forward", _ => "reverse" },
                "clients_count": t.clients_count,
            });
            if t.kind == TokenType::Reverse {
                // The reference shows -1 for tokens without a listener (autonomy).
                v["port"] = json!(t.port.map_or(-1, i64::from));
                v["connector_tokens"] = json!(t.connector_tokens);
            }
            v
        })
        .collect();
    ApiResponse::json(200, json!({"version": ctx.version, "tokens": tokens}))
}

fn add_token(server: &mut ServerMachine, ctx: &mut ApiContext<'_>, body: &[u8]) -> ApiResponse {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ApiResponse::error(400, "invalid request body");
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    };
    let token = s("token");
    match v.get("type").and_then(|t| t.as_str()) {
        Some("forward") => match server.add_forward_token(token) {
            Ok(t) => ApiResponse::json(200, json!({"success": true, "token": t})),
            Err(e) => ApiResponse::error(200, &e.to_string()),
        },
        Some("reverse") => {
            let port = match v.get("port").and_then(|p| p.as_u64()) {
                Some(p) if (1..=65535).contains(&p) => p as u16,
                Some(_) => return ApiResponse::error(400, "invalid port"),
                None => match (ctx.pick_port)() {
                    Some(p) => p,
                    None => return ApiResponse::error(500, "no free port in the pool"),
                },
            };
            let credentials = match (s("username"), s("password")) {
                (Some(u), Some(p)) => Some(Arc::new(Credentials::new(u, p))),
                _ => None,
            };
            let spec = ReverseTokenSpec {
                token,
                socks: Some(SocksListen {
                    host: ctx.socks_host.to_string(),
                    port,
                    credentials,
                }),
                allow_manage_connector: v
                    .get("allow_manage_connector")
                    .and_then(|b| b.as_bool())
                    .unwrap_or(false),
            };
            let spec_manages = spec.allow_manage_connector;
            match server.add_reverse_token(spec) {
                Ok(t) => {
                    // Tokens added at run time serve at once, provider or not.
                    server.open_listener_now(&t);
                    // A token whose providers manage their connectors has no port (the
                    // reference's -1).
                    let port = if spec_manages { -1 } else { i64::from(port) };
                    let mut r =
                        ApiResponse::json(200, json!({"success": true, "token": t, "port": port}));
                    r.pending_listener = Some(t);
                    r
                }
                Err(e) => ApiResponse::error(200, &e.to_string()),
            }
        }
        Some("connector") => {
            let Some(reverse) = s("reverse_token") else {
                return ApiResponse::error(200, "reverse_token is required for connector token");
            };
            match server.add_connector_token(token, &reverse) {
                Ok(t) => ApiResponse::json(200, json!({"success": true, "token": t})),
                Err(e) => ApiResponse::error(200, &e.to_string()),
            }
        }
        _ => ApiResponse::error(400, "invalid token type"),
    }
}

/// The answer to a request whose response had a [`ApiResponse::pending_listener`], once that
/// listener has settled (or the runtime stopped waiting): a token whose listener could not
/// open is removed again, and the answer says why, as the reference's does when its port is
/// taken.
pub fn settle(server: &mut ServerMachine, now: Instant, resp: ApiResponse) -> ApiResponse {
    let Some(token) = resp.pending_listener.as_deref() else {
        return resp;
    };
    match server.listener_state(token) {
        ListenerState::Failed(e) => {
            let _ = server.remove_token(now, token);
            ApiResponse::error(200, &format!("cannot open the SOCKS5 listener: {e}"))
        }
        _ => ApiResponse {
            pending_listener: None,
            ..resp
        },
    }
}

fn remove(server: &mut ServerMachine, now: Instant, token: &str) -> ApiResponse {
    // The reference answers success for unknown tokens too.
    let _ = server.remove_token(now, token);
    ApiResponse::json(200, json!({"success": true, "token": token}))
}

/// Prometheus text exposition of the server's counters.
pub fn metrics(server: &ServerMachine) -> String {
    let p = server.plane();
    let s = &p.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "linksocks_links",
        "gauge",
        "WebSocket links currently open.",
        p.links.len().to_string(),
    );
    metric(
        "linksocks_channels",
        "gauge",
        "Channels currently open.",
        p.channel_count().to_string(),
    );
    metric(
        "linksocks_channels_opened_total",
        "counter",
        "Channels opened.",
        s.channels_opened.to_string(),
    );
    metric(
        "linksocks_bytes_received_total",
        "counter",
        "Bytes received on links.",
        s.bytes_from_links.to_string(),
    );
    metric(
        "linksocks_bytes_sent_total",
        "counter",
        "Bytes sent on links.",
        s.bytes_to_links.to_string(),
    );
    metric(
        "linksocks_bad_messages_total",
        "counter",
        "Messages that could not be decoded.",
        s.bad_frames.to_string(),
    );
    metric(
        "linksocks_reconnects_total",
        "counter",
        "Links authenticated by a client instance that had lost one (reconnections).",
        s.reconnects.to_string(),
    );
    metric(
        "linksocks_udp_dropped_total",
        "counter",
        "UDP datagrams dropped (fragmented, foreign source, full link).",
        (s.udp_dropped_fragmented + s.udp_dropped_foreign + s.udp_dropped_backlog).to_string(),
    );
    out.push_str("# HELP linksocks_socks_replies_total SOCKS5 replies sent, by code.\n# TYPE linksocks_socks_replies_total counter\n");
    for (code, n) in s.socks_replies.iter().enumerate() {
        out.push_str(&format!(
            "linksocks_socks_replies_total{{code=\"{code}\"}} {n}\n"
        ));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_percent_escapes_without_panicking() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("é%41"), "éA");
    }

    /// As in the reference, a reverse token whose providers manage their own connectors gets
    /// no SOCKS5 port (-1): one would reach every provider, defeating their isolation.
    #[test]
    fn a_token_managing_connectors_has_no_port() {
        use super::{handle, ApiContext, ApiRequest};
        use crate::session::{ListenerState, ServerConfig, ServerMachine};
        use crate::time::Instant;

        let ids = Box::new(|b: &mut [u8]| b.fill(7));
        let mut server = ServerMachine::new(ServerConfig::default(), ids, Instant::ZERO);
        let mut pick = || Some(4000);
        let mut ctx = ApiContext {
            key: "k",
            version: "v",
            socks_host: "127.0.0.1",
            pick_port: &mut pick,
        };
        let mut call = |method, path, body: &str| {
            let req = ApiRequest {
                method,
                path,
                api_key: Some("k"),
                body: body.as_bytes(),
            };
            let r = handle(&mut server, Instant::ZERO, &mut ctx, &req);
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()
        };
        let body = r#"{"type":"reverse","token":"auto","port":4001,"allow_manage_connector":true}"#;
        let added = call("POST", "/api/token", body);
        assert_eq!(added["success"], true, "{added}");
        assert_eq!(added["port"], -1, "{added}");
        let status = call("GET", "/api/status", "");
        assert_eq!(status["tokens"][0]["port"], -1, "{status}");
        assert_eq!(server.listener_state("auto"), ListenerState::None);
    }
}
