//! A WebSocket link's two tasks: the writer sends what `dispatch` could not write on the spot
//! and reports it written (the machine's backpressure counts on that report); the reader hands each binary
//! message to the machine and stops while the machine has the link paused. Both stop when the
//! link is done for (`closed`), so a peer that stops answering cannot pin the socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use linksocks_core::session::{LinkId, Machine};
use tracing::{debug, info};

use crate::driver::{Driver, Gate, LinkCmd, Role, Signal};
use crate::ws::{FrameReader, FrameWriter, Incoming, Outgoing};

/// How long a closing link waits to get its Close frame out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Bytes of frames gathered into one batch of writes before the machine hears of them.
const BATCH_BYTES: usize = 1 << 20;

/// Run `fut` unless `closed` fires first.
async fn unless_closed<T>(closed: &Signal, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        closed.wait().await;
        None
    })
    .await
}

pub async fn write_loop<P, W>(
    d: &Arc<Driver<P>>,
    link: LinkId,
    mut writer: FrameWriter<W>,
    rx: async_channel::Receiver<LinkCmd>,
    queued: Arc<AtomicUsize>,
    closed: Arc<Signal>,
) where
    P: Role,
    W: futures_io::AsyncWrite + Unpin,
{
    loop {
        let Some(Ok(first)) = unless_closed(&closed, rx.recv()).await else {
            break;
        };
        // Everything already queued goes out in one batch of vectored writes: fewer syscalls
        // under load, no added delay when idle.
        let mut sent = 0usize;
        let mut taken = 0usize;
        let mut cmd = Some(first);
        let mut close = false;
        while let Some(c) = cmd.take() {
            taken += 1;
            match c {
                LinkCmd::Frame(frame) => {
                    sent += frame.len();
                    writer.queue(Outgoing::Binary(frame));
                }
                LinkCmd::Rest { bytes, sent: n } => {
                    sent += n;
                    for b in bytes {
                        writer.queue_raw(b);
                    }
                }
                LinkCmd::Ping => writer.queue(Outgoing::Ping),
                LinkCmd::Pong(data) => writer.queue(Outgoing::Pong(data)),
                LinkCmd::Close => {
                    close = true;
                    break;
                }
            }
            if sent >= BATCH_BYTES {
                break;
            }
            cmd = rx.try_recv().ok();
        }
        if !writer.is_empty() {
            match unless_closed(&closed, writer.flush()).await {
                None => return,
                Some(Err(e)) => {
                    debug!(%link, "link write failed: {e}");
                    d.link_lost(link, &e.to_string());
                    break;
                }
                Some(Ok(())) => {}
            }
        }
        // Counted down under the lock, so that `dispatch` cannot write on the spot between
        // these writes and their report.
        d.with(|m, now| {
            queued.fetch_sub(taken, Ordering::SeqCst);
            if sent > 0 {
                m.handle_link_sent(now, link, sent);
            }
        });
        if close {
            // A peer that does not read gets a bounded chance at the Close frame.
            let grace = d.rt.sleep_until(StdInstant::now() + CLOSE_GRACE);
            writer.queue(Outgoing::Close);
            let _ = futures_lite::future::or(
                async {
                    let _ = writer.flush().await;
                    let _ = writer.close().await;
                },
                grace,
            )
            .await;
            d.link_lost(link, "closed");
            break;
        }
    }
}

pub async fn read_loop<P, Rd>(
    d: &Arc<Driver<P>>,
    link: LinkId,
    mut reader: FrameReader<Rd>,
    gate: Arc<Gate>,
    closed: Arc<Signal>,
) where
    P: Role,
    Rd: futures_io::AsyncRead + Unpin,
{
    loop {
        gate.wait().await;
        let Some(next) = unless_closed(&closed, reader.next()).await else {
            return;
        };
        match next {
            Ok(Incoming::Binary(b)) => d.with(|m, now| m.handle_link_message(now, link, b)),
            Ok(Incoming::Ping(data)) => d.answer_ping(link, data),
            Ok(Incoming::Pong) => d.with(|m, now| m.handle_link_pong(now, link)),
            Ok(Incoming::Text) => {
                // Every LinkSocks message is binary: a text message means a peer that does not
                // speak the protocol. The reference closes the connection too.
                info!(%link, "text message on the link (the protocol is binary); closing it");
                d.link_lost(link, "text message");
                return;
            }
            Ok(Incoming::Close) => {
                d.link_lost(link, "closed by peer");
                return;
            }
            Err(e) => {
                // Said once per link, at info, when the peer broke the WebSocket rules (a
                // message over the size limit, a bad frame); a connection that merely ended
                // is routine.
                if e.is_peer_fault() {
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
