//! wss:// with real TLS: nginx (started here, certificate made here with openssl) terminating
//! TLS in front of our server, our server's own TLS, and a client that refuses a certificate
//! it was not told to trust.

use std::net::SocketAddr;
use std::process::Command;

use linksocks_core::session::ClientRole;
use linksocks_runtime::{ClientOptions, ClientTls, Error, Event};
use linksocks_tests::e2e::daemon::require_program;
use linksocks_tests::e2e::daemons::{Cert, Nginx};
use linksocks_tests::e2e::modes::assert_echo;
use linksocks_tests::e2e::proxy::{client_options, forward, server_options, EVENT_TIMEOUT};
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::{pattern, sha256_hex, TcpServer};
use linksocks_tests::e2e::{wait, Proxy, Rt};

const KEY: &str = "tls-api-key";

/// A forward server with the API on (to see its clients), plain or with `cert` as its TLS.
fn server(rt: Rt, cert: Option<&Cert>) -> (Proxy, SocketAddr) {
    let mut opts = server_options(vec![forward("tok")]);
    opts.api_key = Some(KEY.into());
    opts.tls = cert.map(Cert::server_tls);
    let mut s = Proxy::server(rt, opts);
    let addr = s.ws_addr();
    (s, addr)
}

fn wss_client(url: &str, tls: ClientTls) -> ClientOptions {
    let mut o = client_options(url, "tok", ClientRole::Forward);
    o.tls = tls;
    o
}

fn trusting(cert: &Cert) -> ClientTls {
    ClientTls {
        ca_file: Some(cert.cert.clone()),
        insecure: false,
    }
}

/// curl through our SOCKS5 port (names resolved on the far side), the body to memory.
fn curl_via_socks(socks: SocketAddr, url: &str) -> Vec<u8> {
    let curl = require_program("curl", "curl");
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--fail", "--max-time", "60"])
        .arg("--socks5-hostname")
        .arg(socks.to_string())
        .arg(url)
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url} via {socks}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// How many clients a TLS server has on its token, by its API (curl speaks the TLS).
fn clients_over_tls(ws: SocketAddr, cert: &Cert) -> u64 {
    let curl = require_program("curl", "curl");
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "30", "--cacert"])
        .arg(&cert.cert)
        .args(["-H", &format!("X-API-Key: {KEY}")])
        .arg(format!("https://localhost:{}/api/status", ws.port()))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run curl");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status over TLS ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    status["tokens"][0]["clients_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no client count in {status}"))
}

/// Our client reaches our plain server through nginx over wss://, trusting nginx's
/// self-signed certificate through the CA-file option; curl through the tunnel gets a file
/// byte for byte; nginx's log shows the WebSocket upgrade it proxied.
fn through_nginx(rt: Rt) {
    let cert = Cert::localhost();
    let body = pattern(11, 3 << 20);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let (_server, ws) = server(rt, None);
    let nginx = Nginx::tls_front(ws, &cert);

    let url = format!("wss://localhost:{}", nginx.addr.port());
    let mut client = Proxy::client(rt, wss_client(&url, trusting(&cert)));
    client.wait_links_ready(1);
    let socks = client.socks_addr();

    let got = curl_via_socks(
        socks,
        &format!("http://localhost:{}/file.bin", web.addr.port()),
    );
    assert_eq!(got.len(), body.len());
    assert!(
        sha256_hex(&got) == sha256_hex(&body),
        "the file differs after the tunnel"
    );
    // nginx logs a request when it ends: for the upgrade, when the link closes.
    client.stop().expect("client stops cleanly");
    wait::until("nginx to log the WebSocket upgrade", EVENT_TIMEOUT, || {
        nginx
            .access_log()
            .lines()
            .any(|l| l.contains("GET /socket?token=") && l.contains(" 101 "))
    });
}

/// wss:// straight to our server's own TLS; the same port serves its HTTP front over TLS
/// (curl with the CA); a ws:// client cannot talk to it.
fn own_tls(rt: Rt) {
    let cert = Cert::localhost();
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, ws) = server(rt, Some(&cert));

    let mut client = Proxy::client(
        rt,
        wss_client(&format!("wss://127.0.0.1:{}", ws.port()), trusting(&cert)),
    );
    client.wait_links_ready(1);
    assert_echo(
        &Socks5::new(client.socks_addr()),
        echo.addr,
        &pattern(3, 50_000),
    );

    let curl = require_program("curl", "curl");
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "30", "--cacert"])
        .arg(&cert.cert)
        .arg(format!("https://localhost:{}/", ws.port()))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("is running"),
        "curl https: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut plain = client_options(
        &format!("ws://127.0.0.1:{}", ws.port()),
        "tok",
        ClientRole::Forward,
    );
    plain.machine.reconnect = false;
    let mut plain = Proxy::client(rt, plain);
    match plain.wait_end(EVENT_TIMEOUT) {
        Some(Err(e @ Error::Disconnected { .. })) => {
            let why = e.to_string();
            assert!(why.contains("cannot connect to the server"), "{why}")
        }
        other => panic!("a ws:// client of a TLS server should fail: {other:?}"),
    }
}

/// A client with reconnection off dials `url`; it must end with a TLS certificate error,
/// without a link ever authenticating. Its error text.
fn refused(rt: Rt, url: &str, tls: ClientTls) -> String {
    let mut o = wss_client(url, tls);
    o.machine.reconnect = false;
    let mut c = Proxy::client(rt, o);
    let why = match c.wait_end(EVENT_TIMEOUT) {
        // The typed cause says TLS; the text says what happened in full.
        Some(Err(
            e @ Error::Disconnected {
                cause: Some(cause), ..
            },
        )) if matches!(**cause, Error::Tls(_)) => e.to_string(),
        other => panic!("the client should have refused the certificate: {other:?}"),
    };
    assert!(
        why.contains("TLS handshake") && why.contains("invalid peer certificate"),
        "unclear error: {why}"
    );
    assert!(
        !c.history().contains(&Event::LinkUp),
        "a link authenticated"
    );
    why
}

/// Without the CA file (and without the insecure flag, off by default), the client refuses
/// the self-signed certificate, says so, and never becomes a client of the server. A
/// certificate from the CA file that names another host is refused too. The insecure flag,
/// asked for explicitly, accepts any certificate.
fn untrusted_certificate_refused(rt: Rt) {
    assert!(
        !ClientTls::default().insecure,
        "insecure must be off by default"
    );
    let cert = Cert::localhost();
    let (_server, ws) = server(rt, Some(&cert));
    let url = format!("wss://127.0.0.1:{}", ws.port());
    refused(rt, &url, ClientTls::default());
    assert_eq!(clients_over_tls(ws, &cert), 0);

    let other = Cert::for_names("elsewhere.test", "DNS:elsewhere.test");
    let (_server2, ws2) = server(rt, Some(&other));
    let why = refused(
        rt,
        &format!("wss://127.0.0.1:{}", ws2.port()),
        trusting(&other),
    );
    assert!(why.contains("not valid for name"), "{why}");

    let mut insecure = Proxy::client(
        rt,
        wss_client(
            &url,
            ClientTls {
                ca_file: None,
                insecure: true,
            },
        ),
    );
    insecure.wait_links_ready(1);
    assert_eq!(clients_over_tls(ws, &cert), 1);
}

linksocks_tests::on_both_runtimes!(through_nginx, own_tls, untrusted_certificate_refused);
