//! Waiting for a condition with a deadline, instead of sleeping and hoping.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `timeout`.
#[track_caller]
pub fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Like [`until`], for a value.
#[track_caller]
pub fn for_some<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    until(what, timeout, || {
        out = f();
        out.is_some()
    });
    out.expect("set")
}

/// Waits until something accepts TCP connections on `addr`.
#[track_caller]
pub fn port_open(addr: SocketAddr, timeout: Duration) {
    until(&format!("a listener on {addr}"), timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
}

/// Runs `f` on a thread of its own and fails if it has not finished within `limit`: work
/// stranded on an executor nobody runs, or an example that hangs, shows as a failure, not as
/// a stalled test run. A panic in `f` is passed on.
pub fn finishes_within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("not finished within {limit:?}"),
    }
}
