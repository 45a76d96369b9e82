//! Third-party programs the deployment tests put in the path: a self-signed certificate made
//! with the openssl CLI, nginx terminating TLS in front of our server, and real upstream proxies
//! (microsocks, dante, tinyproxy). Each runs on 127.0.0.1 with its configuration, logs and
//! pid file in a temp dir of its own, and is killed when dropped.
//!
//! The upstream proxies make their outgoing connections from [`PROXY_OUT_IP`], so a target (or a
//! [`Relay`](super::relay::Relay) guarding our server) that accepts only that address proves a
//! connection came through the proxy: the direct path, from 127.0.0.1, is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use linksocks_runtime::{ProxyKind, ProxyUrl};

use super::daemon::{free_addr, require_program, Daemon};
use super::wait;

/// The source address upstream proxies dial from (all of 127.0.0.0/8 is local on Linux).
pub const PROXY_OUT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// How long a daemon may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A self-signed certificate and its key (PEM), valid for `localhost` and 127.0.0.1 unless
/// made for other names. openssl marks it CA:TRUE, so it is its own CA file.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cert {
    /// For `localhost` and 127.0.0.1.
    pub fn localhost() -> Cert {
        Self::for_names("localhost", "DNS:localhost,IP:127.0.0.1")
    }

    /// For the subject alternative names `san` (openssl syntax: `DNS:a,IP:1.2.3.4`).
    pub fn for_names(cn: &str, san: &str) -> Cert {
        let openssl = require_program("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("linksocks-cert-")
            .tempdir()
            .expect("temp dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-addext")
            .arg(format!("subjectAltName={san}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cert {
            cert,
            key,
            _dir: dir,
        }
    }

    pub fn server_tls(&self) -> linksocks_runtime::ServerTls {
        linksocks_runtime::ServerTls {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Starts `name`, then waits until it listens on `addr` (panicking with its output if it exits).
fn start_listening(name: &str, addr: SocketAddr, setup: impl FnOnce(&Path) -> Command) -> Daemon {
    let mut d = Daemon::spawn(name, setup);
    wait::until(
        &format!("{name} listening on {addr}"),
        START_TIMEOUT,
        || {
            d.assert_running();
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        },
    );
    d
}

/// nginx terminating TLS on 127.0.0.1 and proxying everything, WebSocket upgrades included,
/// to a plain HTTP backend.
pub struct Nginx {
    daemon: Daemon,
    pub addr: SocketAddr,
}

impl Nginx {
    pub fn tls_front(backend: SocketAddr, cert: &Cert) -> Nginx {
        let nginx = require_program("nginx", "nginx");
        let addr = free_addr();
        let (crt, key) = (cert.cert.clone(), cert.key.clone());
        let daemon = start_listening("nginx", addr, |dir| {
            for t in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                std::fs::create_dir_all(dir.join(t)).expect("temp path");
            }
            let d = dir.display();
            // One process (no master, no workers), so that killing it leaves nothing behind.
            let conf = format!(
                "daemon off;\n\
                 master_process off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n\
                   access_log {d}/access.log;\n\
                   client_body_temp_path {d}/body;\n\
                   proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fastcgi;\n\
                   uwsgi_temp_path {d}/uwsgi;\n\
                   scgi_temp_path {d}/scgi;\n\
                   server {{\n\
                     listen {addr} ssl;\n\
                     ssl_certificate {crt};\n\
                     ssl_certificate_key {key};\n\
                     location / {{\n\
                       proxy_pass http://{backend};\n\
                       proxy_http_version 1.1;\n\
                       proxy_set_header Upgrade $http_upgrade;\n\
                       proxy_set_header Connection \"upgrade\";\n\
                       proxy_read_timeout 1h;\n\
                       proxy_send_timeout 1h;\n\
                       proxy_buffering off;\n\
                     }}\n\
                   }}\n\
                 }}\n",
                crt = crt.display(),
                key = key.display(),
            );
            write(&dir.join("nginx.conf"), &conf);
            let mut c = Command::new(nginx);
            c.arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(dir.join("nginx.conf"));
            c
        });
        Nginx { daemon, addr }
    }

    /// Requests nginx logged so far (one line each: method, path, status).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.daemon.dir().join("access.log")).unwrap_or_default()
    }
}

/// A real upstream proxy: SOCKS5 (microsocks, dante) or HTTP CONNECT (tinyproxy), dialling out
/// from [`PROXY_OUT_IP`].
pub struct UpstreamProxy {
    daemon: Daemon,
    pub addr: SocketAddr,
    kind: ProxyKind,
    credentials: Option<(String, String)>,
    /// Where the proxy logs its connections (its output file, or a log file of its own).
    log: PathBuf,
}

impl UpstreamProxy {
    /// microsocks, with a required username and password when `credentials` are given.
    pub fn microsocks(credentials: Option<(&str, &str)>) -> UpstreamProxy {
        let bin = require_program("microsocks", "microsocks");
        let addr = free_addr();
        let creds = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let c2 = creds.clone();
        let daemon = start_listening("microsocks", addr, move |_| {
            let mut c = Command::new(bin);
            c.args(["-i", "127.0.0.1", "-p", &addr.port().to_string()])
                .args(["-b", &PROXY_OUT_IP.to_string()]);
            if let Some((u, p)) = &c2 {
                c.args(["-u", u, "-P", p]);
            }
            c
        });
        let log = daemon.log.clone();
        UpstreamProxy {
            daemon,
            addr,
            kind: ProxyKind::Socks5,
            credentials: creds,
            log,
        }
    }

    /// dante's `danted`, no authentication.
    pub fn dante() -> UpstreamProxy {
        let bin = require_program("danted", "dante-server");
        let addr = free_addr();
        let daemon = start_listening("danted", addr, |dir| {
            let user = if is_root() {
                "user.privileged: root\nuser.unprivileged: root\n"
            } else {
                ""
            };
            let conf = format!(
                "logoutput: {log}\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: {out}\n\
                 socksmethod: none\n\
                 clientmethod: none\n\
                 {user}\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: error }}\n\
                 socks pass {{\n\
                   from: 127.0.0.0/8 to: 127.0.0.0/8\n\
                   command: connect\n\
                   log: connect error\n\
                 }}\n",
                log = dir.join("danted.log").display(),
                port = addr.port(),
                out = PROXY_OUT_IP,
            );
            write(&dir.join("danted.conf"), &conf);
            let mut c = Command::new(bin);
            c.arg("-f")
                .arg(dir.join("danted.conf"))
                .arg("-p")
                .arg(dir.join("danted.pid"))
                .args(["-N", "1"]);
            c
        });
        let log = daemon.dir().join("danted.log");
        UpstreamProxy {
            daemon,
            addr,
            kind: ProxyKind::Socks5,
            credentials: None,
            log,
        }
    }

    /// tinyproxy, with HTTP Basic authentication when `credentials` are given.
    pub fn tinyproxy(credentials: Option<(&str, &str)>) -> UpstreamProxy {
        let bin = require_program("tinyproxy", "tinyproxy");
        let addr = free_addr();
        let creds = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let auth = creds
            .as_ref()
            .map(|(u, p)| format!("BasicAuth {u} {p}\n"))
            .unwrap_or_default();
        let daemon = start_listening("tinyproxy", addr, |dir| {
            // No ConnectPort line: CONNECT is allowed to any port.
            let conf = format!(
                "Port {port}\n\
                 Listen 127.0.0.1\n\
                 Bind {out}\n\
                 Timeout 600\n\
                 MaxClients 200\n\
                 Allow 127.0.0.1\n\
                 LogLevel Connect\n\
                 DisableViaHeader Yes\n\
                 PidFile \"{pid}\"\n\
                 {auth}",
                port = addr.port(),
                out = PROXY_OUT_IP,
                pid = dir.join("tinyproxy.pid").display(),
            );
            write(&dir.join("tinyproxy.conf"), &conf);
            let mut c = Command::new(bin);
            c.arg("-d").arg("-c").arg(dir.join("tinyproxy.conf"));
            c
        });
        let log = daemon.log.clone();
        UpstreamProxy {
            daemon,
            addr,
            kind: ProxyKind::Http,
            credentials: creds,
            log,
        }
    }

    /// The proxy as our options name it, with its credentials.
    pub fn url(&self) -> ProxyUrl {
        self.url_with(
            self.credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        )
    }

    /// The proxy with other credentials (or none).
    pub fn url_with(&self, credentials: Option<(&str, &str)>) -> ProxyUrl {
        ProxyUrl {
            kind: self.kind,
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            username: credentials.map(|(u, _)| u.to_string()),
            password: credentials.map(|(_, p)| p.to_string()),
        }
    }

    /// The `socks5://` or `http://` URL string of [`UpstreamProxy::url`].
    pub fn url_string(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Http => "http",
        };
        match &self.credentials {
            Some((u, p)) => format!("{scheme}://{u}:{p}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the proxy logged a connection it made to `to`: each of them logs the destination
    /// of every tunnel it opens, in its own format.
    pub fn logged_connection_to(&self, to: SocketAddr) -> bool {
        let log = self.log();
        let needle = match self.daemon.name.as_str() {
            // "pass(1): tcp/connect [: 127.0.0.1.40000 127.0.0.1.1080 -> 127.0.0.2.40000 127.0.0.1.8765"
            "danted" => format!("-> {PROXY_OUT_IP}."),
            // "client[4] 127.0.0.1: connected to 127.0.0.1:8765"
            "microsocks" => format!("connected to {to}"),
            // "Request (file descriptor 4): CONNECT 127.0.0.1:8765 HTTP/1.1"
            _ => format!("CONNECT {to} "),
        };
        match self.daemon.name.as_str() {
            "danted" => log.lines().any(|l| {
                l.contains(&needle) && l.ends_with(&format!(" {}.{}", to.ip(), to.port()))
            }),
            _ => log.contains(&needle),
        }
    }

    /// Stops the proxy at once (SIGKILL): every tunnel through it breaks.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
