//! Running a client (forward client, provider or connector): WebSocket links to the server,
//! and the client machine behind them.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use linksocks_core::addr::TargetAddr;
use linksocks_core::session::{ClientMachine, LinkId, Machine};
use linksocks_core::time::Instant;
use tracing::warn;

use crate::driver::{Driver, LinkSettings, Role};
use crate::server::{os_ids, ws_config};
use crate::tls::MaybeTls;
use crate::ws::{HeadOnly, Side};
use crate::{ClientOptions, RunError, RunEvent, Runtime, Stop};

pub struct ClientRole;

impl<R: Runtime> Role<R> for ClientRole {
    type M = ClientMachine;

    fn open_link(d: &Arc<Driver<R, Self>>, link: LinkId, url: String) {
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
                    d2.with(|m, now| m.handle_link_closed(now, link, &e));
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

async fn open<R: Runtime>(
    d: &Arc<Driver<R, ClientRole>>,
    url: &str,
) -> Result<(MaybeTls<R::Tcp>, Bytes), String> {
    let (tls, host, port) = url_parts(url)?;
    let target = TargetAddr::from_host_port(&host, port);
    let proxy = d.link.proxy.clone().or_else(|| {
        if d.link.env_proxy {
            crate::proxy::env_proxy(&host, tls)
        } else {
            None
        }
    });
    let tcp = match &proxy {
        Some(p) => {
            let (s, early) = crate::proxy::connect_via(&d.rt, p, &target).await?;
            if !early.is_empty() {
                return Err("the upstream proxy sent data before the WebSocket handshake".into());
            }
            s
        }
        None => crate::connect::connect_target(&d.rt, &target).await?,
    };
    let _ = R::tcp_set_nodelay(&tcp);
    let stream = if tls {
        let connector = d.link.tls.clone().ok_or("TLS is not configured")?;
        let name = crate::tls::server_name(&host)?;
        let s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))?;
        MaybeTls::Client(Box::new(s))
    } else {
        MaybeTls::Plain(tcp)
    };
    // async-tungstenite does the handshake; the frames that follow are ours (see `ws`).
    let (ws, _resp) = async_tungstenite::client_async_with_config(
        url,
        HeadOnly::new(stream),
        Some(ws_config(d.max_message_size)),
    )
    .await
    .map_err(|e| format!("WebSocket handshake with {host}:{port} failed: {e}"))?;
    Ok(ws.into_inner().into_parts())
}

/// Run a client until `stop` or a fatal error (the server refused our token, the SOCKS port
/// is taken, the link is lost with reconnection off).
pub async fn run_client<R: Runtime>(
    rt: R,
    opts: ClientOptions,
    events: Option<async_channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    let origin = StdInstant::now();
    let machine = ClientMachine::new(opts.machine.clone(), os_ids(), Instant::ZERO)
        .map_err(RunError::Config)?;
    let link = LinkSettings {
        tls: Some(crate::tls::connector(&opts.tls).map_err(RunError::Config)?),
        proxy: opts.upstream_proxy.clone(),
        env_proxy: !opts.no_env_proxy,
    };
    let driver = Driver::<R, ClientRole>::new(
        rt.clone(),
        origin,
        machine,
        events,
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
    loop {
        let l = driver.fatal_event.listen();
        if driver.lock().fatal.is_some() {
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
    let fatal = driver.lock().fatal.clone();
    driver.shutdown(Duration::from_secs(3)).await;
    match fatal {
        Some(reason) => Err(RunError::Fatal(reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::url_parts;

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
}
