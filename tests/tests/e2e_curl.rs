//! The real `curl` as the application, through our SOCKS5 ports, in forward and reverse mode,
//! with and without credentials: what a user would run first.

use std::net::SocketAddr;
use std::process::Command;

use linksocks_core::session::ClientRole;
use linksocks_tests::e2e::daemon::require_program;
use linksocks_tests::e2e::modes::{dial_counts, provider, reverse_server};
use linksocks_tests::e2e::proxy::{forward, forward_pair, socks_listen};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

/// A few MiB: many Data messages, and more than one batch at every buffer on the way.
const BODY: usize = 3 << 20;

/// Runs curl fetching `url` through the SOCKS5 proxy `proxy` (a `socks5h://` URL, so the
/// host name travels to the proxy); the body, or curl's exit status and error output.
fn curl(proxy: &str, url: &str) -> Result<Vec<u8>, String> {
    let curl = require_program("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--fail", "--max-time", "60", "-x", proxy, "-o"])
        .arg(&out)
        .arg(url);
    // A proxy setting in the environment (no_proxy in particular) could make curl bypass the
    // proxy under test and pass without it.
    for v in linksocks_tests::e2e::curl::PROXY_ENV {
        cmd.env_remove(v);
    }
    let r = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    if !r.status.success() {
        return Err(format!(
            "curl {url} via {proxy}: {}: {}",
            r.status,
            String::from_utf8_lossy(&r.stderr).trim()
        ));
    }
    Ok(std::fs::read(&out).unwrap())
}

/// curl through `socks` must return exactly `body`, by IP and by host name.
#[track_caller]
fn assert_fetches(socks: SocketAddr, creds: Option<(&str, &str)>, web: &TcpServer, body: &[u8]) {
    let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    let proxy = format!("socks5h://{auth}{socks}");
    for url in [
        format!("http://{}/file.bin", web.addr),
        format!("http://localhost:{}/file.bin", web.addr.port()),
    ] {
        let got = curl(&proxy, &url).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            got == body,
            "{url}: {} bytes received, {} sent, or the content differs",
            got.len(),
            body.len()
        );
    }
}

fn curl_forward(rt: Rt) {
    let body = pattern(21, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let (mut server, _client, socks) = forward_pair(rt, "tok");
    assert_fetches(socks, None, &web, &body);
    // The requests went through the tunnel: our server dialled the web server both times.
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 2), vec![2]);
}

fn curl_forward_credentials(rt: Rt) {
    let body = pattern(22, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.socks = Some(socks_listen(Some(("carol", "pa55"))));
    let mut client = Proxy::client(rt, opts);
    let socks = client.socks_addr();
    assert_fetches(socks, Some(("carol", "pa55")), &web, &body);
    let url = format!("http://{}/file.bin", web.addr);
    assert!(
        curl(&format!("socks5h://carol:wrong@{socks}"), &url).is_err(),
        "curl with a wrong password got through"
    );
    assert!(
        curl(&format!("socks5h://{socks}"), &url).is_err(),
        "curl without credentials got through"
    );
    assert_eq!(dial_counts(std::slice::from_mut(&mut server), 2), vec![2]);
}

fn curl_reverse(rt: Rt) {
    let body = pattern(23, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = reverse_server(rt, "rtok", None, |_| {});
    let mut prov = provider(rt, &server.url(), "rtok");
    assert_fetches(server.socks_addr(), None, &web, &body);
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 2), vec![2]);
}

fn curl_reverse_credentials(rt: Rt) {
    let body = pattern(24, BODY);
    let web = TcpServer::http("127.0.0.1:0", body.clone()).unwrap();
    let mut server = reverse_server(rt, "rtok", Some(("dave", "s3same")), |_| {});
    let mut prov = provider(rt, &server.url(), "rtok");
    let socks = server.socks_addr();
    assert_fetches(socks, Some(("dave", "s3same")), &web, &body);
    let url = format!("http://{}/file.bin", web.addr);
    assert!(
        curl(&format!("socks5h://dave:wrong@{socks}"), &url).is_err(),
        "curl with a wrong password got through"
    );
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 2), vec![2]);
}

linksocks_tests::on_both_runtimes!(
    curl_forward,
    curl_forward_credentials,
    curl_reverse,
    curl_reverse_credentials,
);
