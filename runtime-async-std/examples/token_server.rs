//! A LinkSocks server on async-std whose tokens are managed from code, as a control panel
//! or an account system would: added, listed and removed while clients are connected.
//!
//! ```text
//! cargo run -p linksocks-runtime-async-std --example token_server -- 0.0.0.0 8765
//! ```
//!
//! serves until Ctrl-C, printing a fresh forward token. Without arguments it shows itself on
//! loopback: a client authenticates with a token added at run time, and is turned away once
//! that token is removed.

use std::time::Duration;

use linksocks_runtime_async_std::{
    AsyncStd, Client, Error, Event, ReverseToken, Server, TokenType,
};

fn main() -> Result<(), Error> {
    run(std::env::args().skip(1).collect())
}

/// The example, with its command-line arguments.
pub fn run(args: Vec<String>) -> Result<(), Error> {
    async_std::task::block_on(async {
        if let [host, port] = args.as_slice() {
            let port = port.parse().expect("a port number");
            let server = Server::builder()
                .ws_addr(host.as_str(), port)
                .start(AsyncStd)
                .await?;
            let token = server.add_forward_token(None)?;
            println!("listening on {}; forward token {token}", server.ws_addr());
            return server.wait().await;
        }
        demo().await
    })
}

async fn demo() -> Result<(), Error> {
    let server = Server::builder()
        .ws_addr("127.0.0.1", 0)
        .start(AsyncStd)
        .await?;

    // Tokens added while the server runs: a generated forward token, a reverse token with its
    // SOCKS5 port, and a connector token for it.
    let forward = server.add_forward_token(None)?;
    let reverse = server
        .add_reverse_token(ReverseToken::new().token("rev-token"))
        .await?;
    let connector = server.add_connector_token(Some("conn-token"), &reverse.token)?;
    println!(
        "added forward {forward}, reverse {} (SOCKS5 port {:?}), connector {connector}",
        reverse.token, reverse.port
    );
    for t in server.tokens() {
        println!("  {:?} {} ({} clients)", t.kind, t.token, t.clients_count);
    }
    assert_eq!(server.tokens().len(), 3);

    // A client of the new forward token gets in ...
    let client = Client::builder(forward.as_str())
        .url(format!("ws://{}", server.ws_addr()))
        .socks_addr("127.0.0.1", 0)
        .start(AsyncStd)?;
    client.ready().await?;
    let status = server.tokens();
    let line = status
        .iter()
        .find(|t| t.kind == TokenType::Forward)
        .expect("listed");
    println!("the forward token has {} client(s)", line.clients_count);
    assert_eq!(line.clients_count, 1);

    // ... and is turned away once the token is removed: its link is closed, and the token it
    // presents again is refused.
    let events = client.events();
    server.remove_token(&forward)?;
    let refused = async_std::future::timeout(Duration::from_secs(20), async {
        while let Some(e) = events.recv().await {
            if let Event::AuthRefused { reason } = e {
                return reason;
            }
        }
        String::from("(no more events)")
    })
    .await
    .expect("the client is refused within 20 s");
    println!("after removal the server says: {refused}");
    assert!(server.tokens().iter().all(|t| t.token != forward));

    // The client stopped by itself (it does not retry a refused token unless told to), and
    // says why.
    let end = client.stop().await;
    println!("the client ended with: {end:?}");
    assert!(matches!(end, Err(Error::AuthRefused { .. })));
    server.stop().await
}
