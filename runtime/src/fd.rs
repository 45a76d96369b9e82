//! Socket options and non-blocking calls made on a socket's descriptor, for the runtimes'
//! socket types (both smol's and async-std's expose the descriptor, not always `AsFd`).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::SockRef;

fn with<T>(s: &impl AsRawFd, f: impl FnOnce(SockRef<'_>) -> T) -> T {
    // SAFETY: the descriptor belongs to `s`, which is borrowed for the whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(s.as_raw_fd()) };
    f(SockRef::from(&fd))
}

/// Reset instead of FIN on close (SO_LINGER 0).
pub fn set_linger_zero(s: &impl AsRawFd) {
    let _ = with(s, |r| r.set_linger(Some(Duration::ZERO)));
}

/// `send` on a non-blocking socket: what it takes now, or `WouldBlock`.
pub fn try_send(s: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    with(s, |r| r.send(buf))
}

/// `sendmsg` of several buffers on a non-blocking socket: what it takes now, or `WouldBlock`.
pub fn try_send_vectored(s: &impl AsRawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    with(s, |r| r.send_vectored(bufs))
}

/// `sendto` on a non-blocking socket.
pub fn try_send_to(s: &impl AsRawFd, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    with(s, |r| r.send_to(buf, &to.into()))
}
