//! Sockets, timers and name resolution, written once over async-io: smol and async-std both
//! run async-io's reactor, so what differs between them is only how tasks are spawned (the
//! [`Runtime`](crate::Runtime) trait).

use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};

use crate::fd;

/// A TCP connection. Clones share the socket (one reads while another writes).
#[derive(Clone, Debug)]
pub(crate) struct TcpStream(Arc<Async<std::net::TcpStream>>);

impl TcpStream {
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream(Arc::new(
            Async::<std::net::TcpStream>::connect(addr).await?,
        )))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        self.0.get_ref().set_nodelay(true)
    }

    pub fn shutdown(&self, how: Shutdown) {
        let _ = self.0.get_ref().shutdown(how);
    }

    /// Reset instead of FIN on close (SO_LINGER 0), so the peer sees an error.
    pub fn set_linger_zero(&self) {
        fd::set_linger_zero(self.0.get_ref())
    }

    /// Write what the socket takes now, without waiting (`WouldBlock` when it takes nothing).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        fd::try_send(self.0.get_ref(), buf)
    }

    /// The same for several buffers in one call.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        fd::try_send_vectored(self.0.get_ref(), bufs)
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN, as smol's stream sent (async-io's flushes only): the WebSocket close of a
        // link ends its TCP connection at once, not when both halves are dropped.
        Poll::Ready(self.0.get_ref().shutdown(Shutdown::Write))
    }
}

/// A listening TCP socket.
#[derive(Debug)]
pub(crate) struct TcpListener(Async<std::net::TcpListener>);

impl TcpListener {
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Ok(TcpListener(Async::<std::net::TcpListener>::bind(addr)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, peer) = self.0.accept().await?;
        Ok((TcpStream(Arc::new(s)), peer))
    }
}

/// A UDP socket. Clones share it.
#[derive(Clone, Debug)]
pub(crate) struct UdpSocket(Arc<Async<std::net::UdpSocket>>);

impl UdpSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket(Arc::new(Async::<std::net::UdpSocket>::bind(
            addr,
        )?)))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }

    /// Send a datagram now if the socket can take it (`WouldBlock` otherwise).
    pub fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        fd::try_send_to(self.0.get_ref(), buf, to)
    }

    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
}

/// The addresses of `host:port`, looked up on a thread of the blocking pool (the system's
/// resolver blocks).
pub(crate) async fn resolve(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    blocking::unblock(move || (host.as_str(), port).to_socket_addrs().map(|a| a.collect())).await
}

/// Resolves at `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    async_io::Timer::at(deadline).await;
}
