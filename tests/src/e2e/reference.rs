//! The reference Go implementation as a peer, through `../shared/tools/ref-linksocks`, which
//! installs it from the Python package index on first use and keeps its peer-to-peer discovery
//! off (nothing leaves loopback). If it cannot be installed or started, tests fail loudly: an
//! interop test that skips proves nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::daemon::{free_addr, Daemon};
use super::wait;

/// How long the reference may take to start (a Python interpreter loading a Go library).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The launcher, beside this repository.
pub fn launcher() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/ref-linksocks");
    assert!(
        p.is_file(),
        "the reference launcher is missing at {} (CI checks out ../shared beside the repository)",
        p.display()
    );
    p
}

/// Installs the reference if needed, once per test process (parallel tests would otherwise
/// build the same venv at once).
pub fn ensure_installed() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let out = Command::new(launcher())
        .arg("--help")
        .output()
        .expect("run the reference launcher (python3 needed)");
    assert!(
        out.status.success(),
        "the reference implementation could not be installed or started:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    *done = true;
}

/// A running reference process.
pub struct RefPeer {
    pub daemon: Daemon,
    /// Its WebSocket address (server) or SOCKS5 address (forward client), when it has one.
    pub addr: Option<SocketAddr>,
}

impl RefPeer {
    /// Starts `ref-linksocks ARGS...` without waiting for anything.
    pub fn spawn(name: &str, args: &[&str]) -> RefPeer {
        ensure_installed();
        let launcher = launcher();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let daemon = Daemon::spawn(name, move |_| {
            let mut c = Command::new(launcher);
            c.args(&args);
            // Nothing of the environment may point it at a proxy or change its mode.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if k.starts_with("LINKSOCKS_") || k.to_ascii_lowercase().ends_with("_proxy") {
                    c.env_remove(k);
                }
            }
            c
        });
        RefPeer { daemon, addr: None }
    }

    /// A reference server on 127.0.0.1 (a free port), with `extra` arguments (e.g. `-r -p N`);
    /// returns once its WebSocket port accepts connections.
    pub fn server(token: &str, extra: &[&str]) -> RefPeer {
        let ws = free_addr();
        let port = ws.port().to_string();
        let mut args = vec!["server", "-t", token, "-H", "127.0.0.1", "-P", &port];
        args.extend_from_slice(extra);
        let mut p = Self::spawn("reference server", &args);
        p.wait_port(ws);
        p.addr = Some(ws);
        p
    }

    /// A reference forward client (or connector) of `url` with its SOCKS5 port on 127.0.0.1;
    /// returns once that port accepts connections (that is, once it authenticated).
    pub fn client(url: &str, token: &str, extra: &[&str]) -> RefPeer {
        let socks = free_addr();
        let port = socks.port().to_string();
        let mut args = vec![
            "client",
            "-t",
            token,
            "-u",
            url,
            "-s",
            "127.0.0.1",
            "-p",
            &port,
        ];
        args.extend_from_slice(extra);
        let mut p = Self::spawn("reference client", &args);
        p.wait_port(socks);
        p.addr = Some(socks);
        p
    }

    /// A reference provider (`client -r`) of `url`. Returns at once: the caller waits for
    /// the server to see it.
    pub fn provider(url: &str, token: &str, extra: &[&str]) -> RefPeer {
        let mut args = vec!["client", "-r", "-t", token, "-u", url];
        args.extend_from_slice(extra);
        Self::spawn("reference provider", &args)
    }

    /// The `ws://` URL of a reference server.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr.expect("a server"))
    }

    /// Waits for `addr` to accept connections, failing with the process's output if it exits.
    pub fn wait_port(&mut self, addr: SocketAddr) {
        let d = &mut self.daemon;
        wait::until(
            &format!("{} to listen on {addr}", d.name),
            START_TIMEOUT,
            || {
                d.assert_running();
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            },
        );
    }
}
