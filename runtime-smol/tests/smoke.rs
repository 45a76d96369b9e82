//! A first end-to-end check on loopback: forward mode through our client and server, driven
//! by our `block_on` (what the CLI does) and by the application's own `smol::block_on` (what
//! an embedding program does: the library's tasks must run there too, not wait on an executor
//! nobody drives).

use std::time::Duration;

use linksocks_core::session::{ClientConfig, ClientRole, ServerConfig, SocksListen};
use linksocks_runtime::{ClientOptions, RunEvent, ServerOptions, TokenSpec};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

async fn next_addr(
    rx: &smol::channel::Receiver<RunEvent>,
    want: fn(&RunEvent) -> Option<std::net::SocketAddr>,
) -> std::net::SocketAddr {
    loop {
        let e = smol::future::or(async { rx.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await
        .expect("event in time");
        if let Some(a) = want(&e) {
            return a;
        }
    }
}

/// Runs `f` on a thread of its own and fails if it has not finished within a minute (a
/// library task stranded on an executor nobody runs shows as a hang, not an error).
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("no answer within a minute"),
    }
}

#[test]
fn forward_echo_under_our_block_on() {
    within_a_minute(|| linksocks_runtime_smol::block_on(forward_echo()));
}

#[test]
fn forward_echo_under_the_applications_smol_block_on() {
    within_a_minute(|| smol::block_on(forward_echo()));
}

async fn forward_echo() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        smol::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                smol::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                })
                .detach();
            }
        })
        .detach();

        let (stop_h, stop) = linksocks_runtime::stop_pair();
        let (etx, erx) = smol::channel::unbounded();
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
        let server = smol::spawn(linksocks_runtime_smol::run_server(
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
        let (ctx, crx) = smol::channel::unbounded();
        let copts = ClientOptions {
            machine: cfg,
            upstream_proxy: None,
            no_env_proxy: true,
            max_message_size: 32 << 20,
            tls: Default::default(),
        };
        let client = smol::spawn(linksocks_runtime_smol::run_client(
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
            smol::spawn(async move { w.write_all(&p).await.unwrap() })
        };
        let mut got = vec![0u8; payload.len()];
        s.read_exact(&mut got).await.unwrap();
        writer.await;
        assert!(got == payload, "echo mismatch");
        stop_h.stop();
        server.await.unwrap();
        client.await.unwrap();
    }
}
