//! Interoperability with the reference Go implementation, both directions.

use std::io::{Read, Write};

use linksocks_core::session::ClientRole;
use linksocks_tests::e2e::proxy::{client_options, Proxy};
use linksocks_tests::e2e::reference::RefPeer;
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::TcpServer;
use linksocks_tests::e2e::Rt;

fn our_client_reference_server(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let server = RefPeer::server("tok", &[]);
    let mut client = Proxy::client(
        rt,
        client_options(&server.url(), "tok", ClientRole::Forward),
    );
    let socks = client.socks_addr();
    let mut s = Socks5::new(socks).connect(echo.addr).unwrap();
    s.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
}

linksocks_tests::on_both_runtimes!(our_client_reference_server);
