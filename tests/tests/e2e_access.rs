//! Access rules (spec 12.5, the reference 1.10's `--access-rule`) on the dialling side, on
//! real loopback sockets: a forward server's dial rules and a forward token's rules, a
//! provider's dial rules, a connector token's rules on the server; the API with several keys,
//! per-token `rules` and `GET`/`PUT /api/config/access`; and the CLI's refusal of
//! `--access-rule` with an API key and its single warning for the reference's peer-to-peer
//! flags. A denial at the dialling side reaches the application as SOCKS5 reply 0x04 (the
//! ConnectResponse failure "destination blocked by access control").

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use linksocks_core::access::AccessRules;
use linksocks_core::session::ClientRole;
use linksocks_runtime::TokenSpec;
use linksocks_tests::e2e::api::{request, Api};
use linksocks_tests::e2e::daemons::UpstreamProxy;
use linksocks_tests::e2e::modes::{assert_echo, provider_with, reverse_server};
use linksocks_tests::e2e::proxy::{forward, reverse};
use linksocks_tests::e2e::socks5::{Dest, Socks5, SocksError};
use linksocks_tests::e2e::target::{TcpServer, UdpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};
use serde_json::json;

fn rules(specs: &[String]) -> AccessRules {
    AccessRules::parse_cli(specs).unwrap()
}

/// Two echo targets on 127.0.0.1: the one the rules allow and one they do not.
fn targets() -> (TcpServer, TcpServer) {
    (
        TcpServer::echo("127.0.0.1:0").unwrap(),
        TcpServer::echo("127.0.0.1:0").unwrap(),
    )
}

/// A CONNECT through `socks` to `dest` must be refused with reply `code`.
#[track_caller]
fn assert_refused(socks: SocketAddr, dest: impl Into<Dest>, code: u8) {
    let dest = dest.into();
    match Socks5::new(socks).connect(dest.clone()) {
        Err(SocksError::Reply(c)) if c == code => {}
        other => panic!("CONNECT {dest}: expected reply {code:#04x}, got {other:?}"),
    }
}

/// The `denied` target never got a connection; its IP form was not even dialled (an IP is
/// checked before the dial starts; a name only once resolved, so it shows in `dialled`).
#[track_caller]
fn assert_never_reached(denied: &TcpServer, dialled: &[String]) {
    assert_eq!(
        denied.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the denied target was reached"
    );
    let ip = denied.addr.to_string();
    assert!(!dialled.contains(&ip), "{ip} was dialled: {dialled:?}");
    // Nor by name: a denied name is checked after its lookup, before any dial is reported.
    let by_name = format!("localhost:{}", denied.addr.port());
    assert!(
        !dialled.contains(&by_name),
        "{by_name} was dialled: {dialled:?}"
    );
}

/// A forward client of `token` once authenticated; its SOCKS5 address.
fn forward_client(rt: Rt, url: &str, token: &str) -> (Proxy, SocketAddr) {
    let mut c = Proxy::client(rt, client_options(url, token, ClientRole::Forward));
    c.wait_links_ready(1);
    let socks = c.socks_addr();
    (c, socks)
}

/// `server --access-rule 127.0.0.1:PORT` (forward): the server's dial rules. The allowed port
/// works by IP and by name; another port, by IP or by name, gets 0x04 and is never dialled.
fn forward_server_dial_rules(rt: Rt) {
    let (allowed, denied) = targets();
    let mut opts = server_options(vec![forward("tok")]);
    opts.machine.access.dial = rules(&[format!("127.0.0.1:{}", allowed.addr.port())]);
    let mut server = Proxy::server(rt, opts);
    let (_client, socks) = forward_client(rt, &server.url(), "tok");
    let port = |s: &TcpServer| s.addr.port();
    assert_echo(&Socks5::new(socks), allowed.addr, b"allowed");
    assert_refused(socks, denied.addr, 4);
    // A name is resolved once by the server, and only the addresses the rules allow are
    // dialled: `localhost` may also be ::1, which the rule does not cover.
    assert_echo(
        &Socks5::new(socks),
        Dest::domain("localhost", port(&allowed)),
        b"by name",
    );
    assert_refused(socks, Dest::domain("localhost", port(&denied)), 4);
    assert_refused(socks, "[::1]:1".parse::<SocketAddr>().unwrap(), 4);
    // The same refusal through the port's HTTP proxy: 502, as the reference answers.
    assert_eq!(http_status(socks, &format!("http://{}/", denied.addr)), 502);
    // The connection still works after the refusals.
    assert_echo(&Socks5::new(socks), allowed.addr, b"again");
    assert_never_reached(&denied, &server.dialled());
}

/// The same with the server dialling through an upstream SOCKS5 proxy (microsocks): a name
/// is resolved by the server, which hands the proxy the allowed address, not the name.
fn forward_server_dial_rules_through_upstream(rt: Rt) {
    let (allowed, denied) = targets();
    let proxy = UpstreamProxy::microsocks(None);
    let mut opts = server_options(vec![forward("tok")]);
    opts.machine.access.dial = rules(&[format!("127.0.0.1:{}", allowed.addr.port())]);
    opts.upstream_proxy = Some(proxy.url());
    let mut server = Proxy::server(rt, opts);
    let (_client, socks) = forward_client(rt, &server.url(), "tok");
    assert_echo(
        &Socks5::new(socks),
        Dest::domain("localhost", allowed.addr.port()),
        b"by name, through the proxy",
    );
    assert!(
        proxy.logged_connection_to(allowed.addr),
        "the proxy did not log a connection to {}:\n{}",
        allowed.addr,
        proxy.log()
    );
    assert_refused(socks, Dest::domain("localhost", denied.addr.port()), 4);
    assert_refused(socks, denied.addr, 4);
    assert_never_reached(&denied, &server.dialled());
}

/// A forward token's own rules and the server's dial rules must both allow a destination;
/// token rules also refuse UDP ASSOCIATE, while the server's dial rules leave UDP alone (a
/// UDP Connect names no destination, and datagrams are not checked on the dialling side).
fn forward_token_rules_and_udp(rt: Rt) {
    let (a, b) = targets();
    let c = TcpServer::echo("127.0.0.1:0").unwrap();
    let udp_echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let ports = |ps: &[&TcpServer]| -> Vec<String> {
        ps.iter()
            .map(|s| format!("127.0.0.1:{}", s.addr.port()))
            .collect()
    };
    let mut opts = server_options(vec![
        TokenSpec::WithRules(Box::new(forward("ruled")), rules(&ports(&[&a, &b]))),
        forward("open"),
    ]);
    opts.machine.access.dial = rules(&ports(&[&a, &c]));
    let mut server = Proxy::server(rt, opts);
    let url = server.url();
    let (_ruled, rsocks) = forward_client(rt, &url, "ruled");
    assert_echo(&Socks5::new(rsocks), a.addr, b"both allow");
    assert_refused(rsocks, b.addr, 4);
    assert_refused(rsocks, c.addr, 4);
    match Socks5::new(rsocks).udp_associate("127.0.0.1:0".parse().unwrap()) {
        Err(SocksError::Reply(c)) if c != 0 => {}
        Err(e) => panic!("UDP ASSOCIATE with token rules: expected a refusal, got {e}"),
        Ok(_) => panic!("UDP ASSOCIATE with token rules: expected a refusal, got success"),
    }

    let (_open, osocks) = forward_client(rt, &url, "open");
    assert_echo(&Socks5::new(osocks), c.addr, b"server rules only");
    assert_refused(osocks, b.addr, 4);
    let assoc = Socks5::new(osocks)
        .udp_associate("127.0.0.1:0".parse().unwrap())
        .unwrap();
    assoc
        .send_to(&Dest::Ip(udp_echo.addr), b"datagram")
        .unwrap();
    let (_, got) = assoc.recv().unwrap();
    assert_eq!(got, b"datagram");
}

/// `provider --access-rule` (and `client -r`): the provider's dial rules. The server's SOCKS5
/// port gets 0x04 for what the provider refuses.
fn provider_dial_rules(rt: Rt) {
    let (allowed, denied) = targets();
    let mut server = reverse_server(rt, "rtok", None, |_| {});
    let url = server.url();
    let spec = format!("127.0.0.0/8:{}", allowed.addr.port());
    let mut prov = provider_with(rt, &url, "rtok", |o| {
        o.machine.data.dial_rules = Arc::new(rules(&[spec]));
    });
    let socks = server.socks_addr();
    assert_echo(&Socks5::new(socks), allowed.addr, b"allowed");
    assert_refused(socks, denied.addr, 4);
    assert_echo(
        &Socks5::new(socks),
        Dest::domain("localhost", allowed.addr.port()),
        b"by name",
    );
    assert_refused(socks, Dest::domain("localhost", denied.addr.port()), 4);
    assert_never_reached(&denied, &prov.dialled());
}

const KEY1: &str = "first-access-key";
const KEY2: &str = "second-access-key";

/// Two API keys, both with every right, and no third; token `rules` on POST; the server-wide
/// rules read and replaced with `GET`/`PUT /api/config/access`, and what they do at once.
fn api_keys_token_rules_and_config_access(rt: Rt) {
    let (a, b) = targets();
    let mut opts = server_options(vec![]);
    opts.api_keys = vec![KEY1.into(), KEY2.into()];
    let mut server = Proxy::server(rt, opts);
    let ws = server.ws_addr();
    let api1 = Api::new(ws, KEY1);
    let api2 = Api::new(ws, KEY2);
    for key in [KEY1, KEY2] {
        let r = request(ws, "GET", "/api/status", Some(key), None);
        assert_eq!(r.status, 200, "{key}: {r:?}");
    }
    for key in [None, Some(""), Some("third-key"), Some(&KEY1[1..])] {
        let r = request(ws, "GET", "/api/config/access", key, None);
        assert_eq!(r.status, 401, "{key:?}: {r:?}");
        assert_eq!(
            r.json(),
            json!({"success": false, "error": "invalid API key"})
        );
    }

    // A forward token allowed to reach `a` and `b`, added with the first key.
    let rule = |s: &TcpServer| json!({"Addrs": ["127.0.0.1"], "Ports": [s.addr.port()]});
    api1.add_token(json!({"type": "forward", "token": "ruled", "rules": [rule(&a), rule(&b)]}));
    let (_client, socks) = forward_client(rt, &server.url(), "ruled");
    assert_echo(&Socks5::new(socks), a.addr, b"token allows a");
    assert_echo(&Socks5::new(socks), b.addr, b"token allows b");
    assert_refused(socks, "127.0.0.1:1".parse::<SocketAddr>().unwrap(), 4);

    // Invalid rules are refused as the reference refuses them.
    let r = api2.post(
        "/api/token",
        &json!({"type": "forward", "token": "bad", "rules": [{"Addrs": ["10.0.0.300"]}]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["success"], false, "{r:?}");
    let r = api2.post(
        "/api/token",
        &json!({"type": "forward", "token": "bad", "rules": [{"Ports": [0]}]}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(api2.token_status("bad").is_none());

    // Server-wide rules, with the second key: nothing at first ...
    assert_eq!(
        api2.get("/api/config/access").json(),
        json!({"entry": null, "dial": null})
    );
    // ... then dial rules that allow only `b` (with the token's rules: `b` only).
    let put = |body: serde_json::Value| {
        request(
            ws,
            "PUT",
            "/api/config/access",
            Some(KEY2),
            Some(&body.to_string()),
        )
    };
    let r = put(json!({"dial": [rule(&b)]}));
    assert_eq!((r.status, r.json()), (200, json!({"success": true})));
    assert_eq!(
        api1.get("/api/config/access").json(),
        json!({"entry": null, "dial": [rule(&b)]})
    );
    assert_refused(socks, a.addr, 4);
    assert_echo(&Socks5::new(socks), b.addr, b"both allow b");

    // Entry rules set, dial rules kept (missing side), then an invalid PUT changes nothing.
    let entry = json!([{"Addrs": ["10.0.0.0/8"], "Ports": [22]}]);
    let r = put(json!({"entry": entry}));
    assert_eq!(r.status, 200, "{r:?}");
    let both = json!({"entry": entry, "dial": [rule(&b)]});
    assert_eq!(api2.get("/api/config/access").json(), both);
    for bad in [
        json!({"entry": [], "dial": [{"Addrs": ["not-an-ip"]}]}),
        json!({"dial": "everything"}),
    ] {
        let r = put(bad.clone());
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert_eq!(r.json()["success"], false, "{bad}: {r:?}");
    }
    assert_eq!(api1.get("/api/config/access").json(), both);

    // `[]` empties the dial side: the token's rules alone again.
    let r = put(json!({"dial": []}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        api1.get("/api/config/access").json(),
        json!({"entry": entry, "dial": null})
    );
    assert_echo(&Socks5::new(socks), a.addr, b"token allows a again");
}

/// A connector token's rules, set through the API, are checked on the server before the
/// request is relayed to the provider: an IP they allow passes, another gets 0x04; a name is
/// resolved by the server and passes if an address of it is allowed (a name that does not
/// resolve is denied: a unit test in core, since looking one up would leave loopback).
fn connector_token_rules(rt: Rt) {
    let (allowed, denied) = targets();
    let mut opts = server_options(vec![reverse("rtok", None)]);
    opts.api_keys = vec![KEY1.into()];
    let mut server = Proxy::server(rt, opts);
    let api = Api::new(server.ws_addr(), KEY1);
    api.add_token(json!({
        "type": "connector",
        "token": "ctok",
        "reverse_token": "rtok",
        "rules": [{"Addrs": ["127.0.0.1"], "Ports": [allowed.addr.port()]}],
    }));
    let url = server.url();
    let _prov = provider_with(rt, &url, "rtok", |_| {});
    let (_conn, csocks) = forward_client(rt, &url, "ctok");
    assert_echo(&Socks5::new(csocks), allowed.addr, b"relayed");
    assert_refused(csocks, denied.addr, 4);
    assert_echo(
        &Socks5::new(csocks),
        Dest::domain("localhost", allowed.addr.port()),
        b"by name",
    );
    assert_refused(csocks, Dest::domain("localhost", denied.addr.port()), 4);
    assert_echo(&Socks5::new(csocks), allowed.addr, b"still relayed");
    assert_eq!(
        denied.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the denied target was reached"
    );
}

/// curl through the HTTP proxy on `port` to `url` (plain request): the status it got.
fn http_status(port: SocketAddr, url: &str) -> u16 {
    linksocks_tests::e2e::curl::curl(&format!("http://{port}"), url, false).status
}

/// `client --access-rule 127.0.0.1:PORT` (the entry rules of a forward client; a connector's
/// are the same code): checked at the client's port before anything is sent. The allowed
/// port works by IP and by name; another port gets SOCKS5 0x02 or HTTP 403; UDP datagrams to
/// a denied destination are dropped. (A name that does not resolve is denied: unit tests in
/// core, since looking one up would send a query off loopback.)
fn client_entry_rules(rt: Rt) {
    let (allowed, denied) = targets();
    let udp_allowed = UdpServer::echo("127.0.0.1:0").unwrap();
    let udp_denied = UdpServer::echo("127.0.0.1:0").unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.entry_rules = Arc::new(rules(&[
        format!("127.0.0.1:{}", allowed.addr.port()),
        format!("127.0.0.1:{}", udp_allowed.addr.port()),
    ]));
    let mut client = Proxy::client(rt, opts);
    client.wait_links_ready(1);
    let socks = client.socks_addr();
    assert_echo(&Socks5::new(socks), allowed.addr, b"allowed");
    assert_echo(
        &Socks5::new(socks),
        Dest::domain("localhost", allowed.addr.port()),
        b"by name",
    );
    assert_refused(socks, denied.addr, 2);
    assert_refused(socks, Dest::domain("localhost", denied.addr.port()), 2);
    assert_eq!(http_status(socks, &format!("http://{}/", denied.addr)), 403);
    // UDP: the association opens; only datagrams to an allowed destination go out.
    let assoc = Socks5::new(socks)
        .udp_associate("127.0.0.1:0".parse().unwrap())
        .unwrap();
    assoc
        .send_to(&Dest::Ip(udp_denied.addr), b"denied")
        .unwrap();
    assoc
        .send_to(&Dest::Ip(udp_allowed.addr), b"allowed")
        .unwrap();
    let (from, got) = assoc.recv().unwrap();
    assert_eq!(
        (from, got.as_slice()),
        (Dest::Ip(udp_allowed.addr), &b"allowed"[..])
    );
    // Nothing denied left the client: the server dialled only the allowed target (twice).
    assert_never_reached(&denied, &server.dialled());
    assert_eq!(server.dialled().len(), 2, "{:?}", server.dialled());
}

/// A reverse token's rules apply at its port on the server (SOCKS5 0x02, HTTP 403), in
/// place of the server-wide entry rules; a token without rules gets the server-wide ones.
fn reverse_token_entry_rules(rt: Rt) {
    let (allowed, denied) = targets();
    let mut opts = server_options(vec![TokenSpec::WithRules(
        Box::new(reverse("rtok", None)),
        rules(&[format!("127.0.0.1:{}", allowed.addr.port())]),
    )]);
    // Server-wide entry rules that would deny everything here: the token's own rules win.
    opts.machine.access.entry = rules(&["127.0.0.1:1".to_string()]);
    let mut server = Proxy::server(rt, opts);
    let mut prov = provider_with(rt, &server.url(), "rtok", |_| {});
    let socks = server.socks_addr();
    assert_echo(&Socks5::new(socks), allowed.addr, b"allowed");
    assert_refused(socks, denied.addr, 2);
    assert_eq!(http_status(socks, &format!("http://{}/", denied.addr)), 403);
    assert_never_reached(&denied, &prov.dialled());
}

linksocks_tests::on_both_runtimes!(
    client_entry_rules,
    reverse_token_entry_rules,
    forward_server_dial_rules,
    forward_server_dial_rules_through_upstream,
    forward_token_rules_and_udp,
    provider_dial_rules,
    api_keys_token_rules_and_config_access,
    connector_token_rules,
);

/// The CLI binary, built (or found up to date) by cargo in this test's target directory and
/// profile.
fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e_access-<hash>
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "linksocks-cli",
            "--bin",
            "linksocks-cli",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building linksocks-cli failed");
    let bin = profile_dir.join(format!("linksocks-cli{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// The binary with no LINKSOCKS_* or RUST_LOG from whoever runs the tests.
fn cli(bin: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("LINKSOCKS_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// `--access-rule` together with an API key (flag or environment) is refused before anything
/// starts, with exactly the reference's message and exit code 2; an invalid rule likewise,
/// with the parser's message.
#[test]
fn cli_refuses_access_rules_in_api_mode() {
    let bin = cli_binary();
    let refusal = "error: --access-rule is not allowed in API server mode; \
                   configure access control through the HTTP API\n";
    let cases: [(&[&str], Option<&str>); 4] = [
        (
            &["server", "--access-rule", "10.0.0.0/8:22", "-k", "key"],
            None,
        ),
        (
            &[
                "server",
                "-r",
                "--access-rule",
                "::1:22",
                "--api-key",
                "key",
            ],
            None,
        ),
        (
            &["server", "-P", "0", "--access-rule", "10.0.0.0/8:22"],
            Some("envkey"),
        ),
        (
            &[
                "server",
                "--access-rule",
                "10.0.0.0/8:22",
                "-k",
                "a",
                "-k",
                "b",
            ],
            None,
        ),
    ];
    for (args, env_key) in cases {
        let mut c = cli(&bin, args);
        if let Some(k) = env_key {
            c.env("LINKSOCKS_API_KEY", k);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr, refusal, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    for args in [
        &["server", "--access-rule", "[::1]:22"][..],
        &["client", "--access-rule", "example.com:22"],
        &["provider", "--access-rule", "10.0.0.1"],
        &["connector", "--access-rule", "10.0.0.1:70000"],
    ] {
        let out = cli(&bin, args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid access rule"),
            "{args:?}: {stderr}"
        );
    }
}

/// The reference's `--direct-*` flags are accepted on each subcommand that has them and
/// ignored with exactly one warning line naming them; the program then runs as usual.
#[test]
fn cli_accepts_p2p_flags_with_one_warning() {
    let bin = cli_binary();
    let client_flags: &[&str] = &[
        "--direct-mode",
        "auto",
        "--direct-discovery",
        "stun",
        "--direct-host-candidates",
        "always",
        "--stun-server",
        "127.0.0.1:3478",
        "--direct-only-action",
        "refuse",
        "--direct-upnp",
        "--direct-upnp-lease",
        "30m",
        "--direct-upnp-keep",
        "--direct-upnp-external-port",
        "4000",
    ];
    let server_flags: &[&str] = &[
        "--direct-enable",
        "--direct-rendezvous-udp",
        "--direct-rendezvous-host",
        "127.0.0.1",
        "--direct-rendezvous-port",
        "3478",
    ];
    let names = |flags: &[&str]| -> Vec<String> {
        flags
            .iter()
            .filter(|f| f.starts_with("--"))
            .map(|f| f.to_string())
            .collect()
    };
    // A dead server and no reconnection: the client ends at once, after its warnings.
    for cmd in ["client", "provider", "connector"] {
        let mut args = vec![cmd, "-u", "ws://127.0.0.1:1", "-R", "-t", "tok"];
        args.extend_from_slice(client_flags);
        let out = cli(&bin, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{cmd}: {stderr}");
        for flag in names(client_flags) {
            assert!(
                warnings[0].contains(&flag),
                "{cmd}: {flag} not named: {stderr}"
            );
        }
        assert!(!stderr.contains("unexpected argument"), "{cmd}: {stderr}");
    }
    // The server keeps running: its first line on stderr is the warning, then it serves.
    let mut args = vec!["server", "-H", "127.0.0.1", "-P", "0", "-t", "tok"];
    args.extend_from_slice(server_flags);
    let mut child = cli(&bin, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("warning:"), "{first:?}");
    for flag in names(server_flags) {
        assert!(first.contains(&flag), "{flag} not named: {first:?}");
    }
    assert!(still_running, "the server stopped after its warning");
}

/// The rules set by the CLI, end to end with the binaries: `server --access-rule` (dial
/// rules) and `client --access-rule` (entry rules), through the client's port as a SOCKS5 and
/// as an HTTP proxy: allowed by both → through; denied by the client → 0x02 / 403 and never
/// sent; allowed by the client, denied by the server → 0x04 / 502.
#[test]
fn cli_rules_entry_and_dial() {
    use linksocks_tests::e2e::daemon::{free_port, Daemon};
    use linksocks_tests::e2e::proxy::EVENT_TIMEOUT;
    use linksocks_tests::e2e::wait;
    let bin = cli_binary();
    let both = TcpServer::http("127.0.0.1:0", b"through".to_vec()).unwrap();
    let client_only = TcpServer::echo("127.0.0.1:0").unwrap();
    let server_only = TcpServer::echo("127.0.0.1:0").unwrap();
    let rule = |s: &TcpServer| format!("127.0.0.1:{}", s.addr.port());
    let ws = free_port();
    let socks: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ws_s = ws.to_string();
    let socks_s = socks.port().to_string();
    let url = format!("ws://127.0.0.1:{ws}");
    let (r_both, r_client, r_server) = (rule(&both), rule(&client_only), rule(&server_only));
    let _server = Daemon::spawn("server", |_| {
        let mut c = cli(
            &bin,
            &["server", "-t", "tok", "-H", "127.0.0.1", "-P", &ws_s],
        );
        c.args(["--access-rule", &r_both, "--access-rule", &r_server]);
        c
    });
    wait::port_open(format!("127.0.0.1:{ws}").parse().unwrap(), EVENT_TIMEOUT);
    let _client = Daemon::spawn("client", |_| {
        let mut c = cli(&bin, &["client", "-t", "tok", "-u", &url, "-p", &socks_s]);
        c.args(["--access-rule", &r_both, "--access-rule", &r_client]);
        c
    });
    wait::port_open(socks, EVENT_TIMEOUT);
    let page = |s: &TcpServer| format!("http://{}/", s.addr);
    // The client's port opens before its link is up: the first request may wait for it.
    assert_eq!(http_status(socks, &page(&both)), 200);
    assert_refused(socks, server_only.addr, 2);
    assert_eq!(http_status(socks, &page(&server_only)), 403);
    assert_refused(socks, client_only.addr, 4);
    assert_eq!(http_status(socks, &page(&client_only)), 502);
    for denied in [&client_only, &server_only] {
        assert_eq!(
            denied.accepted.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{} was reached",
            denied.addr
        );
    }
}
