//! The library embedded in a program: a forward server and client started from the program's
//! own async code and driven by its executor, fetching an echo through the client's SOCKS5
//! port. Under our `block_on` (what the CLI does), under the application's own
//! `smol::block_on` (the library's tasks must run there too, not wait on an executor nobody
//! drives), and under `async_std::task::block_on`.

use std::future::Future;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use linksocks_runtime::{Client, Runtime, Server};
use smol::net::{TcpListener, TcpStream};

/// Which adapter runs the proxies; its `spawn` is what the program calls.
#[derive(Clone)]
enum Adapter {
    Smol,
    AsyncStd,
    Executor(std::sync::Arc<smol::Executor<'static>>),
}

impl Adapter {
    /// Spawn `f` the program's way; its result comes back on the returned channel.
    fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> async_channel::Receiver<T> {
        let (tx, rx) = async_channel::bounded(1);
        let task = async move {
            let _ = tx.send(f.await).await;
        };
        match self {
            Adapter::Smol => smol::spawn(task).detach(),
            Adapter::AsyncStd => drop(async_std::task::spawn(task)),
            Adapter::Executor(ex) => ex.spawn(task).detach(),
        }
        rx
    }
}

/// `fut`, or a panic naming `what` after 10 s.
async fn in_time<T>(what: &str, fut: impl Future<Output = T>) -> T {
    futures_lite::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("{what} did not happen within 10 s"))
}

async fn forward_echo(rt: impl Runtime + Clone, adapter: Adapter) {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let spawner = adapter.clone();
    adapter.spawn(async move {
        loop {
            let (mut s, _) = echo.accept().await.unwrap();
            spawner.spawn(async move {
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

    let server = Server::builder()
        .ws_addr("127.0.0.1", 0)
        .forward_token("tok")
        .start(rt.clone())
        .await
        .expect("server starts");
    let client = Client::builder("tok")
        .url(format!("ws://{}", server.ws_addr()))
        .socks_addr("127.0.0.1", 0)
        .start(rt)
        .expect("client starts");
    in_time("the client's readiness", client.ready())
        .await
        .expect("client ready");
    let socks = client.socks_addr().expect("ready means listening");

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
        adapter.spawn(async move { w.write_all(&p).await.unwrap() })
    };
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).await.unwrap();
    writer.recv().await.unwrap();
    assert!(got == payload, "echo mismatch");
    in_time("the client's stop", client.stop()).await.unwrap();
    in_time("the server's stop", server.stop()).await.unwrap();
    // Stopping again is harmless.
    client.stop().await.unwrap();
}

/// A hang (a library task stranded on an executor nobody runs) fails the test.
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    linksocks_tests::e2e::wait::finishes_within(Duration::from_secs(60), f)
}

use linksocks_runtime_async_std::AsyncStd;
use linksocks_runtime_smol::Smol;

#[test]
fn smol_under_our_block_on() {
    within_a_minute(|| linksocks_runtime_smol::block_on(forward_echo(Smol, Adapter::Smol)));
}

#[test]
fn smol_under_the_applications_smol_block_on() {
    within_a_minute(|| smol::block_on(forward_echo(Smol, Adapter::Smol)));
}

#[test]
fn smol_on_the_applications_own_executor() {
    use std::sync::Arc;
    within_a_minute(|| {
        let ex = Arc::new(smol::Executor::new());
        let rt = linksocks_runtime_smol::OnExecutor(ex.clone());
        // Only the application's executor runs the library's tasks: nothing else drives them.
        smol::block_on(ex.run(forward_echo(rt, Adapter::Executor(ex.clone()))))
    });
}

#[test]
fn async_std_under_the_applications_block_on() {
    within_a_minute(|| async_std::task::block_on(forward_echo(AsyncStd, Adapter::AsyncStd)));
}
