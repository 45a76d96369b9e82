//! `--upstream-proxy` URLs: `socks5://[user[:pass]@]host[:port]` or
//! `http(s)://[user[:pass]@]host[:port]`.

use crate::{ProxyKind, ProxyUrl, ProxyUrlError};

/// Parse an upstream proxy URL.
///
/// - `socks5` (and `socks5h`, since we always let the proxy resolve names) → SOCKS5, default
///   port 1080; `http` and `https` → HTTP CONNECT, default port 8080. `https` means the same
///   as `http` here, as in the reference: the proxy is reached in plain TCP.
/// - User and password are percent-decoded, so passwords may contain `@`, `:` or `/`.
/// - IPv6 hosts go in brackets (`[::1]:1080`); the host is stored without them, ready for a
///   `(host, port)` resolver.
/// - A path other than `/`, a query or a fragment is refused rather than ignored: it is most
///   likely a mistyped password or a URL meant for something else.
pub fn parse_proxy_url(input: &str) -> Result<ProxyUrl, ProxyUrlError> {
    let s = input.trim();
    let bad = |why: &str| ProxyUrlError::Invalid {
        url: redact(s),
        reason: why.to_string(),
    };
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| bad("expected socks5://host[:port] or http://host[:port]"))?;
    let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
        "http" | "https" => (ProxyKind::Http, 8080),
        other => {
            return Err(ProxyUrlError::Scheme {
                scheme: other.to_string(),
            })
        }
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(tail.is_empty() || tail == "/") {
        return Err(bad("a proxy URL has no path, query or fragment"));
    }
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            let u = percent_decode(u).map_err(|e| bad(&e))?;
            let p = p.map(percent_decode).transpose().map_err(|e| bad(&e))?;
            if u.is_empty() && p.as_deref().unwrap_or("").is_empty() {
                (None, None)
            } else {
                (Some(u), p)
            }
        }
    };
    let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad(&format!("invalid port {p:?}"))),
            Ok(p) => p,
        },
    };
    Ok(ProxyUrl {
        kind,
        host,
        port,
        username,
        password,
    })
}

/// The URL for logs and banners: everything but the password.
pub fn display(p: &ProxyUrl) -> String {
    let scheme = match p.kind {
        ProxyKind::Socks5 => "socks5",
        ProxyKind::Http => "http",
    };
    let user = match (&p.username, &p.password) {
        (Some(u), Some(_)) => format!("{u}:***@"),
        (Some(u), None) => format!("{u}@"),
        _ => String::new(),
    };
    let host = if p.host.contains(':') {
        format!("[{}]", p.host)
    } else {
        p.host.clone()
    };
    format!("{scheme}://{user}{host}:{}", p.port)
}

/// The input with any password replaced, so an error message does not print a secret.
fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((u, _)) => format!("{scheme}://{u}:***{}", &rest[at..]),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

fn split_host_port(hp: &str) -> Result<(String, Option<&str>), String> {
    if hp.is_empty() {
        return Err("no host".into());
    }
    let (host, port) = if let Some(inner) = hp.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or("unclosed '[' in IPv6 address")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or("unexpected text after ']'")?),
        };
        (h.to_string(), port)
    } else {
        match hp.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err(
                        "IPv6 addresses must be written in brackets, e.g. [::1]:1080".into(),
                    );
                }
                (h.to_string(), Some(p))
            }
            None => (hp.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    // "host:" means the default port, as Go's url.URL.Port() treats it.
    Ok((host, port.filter(|p| !p.is_empty())))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or("truncated percent-escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "invalid percent-escape")?;
            let v = u8::from_str_radix(hex, 16)
                .map_err(|_| format!("invalid percent-escape %{hex}"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| "credentials are not valid UTF-8 after percent-decoding".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ProxyUrl {
        parse_proxy_url(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn schemes_and_default_ports() {
        let u = p("socks5://127.0.0.1");
        assert_eq!(
            (u.kind, u.host.as_str(), u.port),
            (ProxyKind::Socks5, "127.0.0.1", 1080)
        );
        assert_eq!((u.username, u.password), (None, None));
        let u = p("http://proxy.example");
        assert_eq!((u.kind, u.port), (ProxyKind::Http, 8080));
        let u = p("HTTPS://proxy.example:3128/");
        assert_eq!((u.kind, u.port), (ProxyKind::Http, 3128));
        assert_eq!(p("socks5h://h:9").kind, ProxyKind::Socks5);
        assert_eq!(p("socks5://h:").port, 1080);
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let u = p("socks5://user:pass@127.0.0.1:1080");
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("user"), Some("pass"))
        );
        let u = p("http://a%40b:p%3Aw%2Fd%25@h:1");
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("a@b"), Some("p:w/d%"))
        );
        let u = p("socks5://onlyuser@h");
        assert_eq!(
            (u.username.as_deref(), u.password),
            (Some("onlyuser"), None)
        );
        // The last '@' separates the host, so a raw '@' in the password still works.
        let u = p("socks5://u:p@ss@h:2");
        assert_eq!(
            (u.password.as_deref(), u.host.as_str()),
            (Some("p@ss"), "h")
        );
        let u = p("socks5://@h");
        assert_eq!(u.username, None);
    }

    #[test]
    fn ipv6_hosts() {
        let u = p("socks5://[::1]:1081");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1081));
        let u = p("http://u:p@[2001:db8::2]");
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::2", 8080));
        assert_eq!(display(&u), "http://u:***@[2001:db8::2]:8080");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for s in [
            "127.0.0.1:1080",
            "ftp://h:21",
            "socks4://h",
            "socks5://",
            "socks5://:1080",
            "socks5://h:0",
            "socks5://h:70000",
            "socks5://h:x",
            "socks5://::1:1080",
            "socks5://[::1",
            "socks5://[nothost]:1",
            "socks5://[::1]x",
            "socks5://h/path",
            "socks5://h?x=1",
            "socks5://u:%zz@h",
            "socks5://u:%4@h",
            "socks5://u:%ff@h",
        ] {
            assert!(parse_proxy_url(s).is_err(), "{s:?} accepted");
        }
        let e = parse_proxy_url("ftp://h").unwrap_err().to_string();
        assert!(
            e.contains("unsupported upstream proxy scheme \"ftp\""),
            "{e}"
        );
    }

    #[test]
    fn errors_do_not_echo_passwords() {
        let e = parse_proxy_url("socks5://user:hunter2@h:99999")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("user:***@h:99999"), "{e}");
    }

    #[test]
    fn display_hides_the_password() {
        assert_eq!(display(&p("socks5://u:secret@h")), "socks5://u:***@h:1080");
        assert_eq!(display(&p("socks5://u@h:2")), "socks5://u@h:2");
        assert_eq!(display(&p("http://h")), "http://h:8080");
    }
}
