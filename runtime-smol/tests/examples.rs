//! The crate's examples, run as the README tells a user to run them (without arguments they
//! show themselves on loopback and check what they got).

#[allow(dead_code)]
#[path = "../examples/forward_client.rs"]
mod forward_client;

#[test]
fn forward_client_example() {
    forward_client::run(Vec::new()).expect("the example runs");
}
