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
    within_a_minute(|| token_server::run(Vec::new()).expect("the example runs"));
}

#[test]
fn reverse_provider_example() {
    within_a_minute(|| reverse_provider::run(Vec::new()).expect("the example runs"));
}

/// Runs `f` on a thread of its own; fails if it has not finished within a minute (an example
/// that hangs must fail the run, not stall it).
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("not done within a minute"),
    }
}
