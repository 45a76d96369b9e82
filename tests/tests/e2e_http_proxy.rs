//! The HTTP proxy every SOCKS port also serves (issue 18): real clients (curl, Python's
//! urllib, headless Chromium) through the forward client's port, a connector's port and a
//! reverse token's port on the server; plain absolute-form requests and CONNECT, with and
//! without Basic credentials; the refusals the reference gives.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use linksocks_core::session::ClientRole;
use linksocks_runtime::TokenSpec;
use linksocks_tests::e2e::curl::{curl, PROXY_ENV};
use linksocks_tests::e2e::daemon::require_program;
use linksocks_tests::e2e::modes::{dial_counts, provider, reverse_server};
use linksocks_tests::e2e::proxy::{forward, forward_pair, reverse, socks_listen};
use linksocks_tests::e2e::target::{pattern, read_request_head, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

/// Enough for several Data messages on the way back.
const BODY: usize = 1 << 20;

/// Both forms through `port` (plain and CONNECT), by IP and by host name, return `body`.
#[track_caller]
fn assert_fetches(port: SocketAddr, creds: Option<(&str, &str)>, web: &TcpServer, body: &[u8]) {
    let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    let proxy = format!("http://{auth}{port}");
    for url in [
        format!("http://{}/file.bin", web.addr),
        format!("http://localhost:{}/file.bin", web.addr.port()),
    ] {
        for tunnel in [false, true] {
            let f = curl(&proxy, &url, tunnel);
            assert!(
                f.ok && f.status == 200,
                "{url} (CONNECT: {tunnel}): curl {} status {} connect {}: {}",
                if f.ok { "ok" } else { "failed" },
                f.status,
                f.connect_status,
                f.stderr
            );
            if tunnel {
                assert_eq!(f.connect_status, 200, "{url}: CONNECT answered");
            }
            assert!(
                f.body == body,
                "{url} (CONNECT: {tunnel}): {} bytes received, {} sent, or the content differs",
                f.body.len(),
                body.len()
            );
        }
    }
}

/// A port with credentials refuses requests without the right ones with 407, in both forms.
#[track_caller]
fn assert_needs_credentials(port: SocketAddr, user: &str, web: &TcpServer) {
    let url = format!("http://{}/file.bin", web.addr);
    for proxy in [
        format!("http://{port}"),
        format!("http://{user}:wrong@{port}"),
    ] {
        let plain = curl(&proxy, &url, false);
        assert_eq!(plain.status, 407, "{proxy}: plain request answered");
        let tunnel = curl(&proxy, &url, true);
        assert!(!tunnel.ok, "{proxy}: CONNECT got through");
        assert_eq!(tunnel.connect_status, 407, "{proxy}: CONNECT answered");
    }
}

fn forward_client(rt: Rt) {
    let body = pattern(31, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let (mut server, _client, port) = forward_pair(rt, "tok");
    assert_fetches(port, None, &web, &body);
    // Through the tunnel: our server dialled the web server for each of the four fetches.
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 4), vec![4]);
    assert_eq!(web.accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
}

fn forward_client_fast_open(rt: Rt) {
    let body = pattern(32, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.fast_open = true;
    let mut client = Proxy::client(rt, opts);
    let port = client.socks_addr();
    assert_fetches(port, None, &web, &body);
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 4), vec![4]);
    // A plain request is answered by the origin, not by FastOpen: when the dial fails, the
    // client still gets its 502 (a CONNECT was told 200 at once, so it gets a reset).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let f = curl(&format!("http://{port}"), &format!("http://{dead}/"), false);
    assert_eq!(
        f.status, 502,
        "plain request to a closed port with FastOpen"
    );
    assert_eq!(f.body, b"Connection failed");
}

fn forward_client_credentials(rt: Rt) {
    let body = pattern(33, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.socks = Some(socks_listen(Some(("carol", "pa55"))));
    let mut client = Proxy::client(rt, opts);
    let port = client.socks_addr();
    assert_fetches(port, Some(("carol", "pa55")), &web, &body);
    assert_needs_credentials(port, "carol", &web);
    // Refused requests never reached the server.
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 4), vec![4]);
}

fn reverse_port(rt: Rt) {
    let body = pattern(34, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = reverse_server(rt, "rtok", None, |_| {});
    let mut prov = provider(rt, &server.url(), "rtok");
    assert_fetches(server.socks_addr(), None, &web, &body);
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 4), vec![4]);
}

fn reverse_port_credentials(rt: Rt) {
    let body = pattern(35, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = reverse_server(rt, "rtok", Some(("dave", "s3same")), |_| {});
    let mut prov = provider(rt, &server.url(), "rtok");
    let port = server.socks_addr();
    assert_fetches(port, Some(("dave", "s3same")), &web, &body);
    assert_needs_credentials(port, "dave", &web);
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 4), vec![4]);
}

fn connector_port(rt: Rt) {
    let body = pattern(36, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = Proxy::server(
        rt,
        server_options(vec![
            reverse("rtok", None),
            TokenSpec::Connector(Some("ctok".into()), "rtok".into()),
        ]),
    );
    let url = server.url();
    let mut prov = provider(rt, &url, "rtok");
    let mut connector = Proxy::client(rt, client_options(&url, "ctok", ClientRole::Forward));
    assert_fetches(connector.socks_addr(), None, &web, &body);
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 4), vec![4]);
}

/// What the reference answers when the channel cannot be had, and what it closes silently.
fn refusals(rt: Rt) {
    let (_server, _client, port) = forward_pair(rt, "tok");
    // Nothing listens on the target: the far side's dial fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let f = curl(&format!("http://{port}"), &format!("http://{dead}/"), false);
    assert_eq!(f.status, 502, "plain request to a closed port");
    assert_eq!(f.body, b"Connection failed");
    let f = curl(&format!("http://{port}"), &format!("http://{dead}/"), true);
    assert_eq!(f.connect_status, 502, "CONNECT to a closed port");
    // Origin form is not a proxy request.
    let reply = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n")
            && reply.ends_with(b"Absolute-form request URL required"),
        "origin-form request answered {:?}",
        String::from_utf8_lossy(&reply)
    );
    // SOCKS4 (first byte 4) and anything else that is neither SOCKS5 nor HTTP: closed, no reply.
    assert_eq!(raw_exchange(port, &[4, 1, 0, 80, 127, 0, 0, 1, 0]), b"");
    assert_eq!(raw_exchange(port, b"get / HTTP/1.1\r\n\r\n"), b"");
}

/// Send `request` and read until the proxy closes (which it must).
fn raw_exchange(port: SocketAddr, request: &[u8]) -> Vec<u8> {
    let (got, end) =
        linksocks_tests::e2e::curl::raw_exchange(port, request, Duration::from_secs(20));
    assert_eq!(
        end,
        linksocks_tests::e2e::curl::End::Closed,
        "the proxy closes after its answer"
    );
    got
}

/// Python's urllib with a proxy handler: plain requests through the forward client's port,
/// with and without credentials in the proxy URL.
fn python_urllib(rt: Rt) {
    let python = require_program("python3", "python3");
    let body = pattern(37, 64 << 10);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.socks = Some(socks_listen(Some(("erin", "w0rd"))));
    let mut client = Proxy::client(rt, opts);
    let port = client.socks_addr();
    let script = r#"
import hashlib, sys, urllib.request, urllib.error
proxy, url = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
try:
    with opener.open(url, timeout=30) as r:
        print(r.status, hashlib.sha256(r.read()).hexdigest())
except urllib.error.HTTPError as e:
    print(e.code, "-")
"#;
    let run = |proxy: &str| {
        let mut cmd = Command::new(&python);
        cmd.args(["-c", script, proxy, &format!("http://{}/f.bin", web.addr)]);
        for v in PROXY_ENV {
            cmd.env_remove(v);
        }
        let out = cmd.output().expect("cannot run python3");
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let want = format!("200 {}", linksocks_tests::e2e::target::sha256_hex(&body));
    assert_eq!(run(&format!("http://erin:w0rd@{port}")), want);
    assert_eq!(run(&format!("http://{port}")), "407 -");
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 1), vec![1]);
}

/// A page whose text exists only once its script ran: what the browser renders, not what
/// the server sent.
const PAGE: &str = "<!doctype html><html><head><title>t</title></head><body><p id=\"out\">\
                    not rendered</p><script>document.getElementById('out').textContent = \
                    'rendered through linksocks ' + (6 * 7);</script></body></html>";

fn html_server() -> TcpServer {
    TcpServer::start("127.0.0.1:0", |mut s| {
        if read_request_head(&mut s).is_none() {
            return;
        }
        let h = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            PAGE.len()
        );
        let _ = s.write_all(h.as_bytes());
        let _ = s.write_all(PAGE.as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = s.read(&mut [0u8; 1024]);
    })
    .unwrap()
}

/// Headless Chromium (Debian's) loads a local page through the port, as a SOCKS5 proxy and
/// as an HTTP proxy; the test reads the DOM it rendered.
fn chromium(rt: Rt) {
    let chromium = require_program("chromium", "chromium");
    let web = html_server();
    let (mut server, _client, port) = forward_pair(rt, "tok");
    for scheme in ["socks5", "http"] {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server={scheme}://{port}"))
        // Chromium never proxies loopback unless told to.
        .arg("--proxy-bypass-list=<-loopback>")
        .arg("--dump-dom")
        .arg(format!("http://{}/index.html", web.addr));
        for v in PROXY_ENV {
            cmd.env_remove(v);
        }
        let out = cmd.output().expect("cannot run chromium");
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("rendered through linksocks 42"),
            "{scheme} proxy: chromium rendered {dom:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    // Both page loads went through the tunnel (a browser may also ask for /favicon.ico).
    let dials = dial_counts(std::slice::from_mut(&mut server), 2)[0];
    assert!(dials >= 2, "{dials} dials");
}

linksocks_tests::on_both_runtimes!(
    forward_client,
    forward_client_fast_open,
    forward_client_credentials,
    reverse_port,
    reverse_port_credentials,
    connector_port,
    refusals,
    python_urllib,
    chromium,
);
