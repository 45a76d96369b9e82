//! A forward client and server embedded in an async-std program: driven by the application's
//! own `async_std::task::block_on`, fetching an echo through the client's SOCKS5 port.

use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use linksocks_core::session::{ClientConfig, ClientRole, ServerConfig, SocksListen};
use linksocks_runtime::{ClientOptions, RunEvent, ServerOptions, TokenSpec};

async fn next_addr(
    rx: &async_channel::Receiver<RunEvent>,
    want: fn(&RunEvent) -> Option<std::net::SocketAddr>,
) -> std::net::SocketAddr {
    loop {
        let e = async_std::future::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("event in time")
            .expect("events open");
        if let Some(a) = want(&e) {
            return a;
        }
    }
}

#[test]
fn forward_echo_under_the_applications_block_on() {
    async_std::task::block_on(async {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        async_std::task::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                async_std::task::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });

        let (stop_h, stop) = linksocks_runtime::stop_pair();
        let (etx, erx) = async_channel::unbounded();
        let sopts = ServerOptions {
            ws_host: "127.0.0.1".into(),
            ws_port: 0,
            machine: ServerConfig::default(),
            tokens: vec![TokenSpec::Forward(Some("tok".into()))],
            api_key: None,
            api_keys: Vec::new(),
            socks_host: "127.0.0.1".into(),
            upstream_proxy: None,
            max_message_size: 32 << 20,
            tls: None,
        };
        let server = async_std::task::spawn(linksocks_runtime_async_std::run_server(
            sopts,
            Some(etx),
            stop.clone(),
        ));
        let ws = next_addr(&erx, |e| match e {
            RunEvent::WebSocketListening(a) => Some(*a),
            _ => None,
        })
        .await;

        let mut cfg = ClientConfig::new(
            format!("ws://{ws}"),
            Some("tok".into()),
            ClientRole::Forward,
        );
        cfg.socks = Some(SocksListen {
            host: "127.0.0.1".into(),
            port: 0,
            credentials: None,
        });
        let (ctx, crx) = async_channel::unbounded();
        let copts = ClientOptions {
            machine: cfg,
            upstream_proxy: None,
            no_env_proxy: true,
            max_message_size: 32 << 20,
            tls: Default::default(),
        };
        let client = async_std::task::spawn(linksocks_runtime_async_std::run_client(
            copts,
            Some(ctx),
            stop.clone(),
        ));
        let socks = next_addr(&crx, |e| match e {
            RunEvent::SocksListening(a) => Some(*a),
            _ => None,
        })
        .await;

        let mut s = TcpStream::connect(socks).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut r = [0u8; 2];
        s.read_exact(&mut r).await.unwrap();
        assert_eq!(r, [5, 0]);
        let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
        req.extend_from_slice(&echo_addr.port().to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).await.unwrap();
        assert_eq!(rep[1], 0, "SOCKS reply {rep:?}");
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        let writer = {
            let mut w = s.clone();
            let p = payload.clone();
            async_std::task::spawn(async move { w.write_all(&p).await.unwrap() })
        };
        let mut got = vec![0u8; payload.len()];
        s.read_exact(&mut got).await.unwrap();
        writer.await;
        assert!(got == payload, "echo mismatch");
        stop_h.stop();
        server.await.unwrap();
        client.await.unwrap();
    });
}
