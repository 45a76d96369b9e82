//! End-to-end test support: our proxies on real loopback sockets, the applications and
//! targets around them, the reference implementation and the third-party daemons some tests
//! put in the path.
//!
//! Test code here is plain blocking `std::net` (threads, timeouts), so a test reads the same
//! whichever executor runs the proxy under test: the proxy itself runs in this process on the
//! runtime the test names ([`Rt`]), and [`on_both_runtimes!`](crate::on_both_runtimes) makes
//! one test of each scenario per runtime, so every run of the suite covers smol and async-std.
//!
//! - [`proxy`]: our server and client, in process, on a runtime of choice.
//! - [`socks5`]: a blocking SOCKS5 client (CONNECT, UDP ASSOCIATE), written from RFC 1928/1929
//!   and independent of the code under test.
//! - [`target`]: what applications reach: echo, byte source, HTTP file server, UDP echo, DNS.
//! - [`reference`](mod@reference): the reference Go implementation, as a child process.
//! - [`daemon`]: child processes in general (logs kept, killed on drop) and free ports.
//! - [`daemons`]: openssl certificates, nginx as a TLS front, real upstream proxies.
//! - [`relay`]: a TCP relay that counts, cuts or freezes one connection at a time.
//! - [`api`]: an HTTP client for the server's API and metrics.
//! - [`modes`]: what the mode scenarios share (reverse setups, restarts, application checks).
//! - [`wait`]: waiting for a condition with a deadline.

pub mod api;
pub mod curl;
pub mod daemon;
pub mod daemons;
pub mod modes;
pub mod netfault;
pub mod proxy;
pub mod rawws;
pub mod reference;
pub mod relay;
pub mod socks5;
pub mod target;
pub mod wait;
pub mod wiretap;

pub use proxy::{client_options, server_options, Proxy, Rt};

/// One `#[test]` per runtime for each named scenario: `fn name(rt: Rt)` in the calling module
/// becomes the tests `smol::name` and `async_std::name`.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod smol {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::e2e::Rt::Smol)
                }
            )*
        }
        mod async_std {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::e2e::Rt::AsyncStd)
                }
            )*
        }
    };
}

/// Log output of the proxies under test: `RUST_LOG=debug cargo test ...` (default: warnings).
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
