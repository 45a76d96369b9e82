//! The server's HTTP API (spec section 7) on its WebSocket port, spoken over plain TCP: the
//! key check, adding forward / reverse / connector tokens and what they do at once, removing
//! tokens by path and by body, the documented errors, and `/metrics` (ours, beyond the
//! reference).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use linksocks_core::session::ClientRole;
use linksocks_runtime::ServerOptions;
use linksocks_tests::e2e::api::{request, Api};
use linksocks_tests::e2e::modes::{assert_echo, provider};
use linksocks_tests::e2e::proxy::{client_options, server_options, EVENT_TIMEOUT};
use linksocks_tests::e2e::relay::Relay;
use linksocks_tests::e2e::socks5::{Socks5, SocksError};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{wait, Proxy, Rt};
use serde_json::json;

/// The reply code of a SOCKS5 CONNECT that must be refused, or what happened instead.
fn reply_code(r: Result<TcpStream, SocksError>) -> Result<u8, String> {
    match r {
        Ok(_) => Err("the request succeeded".into()),
        Err(SocksError::Reply(c)) => Ok(c),
        Err(e) => Err(e.to_string()),
    }
}

const KEY: &str = "k3y-for-the-api-tests";

/// A server with the API enabled and no tokens; its API.
fn api_server(rt: Rt, tweak: impl FnOnce(&mut ServerOptions)) -> (Proxy, Api) {
    let mut opts = server_options(vec![]);
    opts.api_key = Some(KEY.into());
    tweak(&mut opts);
    let mut server = Proxy::server(rt, opts);
    let api = Api::new(server.ws_addr(), KEY);
    (server, api)
}

/// A forward client (or connector) with `token`, once authenticated; its SOCKS5 address.
fn forward_client(rt: Rt, url: &str, token: &str) -> (Proxy, SocketAddr) {
    let mut c = Proxy::client(rt, client_options(url, token, ClientRole::Forward));
    c.wait_links_ready(1);
    let socks = c.socks_addr();
    (c, socks)
}

/// Waits for `client` to end by itself, and returns why.
#[track_caller]
fn ended_with(client: &mut Proxy) -> String {
    match client.wait_end(EVENT_TIMEOUT) {
        Some(Err(e)) => e.to_string(),
        other => panic!("the client should have ended with an error: {other:?}"),
    }
}

/// Reads from a tunnelled stream until it ends; panics if it still delivers or stalls.
#[track_caller]
fn assert_stream_ends(s: &mut TcpStream) {
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut b = [0u8; 1024];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the tunnelled stream should have ended: {other:?}"),
    }
}

/// `/` tells whether the API is on; every API path wants the key, compared as a whole.
fn key_is_required(rt: Rt) {
    let (_server, api) = api_server(rt, |_| {});
    let root = request(api.addr, "GET", "/", None, None);
    assert_eq!(root.status, 200);
    assert!(
        root.body.contains("API endpoints available at /api/*"),
        "{root:?}"
    );

    let wrong = [
        None,
        Some(""),
        Some("k3y-for-the-api-testz"),
        Some("k3y-for-the-api-test"),
        Some("k3y-for-the-api-tests-"),
        Some("K3Y-FOR-THE-API-TESTS"),
    ];
    for (path, method) in [
        ("/api/status", "GET"),
        ("/api/token", "POST"),
        ("/api/token/x", "DELETE"),
        ("/metrics", "GET"),
    ] {
        for key in wrong {
            let r = request(api.addr, method, path, key, Some(r#"{"type":"forward"}"#));
            assert_eq!(r.status, 401, "{method} {path} with key {key:?}: {r:?}");
            assert_eq!(
                r.json(),
                json!({"success": false, "error": "invalid API key"}),
                "{method} {path}"
            );
        }
    }
    // Nothing was added by the refused requests.
    let st = api.status();
    assert_eq!(st["tokens"], json!([]), "{st}");
    assert!(
        st["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(api.get("/api/nothing").status, 404);
    assert_eq!(api.get("/api/token").status, 405);

    // Without a key configured there is no API at all.
    let mut plain = Proxy::server(rt, server_options(vec![]));
    let addr = plain.ws_addr();
    let root = request(addr, "GET", "/", None, None);
    assert!(root.body.contains("API is not enabled"), "{root:?}");
    for path in ["/api/status", "/metrics"] {
        assert_eq!(request(addr, "GET", path, Some(KEY), None).status, 404);
    }
}

/// A forward token added at run time admits a client at once; removing it by path ends the
/// client's channels and link, and the client, refused on reconnecting, stops.
fn forward_token_added_and_removed_by_path(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (mut server, api) = api_server(rt, |_| {});
    let url = server.url();

    let v = api.add_token(json!({"type": "forward", "token": "fwd-1"}));
    assert_eq!(v, json!({"success": true, "token": "fwd-1"}));
    let generated = api.add_token(json!({"type": "forward"}))["token"]
        .as_str()
        .expect("a generated token")
        .to_string();
    assert!(generated.len() >= 8 && generated != "fwd-1", "{generated}");
    for t in ["fwd-1", generated.as_str()] {
        assert_eq!(
            api.token_status(t),
            Some(json!({"token": t, "type": "forward", "clients_count": 0}))
        );
    }

    let (mut client, socks) = forward_client(rt, &url, "fwd-1");
    assert_eq!(api.token_status("fwd-1").unwrap()["clients_count"], 1);
    assert_echo(&Socks5::new(socks), echo.addr, b"through an API token");
    let (_c2, socks2) = forward_client(rt, &url, &generated);
    assert_echo(
        &Socks5::new(socks2),
        echo.addr,
        b"through a generated token",
    );

    let mut open = Socks5::new(socks).connect(echo.addr).unwrap();
    open.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    open.read_exact(&mut b).unwrap();

    let r = api.delete("/api/token/fwd-1", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"success": true, "token": "fwd-1"}));
    assert_stream_ends(&mut open);
    let why = ended_with(&mut client);
    assert!(why.contains("invalid token"), "{why}");
    assert_eq!(api.token_status("fwd-1"), None);
    // The other token is untouched.
    assert_echo(&Socks5::new(socks2), echo.addr, b"still here");
}

/// A reverse token added without a port gets one from the pool and serves SOCKS5 as soon as
/// the answer arrives, before any provider; with a port and credentials it uses both; a port
/// that is taken is refused; removing it by body disconnects its provider and closes its port.
fn reverse_token_listens_at_once_and_closes_on_removal(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (mut server, api) = api_server(rt, |o| {
        o.machine.timings.provider_wait = Duration::from_millis(500);
    });
    let url = server.url();

    let v = api.add_token(json!({"type": "reverse", "token": "rev-1"}));
    let port = v["port"].as_u64().expect("a port") as u16;
    assert!((1024..=10240).contains(&port), "pool port {port}");
    assert_eq!(v, json!({"success": true, "token": "rev-1", "port": port}));
    let socks_addr = SocketAddr::from(([127, 0, 0, 1], port));
    // No waiting: the port serves once the API has answered.
    let socks = Socks5::new(socks_addr);
    assert_eq!(
        reply_code(socks.connect(echo.addr)),
        Ok(0x03),
        "no provider yet"
    );
    assert_eq!(
        api.token_status("rev-1"),
        Some(
            json!({"token": "rev-1", "type": "reverse", "clients_count": 0,
                    "port": port, "connector_tokens": []})
        )
    );

    let mut prov = provider(rt, &url, "rev-1");
    assert_echo(&socks, echo.addr, b"reverse through an API token");
    assert_eq!(api.token_status("rev-1").unwrap()["clients_count"], 1);

    // An explicit port and SOCKS5 credentials.
    let fixed = linksocks_tests::e2e::daemon::free_port();
    let v = api.add_token(json!({"type": "reverse", "token": "rev-2", "port": fixed,
                                 "username": "alice", "password": "s3cret"}));
    assert_eq!(v["port"], fixed);
    let fixed_addr = SocketAddr::from(([127, 0, 0, 1], fixed));
    let _prov2 = provider(rt, &url, "rev-2");
    assert_echo(
        &Socks5::with_auth(fixed_addr, "alice", "s3cret"),
        echo.addr,
        b"with credentials",
    );
    assert!(matches!(
        Socks5::with_auth(fixed_addr, "alice", "wrong").connect(echo.addr),
        Err(SocksError::AuthRefused(_))
    ));
    assert!(matches!(
        Socks5::new(fixed_addr).connect(echo.addr),
        Err(SocksError::NoMethod)
    ));

    // A port that cannot be had is an error, and the token is not kept half-made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = api.post(
        "/api/token",
        &json!({"type": "reverse", "token": "rev-3", "port": taken.local_addr().unwrap().port()}),
    );
    let v = r.json();
    assert_eq!(v["success"], false, "{r:?}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot open the SOCKS5 listener")),
        "{v}"
    );
    assert_eq!(api.token_status("rev-3"), None);

    let mut open = socks.connect(echo.addr).unwrap();
    let r = api.delete("/api/token", Some(&json!({"token": "rev-1"})));
    assert_eq!(r.json(), json!({"success": true, "token": "rev-1"}));
    assert_stream_ends(&mut open);
    let why = ended_with(&mut prov);
    assert!(why.contains("invalid token"), "{why}");
    wait::until(
        &format!("the SOCKS5 port {port} of the removed token to close"),
        EVENT_TIMEOUT,
        || TcpStream::connect(socks_addr).is_err(),
    );
    assert_eq!(api.token_status("rev-1"), None);
    // rev-2 still serves.
    assert_echo(
        &Socks5::with_auth(fixed_addr, "alice", "s3cret"),
        echo.addr,
        b"rev-2 unaffected",
    );
}

/// A connector token added for a reverse token lets a connector reach targets through that
/// token's provider; it is listed under the reverse token and goes with it.
fn connector_token(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (mut server, api) = api_server(rt, |_| {});
    let url = server.url();
    api.add_token(json!({"type": "reverse", "token": "rev-c"}));
    let mut prov = provider(rt, &url, "rev-c");

    let v = api.add_token(json!({"type": "connector", "reverse_token": "rev-c"}));
    let conn_tok = v["token"].as_str().expect("connector token").to_string();
    assert_eq!(
        api.token_status("rev-c").unwrap()["connector_tokens"],
        json!([conn_tok])
    );
    let named = api.add_token(json!({"type": "connector", "token": "conn-2",
                                     "reverse_token": "rev-c"}));
    assert_eq!(named, json!({"success": true, "token": "conn-2"}));

    let (mut connector, socks) = forward_client(rt, &url, &conn_tok);
    assert_echo(&Socks5::new(socks), echo.addr, b"connector via provider");
    assert!(
        prov.dialled().contains(&echo.addr.to_string()),
        "the provider dialled {:?}",
        prov.dialled()
    );

    api.delete(&format!("/api/token/{}", "rev-c"), None);
    let why = ended_with(&mut connector);
    assert!(why.contains("invalid token"), "{why}");
    assert_eq!(api.status()["tokens"], json!([]));
}

/// The errors the spec lists, and a few more the reference leaves unchecked.
fn bad_requests(rt: Rt) {
    let (_server, api) = api_server(rt, |_| {});
    let post = |body: &str| {
        let r = request(api.addr, "POST", "/api/token", Some(KEY), Some(body));
        (r.status, r.json())
    };
    let err = |e: &str| json!({"success": false, "error": e});
    assert_eq!(post("{not json").1, err("invalid request body"));
    assert_eq!(post(r#"{"type":"bogus"}"#).1, err("invalid token type"));
    assert_eq!(post(r#"{"token":"t"}"#).1, err("invalid token type"));
    assert_eq!(
        post(r#"{"type":"connector","token":"c"}"#).1,
        err("reverse_token is required for connector token")
    );
    for body in [
        r#"{"type":"reverse","port":70000}"#,
        r#"{"type":"reverse","port":0}"#,
    ] {
        let (_, v) = post(body);
        assert_eq!(v["success"], false, "{body}: {v}");
    }
    let (_, v) = post(r#"{"type":"forward","token":"anonymous"}"#);
    assert_eq!(v["success"], false, "anonymous may not be added: {v}");
    let (_, v) = post(r#"{"type":"connector","token":"c","reverse_token":"none"}"#);
    assert_eq!(
        v["success"], false,
        "connector of a missing reverse token: {v}"
    );

    for body in [None, Some("{}"), Some(r#"{"token":""}"#)] {
        let r = request(api.addr, "DELETE", "/api/token", Some(KEY), body);
        assert_eq!(r.json(), err("token not specified"), "{body:?}");
    }
    // Nothing was added by the refused requests.
    assert_eq!(api.status()["tokens"], json!([]));
}

/// `/metrics`: Prometheus text with links, channels, bytes both ways, reconnects and SOCKS5
/// replies by code, all moving with what happened.
fn metrics(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let closed = linksocks_tests::e2e::daemon::free_addr();
    let (_server, api) = api_server(rt, |_| {});
    let m = api.metrics();
    assert_eq!(m.get("linksocks_links"), 0.0);
    assert_eq!(m.get("linksocks_reconnects_total"), 0.0);
    assert!(
        m.0.contains("# TYPE linksocks_bytes_sent_total counter"),
        "{}",
        m.0
    );
    let r = api.get("/metrics");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{r:?}"
    );

    // A provider behind a relay, so that its link can be cut and come back.
    let port = api.add_token(json!({"type": "reverse", "token": "rev-m"}))["port"]
        .as_u64()
        .unwrap() as u16;
    let relay = Relay::start(api.addr);
    let mut prov = provider(rt, &format!("ws://{}", relay.addr), "rev-m");
    assert_eq!(api.metrics().get("linksocks_links"), 1.0);

    let socks = Socks5::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let data = pattern(7, 40_000);
    assert_echo(&socks, echo.addr, &data);
    assert_eq!(reply_code(socks.connect(closed)), Ok(0x04));
    wait::until("both channels to be closed", EVENT_TIMEOUT, || {
        api.metrics().get("linksocks_channels") == 0.0
    });
    let m = api.metrics();
    assert_eq!(m.get(r#"linksocks_socks_replies_total{code="0"}"#), 1.0);
    assert_eq!(m.get(r#"linksocks_socks_replies_total{code="4"}"#), 1.0);
    assert_eq!(m.get(r#"linksocks_socks_replies_total{code="3"}"#), 0.0);
    assert!(m.get("linksocks_channels_opened_total") >= 2.0, "{}", m.0);
    // The echo went to the provider and came back, framed.
    assert!(
        m.get("linksocks_bytes_sent_total") > data.len() as f64,
        "{}",
        m.0
    );
    assert!(
        m.get("linksocks_bytes_received_total") > data.len() as f64,
        "{}",
        m.0
    );

    // A channel open across the cut is suspended, then resumed on the new link.
    let mut held = socks.connect(echo.addr).unwrap();
    held.write_all(b"before").unwrap();
    let mut got = [0u8; 6];
    held.read_exact(&mut got).unwrap();
    assert_eq!(api.metrics().get("linksocks_channels_suspended_total"), 0.0);
    relay.conns()[0].cut();
    prov.wait_links_ready(2);
    wait::until("the reconnect to be counted", EVENT_TIMEOUT, || {
        api.metrics().get("linksocks_reconnects_total") == 1.0
    });
    assert_eq!(api.metrics().get("linksocks_links"), 1.0);
    assert_echo(&socks, echo.addr, b"after the reconnect");
    held.write_all(b"after!").unwrap();
    held.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after!");
    wait::until("the resume to be counted", EVENT_TIMEOUT, || {
        api.metrics().get("linksocks_channels_resumed_total") == 1.0
    });
    let m = api.metrics();
    assert_eq!(m.get("linksocks_channels_suspended_total"), 1.0, "{}", m.0);
    assert_eq!(m.get("linksocks_channels_expired_total"), 0.0, "{}", m.0);
}

linksocks_tests::on_both_runtimes!(
    key_is_required,
    forward_token_added_and_removed_by_path,
    reverse_token_listens_at_once_and_closes_on_removal,
    connector_token,
    bad_requests,
    metrics,
);
