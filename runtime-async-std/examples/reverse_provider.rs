//! A reverse provider on async-std: the server's SOCKS5 users reach targets through this
//! machine (a LAN behind NAT, say), without opening a port here.
//!
//! ```text
//! cargo run -p linksocks-runtime-async-std --example reverse_provider -- ws://server:8765 TOKEN
//! ```
//!
//! provides until Ctrl-C. Without arguments it shows itself on loopback: it starts a server
//! with a reverse token, provides for it, and fetches a greeting from the server's SOCKS5 port.

use std::net::SocketAddr;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::{TcpListener, TcpStream};
use linksocks_runtime_async_std::{AsyncStd, Client, Error, ReverseToken, Server};

fn main() -> Result<(), Error> {
    run(std::env::args().skip(1).collect())
}

/// The example, with its command-line arguments.
pub fn run(args: Vec<String>) -> Result<(), Error> {
    async_std::task::block_on(async {
        if let [url, token] = args.as_slice() {
            let provider = Client::builder(token.as_str())
                .url(url.as_str())
                .reverse(true)
                .start(AsyncStd)?;
            provider.ready().await?;
            println!("providing for {url}");
            return provider.wait().await;
        }
        demo().await
    })
}

async fn demo() -> Result<(), Error> {
    let server = Server::builder()
        .ws_addr("127.0.0.1", 0)
        .socks_nowait(true)
        .start(AsyncStd)
        .await?;
    let rev = server
        .add_reverse_token(ReverseToken::new().token("provider-token"))
        .await?;
    let socks_port = rev.port.expect("a reverse token with a SOCKS5 port");

    let provider = Client::builder("provider-token")
        .url(format!("ws://{}", server.ws_addr()))
        .reverse(true)
        .start(AsyncStd)?;
    provider.ready().await?;

    let target = greeter().await;
    let socks = SocketAddr::from(([127, 0, 0, 1], socks_port));
    let greeting = fetch_via_socks5(socks, target)
        .await
        .expect("fetch through the provider");
    println!("through the provider: {greeting}");
    assert_eq!(greeting, "hello from behind the provider");

    provider.stop().await?;
    server.stop().await
}

/// A TCP service on loopback that greets each connection.
async fn greeter() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("address");
    async_std::task::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hello from behind the provider").await;
        }
    });
    addr
}

/// Connect to `target` through the SOCKS5 proxy at `socks` and read what it sends.
async fn fetch_via_socks5(socks: SocketAddr, target: SocketAddr) -> std::io::Result<String> {
    let SocketAddr::V4(t) = target else {
        unreachable!("the greeter listens on IPv4")
    };
    let mut s = TcpStream::connect(socks).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).await?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await?;
    if reply[1] != 0 {
        return Err(std::io::Error::other(format!("SOCKS5 reply {}", reply[1])));
    }
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text)
}
