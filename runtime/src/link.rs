//! A WebSocket link's two tasks: the writer sends what the machine queued and reports it
//! written (the machine's backpressure counts on that report); the reader hands each binary
//! message to the machine and stops while the machine has the link paused. Both stop when the
//! link is done for (`closed`), so a peer that stops answering cannot pin the socket.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use async_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_lite::StreamExt;
use futures_util::SinkExt;
use linksocks_core::session::{LinkId, Machine};
use tracing::{debug, info};

use crate::driver::{Driver, Gate, LinkCmd, Role, Signal};
use crate::Runtime;

/// How long a closing link waits to get its Close frame out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Run `fut` unless `closed` fires first.
async fn unless_closed<T>(closed: &Signal, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        closed.wait().await;
        None
    })
    .await
}

pub async fn write_loop<R, P, S>(
    d: &Arc<Driver<R, P>>,
    link: LinkId,
    mut sender: WebSocketSender<S>,
    rx: async_channel::Receiver<LinkCmd>,
    closed: Arc<Signal>,
) where
    R: Runtime,
    P: Role<R>,
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let Some(Ok(first)) = unless_closed(&closed, rx.recv()).await else {
            break;
        };
        // Feed everything already queued, then flush once: fewer syscalls under load, no
        // added delay when idle.
        let mut sent = 0usize;
        let mut cmd = Some(first);
        let mut close = false;
        let mut failed = None;
        while let Some(c) = cmd.take() {
            let r = match c {
                LinkCmd::Frame(frame) => {
                    sent += frame.len();
                    unless_closed(&closed, sender.feed(Message::Binary(frame))).await
                }
                LinkCmd::Ping => {
                    unless_closed(&closed, sender.feed(Message::Ping(Default::default()))).await
                }
                LinkCmd::Close => {
                    close = true;
                    break;
                }
            };
            match r {
                None => return,
                Some(Err(e)) => {
                    failed = Some(e.to_string());
                    break;
                }
                Some(Ok(())) => {}
            }
            if sent >= 1 << 20 {
                break;
            }
            cmd = rx.try_recv().ok();
        }
        if failed.is_none() {
            match unless_closed(&closed, SinkExt::flush(&mut sender)).await {
                None => return,
                Some(Err(e)) => failed = Some(e.to_string()),
                Some(Ok(())) => {}
            }
        }
        if let Some(e) = failed {
            debug!(%link, "link write failed: {e}");
            d.link_lost(link, &e);
            break;
        }
        if sent > 0 {
            d.with(|m, now| m.handle_link_sent(now, link, sent));
        }
        if close {
            // A peer that does not read gets a bounded chance at the Close frame.
            let grace = d.rt.sleep_until(StdInstant::now() + CLOSE_GRACE);
            let _ = futures_lite::future::or(async { sender.close(None).await.ok() }, async {
                grace.await;
                None
            })
            .await;
            d.link_lost(link, "closed");
            break;
        }
    }
}

pub async fn read_loop<R, P, S>(
    d: &Arc<Driver<R, P>>,
    link: LinkId,
    mut receiver: WebSocketReceiver<S>,
    gate: Arc<Gate>,
    closed: Arc<Signal>,
) where
    R: Runtime,
    P: Role<R>,
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
{
    loop {
        gate.wait().await;
        let Some(next) = unless_closed(&closed, receiver.next()).await else {
            return;
        };
        match next {
            Some(Ok(Message::Binary(b))) => d.with(|m, now| m.handle_link_message(now, link, b)),
            // A ping from the peer (answered by tungstenite) proves it alive as a pong does.
            Some(Ok(Message::Pong(_))) | Some(Ok(Message::Ping(_))) => {
                d.with(|m, now| m.handle_link_pong(now, link))
            }
            Some(Ok(Message::Frame(_))) => {}
            Some(Ok(Message::Text(_))) => {
                // Every LinkSocks message is binary: a text message means a peer that does not
                // speak the protocol. The reference closes the connection too.
                info!(%link, "text message on the link (the protocol is binary); closing it");
                d.link_lost(link, "text message");
                return;
            }
            Some(Ok(Message::Close(_))) | None => {
                d.link_lost(link, "closed by peer");
                return;
            }
            Some(Err(e)) => {
                // Said once per link, at info, when the peer broke the WebSocket rules (a
                // message over the size limit, a bad frame); a connection that merely ended
                // is routine.
                let peer_fault = match &e {
                    WsError::Capacity(_) => true,
                    WsError::Protocol(p) => {
                        !matches!(p, ProtocolError::ResetWithoutClosingHandshake)
                    }
                    _ => false,
                };
                if peer_fault {
                    info!(%link, "WebSocket error from the peer: {e}; closing the link");
                } else {
                    debug!(%link, "link read ended: {e}");
                }
                d.link_lost(link, &e.to_string());
                return;
            }
        }
    }
}
