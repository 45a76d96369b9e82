//! A forward client embedded in a smol program: a SOCKS5 (and HTTP proxy) port on this
//! machine whose connections leave from the LinkSocks server.
//!
//! ```text
//! cargo run -p linksocks-runtime-smol --example forward_client -- ws://server:8765 TOKEN
//! ```
//!
//! serves `127.0.0.1:1080` until Ctrl-C. Without arguments it shows itself on loopback: it
//! starts a server of its own, fetches a greeting through the tunnel, and exits.

use std::net::SocketAddr;

use linksocks_runtime_smol::{Client, Error, Server, Smol};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

fn main() -> Result<(), Error> {
    run(std::env::args().skip(1).collect())
}

/// The example, with its command-line arguments.
pub fn run(args: Vec<String>) -> Result<(), Error> {
    smol::block_on(async {
        if let [url, token] = args.as_slice() {
            let client = Client::builder(token.as_str())
                .url(url.as_str())
                .socks_addr("127.0.0.1", 1080)
                .start(Smol)?;
            client.ready().await?;
            println!("SOCKS5 and HTTP proxy on {:?}", client.socks_addr());
            return client.wait().await;
        }
        demo().await
    })
}

/// Everything on loopback: a server, a client of it, and a greeting fetched through them.
async fn demo() -> Result<(), Error> {
    let server = Server::builder()
        .ws_addr("127.0.0.1", 0)
        .forward_token("demo-token")
        .start(Smol)
        .await?;
    let client = Client::builder("demo-token")
        .url(format!("ws://{}", server.ws_addr()))
        .socks_addr("127.0.0.1", 0)
        .start(Smol)?;
    client.ready().await?;
    let socks = client.socks_addr().expect("a ready client listens");

    let target = greeter().await;
    let greeting = fetch_via_socks5(socks, target)
        .await
        .expect("fetch through the tunnel");
    println!("through the tunnel: {greeting}");
    assert_eq!(greeting, "hello from the target");

    client.stop().await?;
    server.stop().await
}

/// A TCP service on loopback that greets each connection.
async fn greeter() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("address");
    smol::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hello from the target").await;
        }
    })
    .detach();
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
