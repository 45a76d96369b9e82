//! The adapter crates' examples, run as the README tells a user to run them: without
//! arguments each shows itself on loopback and checks what it got. Each has a minute.

use std::time::Duration;

use linksocks_tests::e2e::wait::finishes_within;

#[allow(dead_code)]
#[path = "../../runtime-smol/examples/forward_client.rs"]
mod forward_client;

#[allow(dead_code)]
#[path = "../../runtime-async-std/examples/token_server.rs"]
mod token_server;

#[allow(dead_code)]
#[path = "../../runtime-async-std/examples/reverse_provider.rs"]
mod reverse_provider;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn forward_client_on_smol() {
    finishes_within(LIMIT, || {
        forward_client::run(Vec::new()).expect("the example runs")
    });
}

#[test]
fn token_server_on_async_std() {
    finishes_within(LIMIT, || {
        token_server::run(Vec::new()).expect("the example runs")
    });
}

#[test]
fn reverse_provider_on_async_std() {
    finishes_within(LIMIT, || {
        reverse_provider::run(Vec::new()).expect("the example runs")
    });
}
