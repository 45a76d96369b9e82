//! What a running server or client tells the program: [`Event`]s on an [`Events`] stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Something that happened in a running server or client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The HTTP/WebSocket port is listening (server).
    WebSocketListening(SocketAddr),
    /// A SOCKS5 (and HTTP proxy) port is serving: the client's, or a reverse token's on the
    /// server.
    SocksListening(SocketAddr),
    /// A link authenticated: the client's with the server, or a client's on the server.
    LinkUp,
    /// An authenticated link ended. A client opens it again (unless reconnection is off); its
    /// channels wait for it within the transport grace.
    LinkDown {
        /// Why.
        reason: String,
    },
    /// The server refused our token. With `retry_auth` the client tries again; otherwise it
    /// stops with [`Error::AuthRefused`](crate::Error::AuthRefused).
    AuthRefused {
        /// The server's words.
        reason: String,
    },
    /// A connector token was registered for this provider (autonomy).
    ConnectorToken(String),
    /// The peer's count of partners: providers (seen by a connector or forward client) or
    /// connectors (seen by a provider).
    Partners(i64),
    /// This side dials a target for a channel (a forward server, a provider).
    Dialing(String),
}

/// How many events wait for the program at most: past that, the oldest are dropped, so a
/// program that never reads costs bounded memory.
pub const EVENT_BUFFER: usize = 1024;

/// The events of one server or client, from its start. Clones share one stream (each event
/// goes to one of them). Also a [`Stream`](futures_lite::Stream).
#[derive(Clone, Debug)]
pub struct Events(pub(crate) async_channel::Receiver<Event>);

impl Events {
    pub(crate) fn new() -> (async_channel::Sender<Event>, Events) {
        let (tx, rx) = async_channel::bounded(EVENT_BUFFER);
        (tx, Events(rx))
    }

    /// The next event; `None` once the server or client is gone and every event was read.
    pub async fn recv(&self) -> Option<Event> {
        self.0.recv().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.0.try_recv().ok()
    }

    /// [`Events::recv`] for a thread outside any executor (blocks it).
    pub fn recv_blocking(&self) -> Option<Event> {
        self.0.recv_blocking().ok()
    }
}

impl futures_lite::Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        // SAFETY: structural pinning of the only field: `Events` is not `Unpin` when the
        // receiver is not, has no `Drop`, and never moves the receiver out of a pinned self.
        let rx = unsafe { self.map_unchecked_mut(|e| &mut e.0) };
        rx.poll_next(cx)
    }
}
