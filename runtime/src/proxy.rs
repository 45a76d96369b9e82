//! Reaching a host through an upstream proxy (SOCKS5 or HTTP CONNECT), and picking the proxy
//! from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use linksocks_core::addr::TargetAddr;
use linksocks_core::socks::{ClientProgress, Credentials, HttpConnectClient, Socks5Client};

use crate::net::TcpStream;
use crate::{ProxyKind, ProxyUrl, Rt};

/// Open a tunnel to `target` through `proxy`. Returns the stream and any bytes of the tunnel
/// that arrived with the proxy's answer.
pub async fn connect_via(
    rt: &Rt,
    proxy: &ProxyUrl,
    target: &TargetAddr,
) -> Result<(TcpStream, Bytes), String> {
    let at = TargetAddr::from_host_port(&proxy.host, proxy.port);
    let mut s = crate::connect::connect_target(rt, &at).await.map_err(|e| {
        format!(
            "upstream proxy {}:{} unreachable: {e}",
            proxy.host, proxy.port
        )
    })?;
    let creds = proxy
        .username
        .as_ref()
        .map(|u| Credentials::new(u.clone(), proxy.password.clone().unwrap_or_default()));
    enum Hs {
        Socks(Box<Socks5Client>),
        Http(Box<HttpConnectClient>),
    }
    // try_new: a target the proxy protocol cannot carry is an error now, not a silent stall.
    let mut hs = match proxy.kind {
        ProxyKind::Socks5 => Hs::Socks(Box::new(
            Socks5Client::try_new(target.clone(), creds).map_err(|e| e.to_string())?,
        )),
        ProxyKind::Http => Hs::Http(Box::new(
            HttpConnectClient::try_new(target.clone(), creds).map_err(|e| e.to_string())?,
        )),
    };
    let mut buf = vec![0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        loop {
            let out = match &mut hs {
                Hs::Socks(c) => c.poll_transmit(),
                Hs::Http(c) => c.poll_transmit(),
            };
            let Some(out) = out else { break };
            s.write_all(&out)
                .await
                .map_err(|e| format!("upstream proxy: {e}"))?;
        }
        s.flush()
            .await
            .map_err(|e| format!("upstream proxy: {e}"))?;
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("upstream proxy: {e}"))?;
        if n == 0 {
            return Err("upstream proxy closed the connection during its handshake".into());
        }
        pending.extend_from_slice(&buf[..n]);
        let progress = match &mut hs {
            Hs::Socks(c) => c.feed(&pending),
            Hs::Http(c) => c.feed(&pending),
        }
        .map_err(|e| format!("upstream proxy refused: {e}"))?;
        match progress {
            ClientProgress::NeedMore { consumed } => {
                pending.drain(..consumed.min(pending.len()));
            }
            ClientProgress::Done { consumed } => {
                let rest = Bytes::copy_from_slice(&pending[consumed.min(pending.len())..]);
                return Ok((s, rest));
            }
        }
    }
}

/// The proxy variables of an environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`,
/// upper- or lower-case), as a program captured them: the library reads no environment itself.
///
/// ```
/// # use linksocks_runtime::ProxyEnv;
/// let env = ProxyEnv::from_vars(std::env::vars());
/// # let _ = env;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    vars: Vec<(String, String)>,
}

const PROXY_VARS: [&str; 4] = ["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"];

impl ProxyEnv {
    /// Keep the proxy variables among `vars` (the others are dropped).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = vars
            .into_iter()
            .filter(|(k, _)| PROXY_VARS.iter().any(|p| p.eq_ignore_ascii_case(k)))
            .collect();
        ProxyEnv { vars }
    }

    /// The value of `name` (upper-case), or of its lower-case form.
    fn get(&self, name: &str) -> Option<String> {
        let exact = |n: &str| {
            self.vars
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        exact(name).or_else(|| exact(&name.to_ascii_lowercase()))
    }

    /// The proxy this environment names for a connection to `host` (`tls`: wss), unless
    /// `NO_PROXY` excludes it. Invalid values are ignored with a warning.
    pub fn proxy_for(&self, host: &str, tls: bool) -> Option<ProxyUrl> {
        proxy_for(host, tls, |k| self.get(k))
    }
}

/// [`ProxyEnv::proxy_for`] with the variables read through `var` (upper-case names; the caller also
/// looks at the lower-case ones).
///
/// Like the reference (Go's `ProxyFromEnvironment`), `localhost` and loopback addresses are
/// always reached directly: a proxy's loopback is not ours.
fn proxy_for(host: &str, tls: bool, var: impl Fn(&str) -> Option<String>) -> Option<ProxyUrl> {
    let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        return None;
    }
    if let Some(no) = var("NO_PROXY") {
        for pat in no.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            let pat = pat.trim_start_matches('.');
            if pat == "*" || (!pat.is_empty() && (h == pat || h.ends_with(&format!(".{pat}")))) {
                return None;
            }
        }
    }
    let raw = if tls {
        var("HTTPS_PROXY")
    } else {
        var("HTTP_PROXY")
    }
    .or_else(|| var("ALL_PROXY"))?;
    match crate::proxy_url::parse_proxy_url(&raw) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("ignoring proxy from the environment: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::proxy_for;

    fn pick(host: &str, tls: bool, vars: &[(&str, &str)]) -> Option<String> {
        proxy_for(host, tls, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .map(|p| format!("{}:{}", p.host, p.port))
    }

    #[test]
    fn scheme_picks_the_variable() {
        let vars = [("HTTP_PROXY", "http://h:1"), ("HTTPS_PROXY", "http://s:2")];
        assert_eq!(pick("example.org", false, &vars).as_deref(), Some("h:1"));
        assert_eq!(pick("example.org", true, &vars).as_deref(), Some("s:2"));
        let all = [("ALL_PROXY", "socks5://a:3"), ("HTTP_PROXY", " ")];
        assert_eq!(pick("example.org", false, &all).as_deref(), Some("a:3"));
        assert_eq!(pick("example.org", true, &all).as_deref(), Some("a:3"));
        assert_eq!(pick("example.org", false, &[]), None);
        assert_eq!(
            pick("example.org", false, &[("HTTP_PROXY", "ftp://x")]),
            None
        );
    }

    #[test]
    fn no_proxy_and_loopback_go_direct() {
        let vars = [
            ("ALL_PROXY", "socks5://a:3"),
            ("NO_PROXY", "internal.test, .corp"),
        ];
        assert_eq!(pick("internal.test", false, &vars), None);
        assert_eq!(pick("x.internal.test", false, &vars), None);
        assert_eq!(pick("host.corp", false, &vars), None);
        assert_eq!(
            pick("notinternal.test", false, &vars).as_deref(),
            Some("a:3")
        );
        assert_eq!(
            pick(
                "h",
                false,
                &[("ALL_PROXY", "socks5://a:3"), ("NO_PROXY", "*")]
            ),
            None
        );
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert_eq!(pick(host, false, &vars), None, "{host}");
        }
        // Only literal loopback addresses are recognised, as in Go: a name is the proxy's to
        // resolve.
        assert_eq!(pick("127.1", false, &vars).as_deref(), Some("a:3"));
    }
}
