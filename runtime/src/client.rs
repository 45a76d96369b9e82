//! Running a client (forward client, provider or connector): WebSocket links to the server,
//! and the client machine behind them.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use async_tungstenite::tungstenite::Error as WsError;
use bytes::Bytes;
use linksocks_core::addr::TargetAddr;
use linksocks_core::session::{ClientMachine, Fatal, LinkId, Machine};
use linksocks_core::time::Instant;
use tracing::{debug, warn};

use crate::driver::{Driver, LinkSettings, Role};
use crate::embed::task::Outcome;
use crate::net::TcpStream;
use crate::server::{os_ids, ws_config};
use crate::tls::MaybeTls;
use crate::ws::{HeadOnly, Side};
use crate::{ClientOptions, ConfigError, Error, Event, Rt, Stop, TlsError};

pub struct ClientRole;

impl Role for ClientRole {
    type M = ClientMachine;

    fn open_link(d: &Arc<Driver<Self>>, link: LinkId, url: String) {
        let d2 = d.clone();
        d.rt.spawn(async move {
            match open(&d2, &url).await {
                Ok((stream, leftover)) => {
                    let mut st = d2.lock();
                    d2.attach_link(&mut st, link, stream, Side::Client, leftover);
                    let now = d2.now();
                    st.machine.handle_link_opened(now, link);
                    d2.dispatch(&mut st);
                }
                Err(e) => {
                    // Said at warn: a client that retries in silence (bad certificate, proxy
                    // refusing) leaves its user guessing. Backoff bounds the repetition.
                    warn!(%link, "cannot reach the server: {e}");
                    let text = e.to_string();
                    d2.lock().last_link_error = Some(e);
                    d2.with(|m, now| m.handle_link_closed(now, link, &text));
                }
            }
        });
    }

    fn close(machine: &mut ClientMachine, now: Instant) {
        machine.close(now);
    }
}

/// Split `ws://host:port/path?query` into what a dial needs.
fn url_parts(url: &str) -> Result<(bool, String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("invalid URL {url}"))?;
    let tls = scheme == "wss";
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("invalid URL {url}"))?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse::<u16>())
            .transpose()
            .map_err(|_| format!("invalid port in {url}"))?;
        (h.to_string(), port.unwrap_or(default_port))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("invalid port in {url}"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    Ok((tls, host, port))
}

/// HTTP redirects followed while dialing, as the reference does (spec section 1).
const MAX_REDIRECTS: usize = 5;

/// What one handshake attempt got.
enum Dialed<S> {
    /// The WebSocket is open: the stream and the bytes read past the response head.
    Open(S, Bytes),
    /// The server answered with a redirect to this `Location`.
    Redirect(String),
}

/// Open a link to `url`, following up to [`MAX_REDIRECTS`] redirects.
async fn open(
    d: &Arc<Driver<ClientRole>>,
    url: &str,
) -> Result<(MaybeTls<TcpStream>, Bytes), Error> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        match dial(d, &url).await? {
            Dialed::Open(stream, leftover) => return Ok((stream, leftover)),
            Dialed::Redirect(location) => {
                let next = resolve_redirect(&url, &location).map_err(protocol)?;
                // Without the query: it carries the token hash.
                debug!(to = without_query(&next), "following a redirect");
                url = next;
            }
        }
    }
    Err(protocol(format!(
        "too many redirects (more than {MAX_REDIRECTS}); the last pointed to {}",
        without_query(&url)
    )))
}

fn protocol(reason: String) -> Error {
    Error::Protocol { reason }
}

/// One connection and handshake to `url`, without following redirects.
async fn dial(
    d: &Arc<Driver<ClientRole>>,
    url: &str,
) -> Result<Dialed<MaybeTls<TcpStream>>, Error> {
    let (tls, host, port) = url_parts(url).map_err(protocol)?;
    let target = TargetAddr::from_host_port(&host, port);
    let proxy = d.link.proxy.clone().or_else(|| {
        d.link
            .env_proxy
            .as_ref()
            .and_then(|env| env.proxy_for(&host, tls))
    });
    let tcp = match &proxy {
        Some(p) => {
            let upstream = |reason| Error::UpstreamProxy { reason };
            let (s, early) = crate::proxy::connect_via(&d.rt, p, &target)
                .await
                .map_err(upstream)?;
            if !early.is_empty() {
                return Err(upstream(
                    "the upstream proxy sent data before the WebSocket handshake".into(),
                ));
            }
            s
        }
        None => crate::connect::connect_target(&d.rt, &target)
            .await
            .map_err(|reason| Error::Unreachable { reason })?,
    };
    let _ = tcp.set_nodelay();
    let stream = if tls {
        let connector = d.link.tls.clone().ok_or(TlsError::Handshake {
            peer: format!("{host}:{port}"),
            reason: "TLS is not configured".into(),
        })?;
        let name = crate::tls::server_name(&host)?;
        let s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| TlsError::Handshake {
                peer: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
        let (_, conn) = s.get_ref();
        tracing::debug!(
            "TLS with {host}:{port}: {:?}, {:?}",
            conn.protocol_version(),
            conn.negotiated_cipher_suite().map(|c| c.suite())
        );
        MaybeTls::Client(Box::new(s))
    } else {
        MaybeTls::Plain(tcp)
    };
    // async-tungstenite does the handshake; the frames that follow are ours (see `ws`).
    match async_tungstenite::client_async_with_config(
        url,
        HeadOnly::new(stream),
        Some(ws_config(d.max_message_size)),
    )
    .await
    {
        Ok((ws, _resp)) => {
            let (stream, leftover) = ws.into_inner().into_parts();
            Ok(Dialed::Open(stream, leftover))
        }
        Err(WsError::Http(resp))
            if matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) =>
        {
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .ok_or_else(|| {
                    protocol(format!(
                        "{host}:{port} answered {status} without a Location"
                    ))
                })?
                .to_str()
                .map_err(|_| {
                    protocol(format!(
                        "{host}:{port} answered {status} with a Location that is not text"
                    ))
                })?;
            Ok(Dialed::Redirect(location.to_string()))
        }
        Err(e) => Err(protocol(format!(
            "WebSocket handshake with {host}:{port} failed: {e}"
        ))),
    }
}

/// `url` without its query string (which carries the token hash), for messages.
fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The URL a redirect from `current` to `location` leads to. `location` is an absolute URL
/// (ws, wss, http or https; http becomes ws and https wss) or an absolute path on the host
/// of `current`.
fn resolve_redirect(current: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or(location);
    let (scheme, rest) = current
        .split_once("://")
        .ok_or_else(|| format!("invalid URL {}", without_query(current)))?;
    // A scheme is letters, digits, `+-.` before `://` (not `/path?next=http://...`).
    let absolute = location.split_once("://").filter(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let (scheme, authority_path) = if let Some((s, r)) = absolute {
        let s = match s.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            _ => return Err(format!("redirect to an unsupported URL {location:?}")),
        };
        (s, r)
    } else if let Some(r) = location.strip_prefix("//") {
        // Network-path reference: our scheme, another host.
        (scheme, r)
    } else if location.starts_with('/') {
        // Absolute path: our scheme and host.
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        return Ok(keep_query(
            format!("{scheme}://{authority}{location}"),
            current,
        ));
    } else {
        return Err(format!("redirect to an unsupported Location {location:?}"));
    };
    let (authority, path) = authority_path.split_at(
        authority_path
            .find(['/', '?'])
            .unwrap_or(authority_path.len()),
    );
    if authority.is_empty() {
        return Err(format!("redirect to a URL without a host {location:?}"));
    }
    // An empty path is the root.
    let slash = if path.starts_with('/') { "" } else { "/" };
    Ok(keep_query(
        format!("{scheme}://{authority}{slash}{path}"),
        current,
    ))
}

/// `next`, with the query of `current` when it has none of its own.
fn keep_query(mut next: String, current: &str) -> String {
    // The server needs our `token=...` (and the rest of our query): a Location without a
    // query of its own keeps the one we dialled with.
    if !next.contains('?') {
        if let Some((_, query)) = current.split_once('?') {
            next.push('?');
            next.push_str(query);
        }
    }
    next
}

/// Start a client: check its settings, open its links, and spawn the task that runs it until
/// `stop` or a fatal error (the server refused our token, the SOCKS port is taken, the link is
/// lost with reconnection off); `outcome` is set when it is done.
pub(crate) fn start_client(
    rt: Rt,
    opts: ClientOptions,
    events: async_channel::Sender<Event>,
    stop: Stop,
    outcome: Arc<Outcome>,
) -> Result<Arc<Driver<ClientRole>>, Error> {
    let origin = StdInstant::now();
    let machine = ClientMachine::new(opts.machine.clone(), os_ids(), Instant::ZERO)
        .map_err(ConfigError::Url)?;
    let link = LinkSettings {
        tls: Some(crate::tls::connector(&opts.tls)?),
        proxy: opts.upstream_proxy.clone(),
        env_proxy: opts.env_proxy.clone(),
    };
    let driver = Driver::<ClientRole>::new(
        rt.clone(),
        origin,
        machine,
        Some(events),
        opts.max_message_size,
        None,
        link,
    );
    driver.with(|m, now| m.start(now));
    {
        let d = driver.clone();
        let stop = stop.clone();
        rt.spawn(async move { d.run_timers(stop).await });
    }
    let d = driver.clone();
    rt.spawn(async move {
        loop {
            let l = d.fatal_event.listen();
            if d.lock().fatal.is_some() {
                break;
            }
            let stopped = futures_lite::future::or(
                async {
                    stop.wait().await;
                    true
                },
                async {
                    l.await;
                    false
                },
            )
            .await;
            if stopped {
                break;
            }
        }
        let error = {
            let mut st = d.lock();
            st.fatal.take().map(|f| fatal_error(f, &mut st))
        };
        d.shutdown(Duration::from_secs(3)).await;
        outcome.set(error.map_or(Ok(()), Err));
    });
    Ok(driver)
}

/// The error a client stops with, for the machine's reason, with the last link failure as its
/// cause when the client never got through (it says TLS, proxy or connect) and the system's
/// error when the SOCKS port could not be bound.
fn fatal_error<M>(f: Fatal, st: &mut crate::driver::State<M>) -> Error {
    match f {
        Fatal::AuthRefused { reason } => Error::AuthRefused { reason },
        f @ Fatal::LinkLost { was_connected, .. } => Error::Disconnected {
            was_connected,
            reason: f.to_string(),
            cause: st
                .last_link_error
                .take()
                .filter(|_| !was_connected)
                .map(Box::new),
        },
        Fatal::Listen { addr, error } => Error::bind(addr, error.to_io_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::{resolve_redirect, url_parts};

    #[test]
    fn parses_urls() {
        assert_eq!(
            url_parts("ws://h:1/socket?x").unwrap(),
            (false, "h".into(), 1)
        );
        assert_eq!(
            url_parts("wss://h/socket").unwrap(),
            (true, "h".into(), 443)
        );
        assert_eq!(
            url_parts("ws://[::1]:8/x").unwrap(),
            (false, "::1".into(), 8)
        );
    }

    const CUR: &str = "ws://h:1/socket?token=abc&reverse=false";

    #[test]
    fn redirects_to_absolute_urls() {
        // http and https become ws and wss; our query is kept when the Location has none.
        assert_eq!(
            resolve_redirect(CUR, "http://o:2/socket").unwrap(),
            "ws://o:2/socket?token=abc&reverse=false"
        );
        assert_eq!(
            resolve_redirect(CUR, "HTTPS://o/x").unwrap(),
            "wss://o/x?token=abc&reverse=false"
        );
        assert_eq!(
            resolve_redirect(CUR, "ws://[::1]:3/s").unwrap(),
            "ws://[::1]:3/s?token=abc&reverse=false"
        );
        assert_eq!(
            resolve_redirect(CUR, "wss://o:4").unwrap(),
            "wss://o:4/?token=abc&reverse=false"
        );
        // A Location with a query of its own is taken as it is.
        assert_eq!(
            resolve_redirect(CUR, "wss://o/s?token=other").unwrap(),
            "wss://o/s?token=other"
        );
        assert_eq!(resolve_redirect(CUR, "ws://o?x=1").unwrap(), "ws://o/?x=1");
        // Nothing to keep when we dialled without a query.
        assert_eq!(
            resolve_redirect("wss://h/socket", "https://o/s").unwrap(),
            "wss://o/s"
        );
        // Fragments are not sent.
        assert_eq!(
            resolve_redirect(CUR, "ws://o/s#f").unwrap(),
            "ws://o/s?token=abc&reverse=false"
        );
    }

    #[test]
    fn redirects_to_paths() {
        assert_eq!(
            resolve_redirect(CUR, "/socket?x").unwrap(),
            "ws://h:1/socket?x"
        );
        // A URL in the query does not make the Location absolute.
        assert_eq!(
            resolve_redirect(CUR, "/s?next=http://o/").unwrap(),
            "ws://h:1/s?next=http://o/"
        );
        assert_eq!(
            resolve_redirect(CUR, " /other ").unwrap(),
            "ws://h:1/other?token=abc&reverse=false"
        );
        assert_eq!(
            resolve_redirect("wss://[::1]:5/socket?t=1", "/s").unwrap(),
            "wss://[::1]:5/s?t=1"
        );
        assert_eq!(
            resolve_redirect("wss://h/socket?t=1", "//o:6/s").unwrap(),
            "wss://o:6/s?t=1"
        );
    }

    #[test]
    fn refuses_other_locations() {
        for bad in ["ftp://o/x", "socket", "", "ws:///x", "//", "///x"] {
            assert!(resolve_redirect(CUR, bad).is_err(), "{bad:?} was accepted");
        }
    }
}
