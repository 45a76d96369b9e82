//! The HTTP token API of the server (spec section 7), sans-IO: a parsed request in, a status
//! and a JSON body out. The runtime reads the request and writes the response; the decisions
//! live here, beside the machine they change.
//!
//! Beyond section 7, as the reference 1.10 has it (spec 12.5): any of several API keys, all
//! with the same rights; per-token `rules` in `POST /api/token`; and `GET`/`PUT
//! /api/config/access` for the server-wide entry and dial rules.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::access::{AccessConfigUpdate, AccessJsonError, AccessRules};
use crate::session::{ListenerState, ReverseTokenSpec, ServerMachine, SocksListen, TokenType};
use crate::socks::credentials::ct_eq;
use crate::socks::Credentials;
use crate::time::Instant;

/// One API request, as the runtime read it.
pub struct ApiRequest<'a> {
    /// The HTTP method (`GET`, `POST`, `PUT`, `DELETE`).
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// The `X-API-Key` header, if any.
    pub api_key: Option<&'a str>,
    /// The request body (JSON for the token and config endpoints).
    pub body: &'a [u8],
}

/// What to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header value; empty: send none (a response with no body).
    pub content_type: &'static str,
    /// The response body.
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
    /// The configured keys, all with the same rights (the API is only served when there is
    /// one). Empty keys never match.
    pub keys: &'a [String],
    /// This build's version, as `/api/status` reports it.
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
    if !key_matches(ctx.keys, req.api_key.unwrap_or("")) {
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
        ("GET", "/api/config/access") => get_access(server),
        ("PUT", "/api/config/access") => put_access(server, req.body),
        (_, "/api/config/access") => ApiResponse::empty(405),
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

/// Whether `offered` is one of `keys`. Every key is compared, in constant time, whatever the
/// outcome of the others: how long the answer takes tells nothing about which key came
/// close, nor how many keys there are before it.
fn key_matches(keys: &[String], offered: &str) -> bool {
    let mut found = false;
    for key in keys {
        // Non-short-circuiting `&` and `|`: each comparison runs.
        found |= !key.is_empty() & ct_eq(key.as_bytes(), offered.as_bytes());
    }
    found
}

/// `GET /api/config/access`: `{"entry":[...]|null,"dial":[...]|null}`.
fn get_access(server: &ServerMachine) -> ApiResponse {
    match serde_json::to_value(server.access_config()) {
        Ok(v) => ApiResponse::json(200, v),
        Err(e) => ApiResponse::error(500, &e.to_string()),
    }
}

/// `PUT /api/config/access`: a side missing or `null` keeps its rules, `[]` empties them.
/// Unlike the reference (which may apply `entry` and then refuse `dial`), nothing changes
/// unless both sides are valid.
fn put_access(server: &mut ServerMachine, body: &[u8]) -> ApiResponse {
    match AccessConfigUpdate::from_json_slice(body) {
        Ok(update) => {
            server.update_access_config(update);
            ApiResponse::json(200, json!({"success": true}))
        }
        Err(AccessJsonError::Malformed(_)) => ApiResponse::error(400, "invalid request body"),
        Err(AccessJsonError::Invalid(e)) => ApiResponse::error(400, &e.to_string()),
    }
}

/// The `rules` member of a `POST /api/token` body, its name matched case-insensitively as Go's
/// decoder does (an exact `rules` wins over other spellings); absent or `null`: no rules.
fn token_rules(v: &Value) -> Result<AccessRules, AccessJsonError> {
    let Some(obj) = v.as_object() else {
        return Ok(AccessRules::default());
    };
    let value = obj.get("rules").or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("rules"))
            .map(|(_, v)| v)
    });
    match value {
        None => Ok(AccessRules::default()),
        Some(r) => AccessRules::from_json_value(r),
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
    // As the reference: rules of the wrong shape fail the whole body (400); an invalid
    // address is the answer of the token type that was asked for (200, "success":false).
    let rules = match token_rules(&v) {
        Err(AccessJsonError::Malformed(_)) => {
            return ApiResponse::error(400, "invalid request body")
        }
        Err(AccessJsonError::Invalid(e)) => Err(e.to_string()),
        Ok(r) => Ok(r),
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("forward") => {
            let rules = match rules {
                Ok(r) => r,
                Err(e) => return ApiResponse::error(200, &e),
            };
            match server.add_forward_token_with_rules(token, rules) {
                Ok(t) => ApiResponse::json(200, json!({"success": true, "token": t})),
                Err(e) => ApiResponse::error(200, &e.to_string()),
            }
        }
        Some("reverse") => {
            let rules = match rules {
                Ok(r) => r,
                Err(e) => return ApiResponse::error(200, &e),
            };
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
            match server.add_reverse_token_with_rules(spec, rules) {
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
            let rules = match rules {
                Ok(r) => r,
                Err(e) => return ApiResponse::error(200, &e),
            };
            match server.add_connector_token_with_rules(token, &reverse, rules) {
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
    let p = server.data_plane();
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
    metric(
        "linksocks_channels_suspended_total",
        "counter",
        "Channels suspended when their link was lost (transport grace).",
        s.channels_suspended.to_string(),
    );
    metric(
        "linksocks_channels_resumed_total",
        "counter",
        "Suspended channels that continued on a new link.",
        s.channels_resumed.to_string(),
    );
    metric(
        "linksocks_channels_expired_total",
        "counter",
        "Suspended channels ended because the grace ran out or the peer no longer knew them.",
        s.channels_expired.to_string(),
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
        let keys = ["k".to_string()];
        let mut ctx = ApiContext {
            keys: &keys,
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

    /// A server machine with no tokens, and a way to call its API with a key.
    struct Harness {
        server: crate::session::ServerMachine,
        keys: Vec<String>,
    }

    impl Harness {
        fn new(keys: &[&str]) -> Harness {
            use crate::session::{ServerConfig, ServerMachine};
            let ids = Box::new(|b: &mut [u8]| b.fill(7));
            Harness {
                server: ServerMachine::new(
                    ServerConfig::default(),
                    ids,
                    crate::time::Instant::ZERO,
                ),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            }
        }

        fn call(&mut self, key: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
            use super::{handle, ApiContext, ApiRequest};
            let mut pick = || Some(4000);
            let mut ctx = ApiContext {
                keys: &self.keys,
                version: "v",
                socks_host: "127.0.0.1",
                pick_port: &mut pick,
            };
            let req = ApiRequest {
                method,
                path,
                api_key: Some(key),
                body: body.as_bytes(),
            };
            let r = handle(&mut self.server, crate::time::Instant::ZERO, &mut ctx, &req);
            let v = if r.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&r.body).unwrap()
            };
            (r.status, v)
        }
    }

    use serde_json::{json, Value};

    fn rules(specs: &[&str]) -> crate::access::AccessRules {
        crate::access::AccessRules::parse_cli(specs).unwrap()
    }

    #[test]
    fn every_configured_key_works_and_no_other() {
        let mut h = Harness::new(&["first-key", "second", ""]);
        for k in ["first-key", "second"] {
            let (status, v) = h.call(k, "GET", "/api/status", "");
            assert_eq!(status, 200, "{k}: {v}");
        }
        for k in [
            "",
            "third",
            "first-ke",
            "first-key2",
            "SECOND",
            "first-key,second",
        ] {
            let (status, v) = h.call(k, "GET", "/api/status", "");
            assert_eq!(status, 401, "{k:?}");
            assert_eq!(v, json!({"success": false, "error": "invalid API key"}));
        }
        // Without keys, nothing gets in (the runtime does not serve the API then anyway).
        let mut none = Harness::new(&[]);
        assert_eq!(none.call("", "GET", "/api/status", "").0, 401);
    }

    #[test]
    fn token_rules_on_post() {
        let mut h = Harness::new(&["k"]);
        let body = r#"{"type":"forward","token":"f","rules":[{"addrs":["127.0.0.1"],"ports":[80,[90,100]]}]}"#;
        let (status, v) = h.call("k", "POST", "/api/token", body);
        assert_eq!((status, &v["success"]), (200, &json!(true)), "{v}");
        let want = crate::access::AccessRules::from_json_value(
            &json!([{"Addrs": ["127.0.0.1"], "Ports": [80, [90, 100]]}]),
        )
        .unwrap();
        assert_eq!(h.server.token_rules("f"), Some(&want));

        // The key is matched whatever its case, as the reference's decoder does.
        let body = r#"{"type":"reverse","token":"r","port":4001,"RULES":[{"Addrs":["10.0.0.0/8"],"Ports":[22]}]}"#;
        let (status, v) = h.call("k", "POST", "/api/token", body);
        assert_eq!((status, &v["success"]), (200, &json!(true)), "{v}");
        assert_eq!(h.server.token_rules("r"), Some(&rules(&["10.0.0.0/8:22"])));
        assert_eq!(
            h.server.entry_rules_for_token("r"),
            &rules(&["10.0.0.0/8:22"])
        );

        let body = r#"{"type":"connector","token":"c","reverse_token":"r","Rules":[{"addrs":["::1"],"ports":[443]}]}"#;
        let (status, v) = h.call("k", "POST", "/api/token", body);
        assert_eq!((status, &v["success"]), (200, &json!(true)), "{v}");
        assert_eq!(h.server.token_rules("c"), Some(&rules(&["::1:443"])));

        // `null` and absent: no rules.
        let (status, _) = h.call(
            "k",
            "POST",
            "/api/token",
            r#"{"type":"forward","token":"n","rules":null}"#,
        );
        assert_eq!(status, 200);
        assert_eq!(h.server.token_rules("n"), Some(&rules(&[])));

        // An invalid address: the token type's answer, 200 with success false, nothing added.
        for ty in [
            r#""type":"forward""#,
            r#""type":"reverse","port":4002"#,
            r#""type":"connector","reverse_token":"r""#,
        ] {
            let body = format!(r#"{{{ty},"token":"bad","rules":[{{"Addrs":["10.0.0.300"]}}]}}"#);
            let (status, v) = h.call("k", "POST", "/api/token", &body);
            assert_eq!(status, 200, "{body}: {v}");
            assert_eq!(v["success"], false, "{body}: {v}");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("10.0.0.300")),
                "{v}"
            );
            assert_eq!(h.server.token_rules("bad"), None, "{body}");
        }
        // A malformed rule (wrong shape, a port out of range) fails the whole body.
        for rules in [
            r#""x""#,
            r#"[{"Ports":[70000]}]"#,
            r#"[{"Addrs":"10.0.0.1"}]"#,
        ] {
            let body = format!(r#"{{"type":"forward","token":"bad","rules":{rules}}}"#);
            let (status, v) = h.call("k", "POST", "/api/token", &body);
            assert_eq!(status, 400, "{body}");
            assert_eq!(
                v,
                json!({"success": false, "error": "invalid request body"}),
                "{body}"
            );
        }
        assert_eq!(h.server.token_rules("bad"), None);
    }

    #[test]
    fn config_access_get_and_put() {
        let mut h = Harness::new(&["k"]);
        let get = |h: &mut Harness| {
            let (status, v) = h.call("k", "GET", "/api/config/access", "");
            assert_eq!(status, 200);
            v
        };
        assert_eq!(get(&mut h), json!({"entry": null, "dial": null}));

        let ok = json!({"success": true});
        let body =
            r#"{"entry":[{"Addrs":["10.0.0.0/8"],"Ports":[22]}],"dial":[{"Ports":[[80,90]]}]}"#;
        assert_eq!(
            h.call("k", "PUT", "/api/config/access", body),
            (200, ok.clone())
        );
        assert_eq!(
            get(&mut h),
            json!({
                "entry": [{"Addrs": ["10.0.0.0/8"], "Ports": [22]}],
                "dial": [{"Addrs": null, "Ports": [[80, 90]]}],
            })
        );
        assert_eq!(h.server.access_config().entry, rules(&["10.0.0.0/8:22"]));

        // A missing or null side keeps its rules; `[]` empties one.
        assert_eq!(
            h.call("k", "PUT", "/api/config/access", r#"{"entry":null}"#),
            (200, ok.clone())
        );
        assert_eq!(
            h.call("k", "PUT", "/api/config/access", r#"{"dial":[]}"#),
            (200, ok.clone())
        );
        assert_eq!(
            get(&mut h),
            json!({"entry": [{"Addrs": ["10.0.0.0/8"], "Ports": [22]}], "dial": null})
        );

        // Invalid: 400, and nothing changes (not even the valid side).
        let before = get(&mut h);
        let (status, v) = h.call(
            "k",
            "PUT",
            "/api/config/access",
            r#"{"entry":[],"dial":[{"Addrs":["nope"]}]}"#,
        );
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["success"], false);
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{v}"
        );
        for body in ["", "[", r#"{"entry":"x"}"#, r#"{"dial":[{"Ports":[0]}]}"#] {
            let (status, v) = h.call("k", "PUT", "/api/config/access", body);
            assert_eq!(status, 400, "{body:?}");
            assert_eq!(
                v,
                json!({"success": false, "error": "invalid request body"}),
                "{body:?}"
            );
        }
        assert_eq!(get(&mut h), before);

        // Other methods, and the key.
        assert_eq!(h.call("k", "POST", "/api/config/access", "{}").0, 405);
        assert_eq!(h.call("k", "DELETE", "/api/config/access", "").0, 405);
        assert_eq!(h.call("x", "GET", "/api/config/access", "").0, 401);
        assert_eq!(
            h.call("x", "PUT", "/api/config/access", r#"{"dial":[]}"#).0,
            401
        );
        assert_eq!(get(&mut h), before);
    }
}
