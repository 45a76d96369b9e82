//! The crate's examples, run as the README tells a user to run them (without arguments they
//! show themselves on loopback and check what they got).

#[allow(dead_code)]
#[path = "../examples/token_server.rs"]
mod token_server;

#[allow(dead_code)]
#[path = "../examples/reverse_provider.rs"]
mod reverse_provider;

#[test]
fn token_server_example() {
    token_server::run(Vec::new()).expect("the example runs");
}

#[test]
fn reverse_provider_example() {
    reverse_provider::run(Vec::new()).expect("the example runs");
}
