//! Child processes the tests start (the reference implementation, nginx, upstream proxies):
//! output kept in a log file shown when a test fails, killed and reaped when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A port on 127.0.0.1 that was free a moment ago, for programs that must be told a port
/// (ours take port 0 and report the one they got).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A loopback address with a [`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Finds `name` on PATH or in the sbin directories, where Debian puts daemons.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Like [`find_program`], but a missing program fails the test with what to install: these
/// tests must not pass by skipping (`.ci/run` installs every one).
#[track_caller]
pub fn require_program(name: &str, package: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed: apt-get install {package} (.ci/run does)")
    })
}

/// A running child process.
pub struct Daemon {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    /// Removed with the daemon (configuration files, certificates).
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr to a log file in a fresh directory, which `setup`
    /// may fill first (configuration files) and which lives as long as the daemon.
    pub fn spawn(name: &str, setup: impl FnOnce(&Path) -> Command) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(&format!("linksocks-{name}-"))
            .tempdir()
            .expect("temp dir");
        let mut cmd = setup(dir.path());
        let log = dir.path().join("output.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with its output) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.output());
        }
    }

    /// Its exit status if it has ended, without waiting.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop with `signal` (e.g. `"TERM"`) and waits for it at most `timeout`;
    /// its exit status, or `None` if it had to be killed.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if std::time::Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
        self.kill();
    }
}
