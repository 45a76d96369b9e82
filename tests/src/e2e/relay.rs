//! A TCP relay to put between two programs (our client and our server) that acts on one
//! relayed connection at a time and sees what each carries: it counts each connection's bytes
//! (so a test can tell which link a channel rides on), cuts one, or freezes one (stops reading
//! it, so the sender's buffers fill as on a dead path). It can also admit only peers from one
//! address, which makes the direct path impossible when only an upstream proxy dials from
//! there. (`netfault::Relay` is the reliability tests' relay, acting on all links at once.)

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// One relayed connection.
pub struct RelayConn {
    /// Who connected to the relay.
    pub peer: SocketAddr,
    /// Bytes forwarded toward the relay's target ...
    up: AtomicU64,
    /// ... and back toward the peer.
    down: AtomicU64,
    inbound: TcpStream,
    outbound: TcpStream,
    frozen: Mutex<bool>,
    thaw: Condvar,
}

impl RelayConn {
    /// Closes both sides at once: each end sees its connection end.
    pub fn cut(&self) {
        self.set_frozen(false);
        let _ = self.inbound.shutdown(Shutdown::Both);
        let _ = self.outbound.shutdown(Shutdown::Both);
    }

    /// Stops forwarding both ways, reading nothing more, so that the senders' buffers fill;
    /// until [`RelayConn::cut`].
    pub fn freeze(&self) {
        self.set_frozen(true);
    }

    fn set_frozen(&self, on: bool) {
        *self.frozen.lock().unwrap() = on;
        self.thaw.notify_all();
    }

    fn wait_thawed(&self) {
        let mut f = self.frozen.lock().unwrap();
        while *f {
            f = self.thaw.wait(f).unwrap();
        }
    }

    /// Bytes forwarded from the peer to the target so far.
    pub fn up(&self) -> u64 {
        self.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the target to the peer so far.
    pub fn down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

/// Copies one direction until either side ends, counting; holds still while frozen.
fn pump(conn: Arc<RelayConn>, upward: bool) {
    let (mut from, mut to) = if upward {
        (&conn.inbound, &conn.outbound)
    } else {
        (&conn.outbound, &conn.inbound)
    };
    let count = if upward { &conn.up } else { &conn.down };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        conn.wait_thawed();
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just before a freeze are held back too.
        conn.wait_thawed();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
    // No half-close in this protocol's world: one side's end ends both.
    let _ = conn.inbound.shutdown(Shutdown::Both);
    let _ = conn.outbound.shutdown(Shutdown::Both);
}

/// A relay listening on 127.0.0.1 toward one target.
pub struct Relay {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<RelayConn>>>>,
    /// Connections closed at once because they came from an address not admitted.
    refused: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
}

impl Relay {
    /// Relays every connection to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        Self::start_admitting(target, None)
    }

    /// Relays connections from `only` (any when `None`) to `target`; closes others at once.
    pub fn start_admitting(target: SocketAddr, only: Option<IpAddr>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let conns: Arc<Mutex<Vec<Arc<RelayConn>>>> = Arc::default();
        let refused = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (c2, r2, s2) = (conns.clone(), refused.clone(), stopping.clone());
        std::thread::Builder::new()
            .name(format!("relay {addr}"))
            .spawn(move || {
                for s in listener.incoming() {
                    if s2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(inbound) = s else { continue };
                    let Ok(peer) = inbound.peer_addr() else {
                        continue;
                    };
                    if only.is_some_and(|ip| ip != peer.ip()) {
                        r2.fetch_add(1, Ordering::SeqCst);
                        let _ = inbound.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(outbound) = TcpStream::connect(target) else {
                        let _ = inbound.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let conn = Arc::new(RelayConn {
                        peer,
                        up: AtomicU64::new(0),
                        down: AtomicU64::new(0),
                        inbound,
                        outbound,
                        frozen: Mutex::new(false),
                        thaw: Condvar::new(),
                    });
                    c2.lock().unwrap().push(conn.clone());
                    let c = conn.clone();
                    std::thread::spawn(move || pump(c, true));
                    std::thread::spawn(move || pump(conn, false));
                }
                for c in c2.lock().unwrap().iter() {
                    c.cut();
                }
            })
            .expect("spawn relay");
        Relay {
            addr,
            conns,
            refused,
            stopping,
        }
    }

    /// The `ws://` URL of the relay, for a client whose server is behind it.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The connections relayed so far, oldest first (cut ones included).
    pub fn conns(&self) -> Vec<Arc<RelayConn>> {
        self.conns.lock().unwrap().clone()
    }

    /// Connections refused for their source address so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag and cuts what it relays.
        let _ = TcpStream::connect(self.addr);
    }
}
