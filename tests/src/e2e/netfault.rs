//! A TCP relay a test puts between our client and server (or a provider and the server), so
//! it can break the WebSocket link the way networks and crashes do: cut it (both ends see the
//! connection end), reset it (both ends see a TCP RST, as when a CDN or a NAT drops it),
//! freeze it (bytes stop flowing, nobody is told), or refuse new connections.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a pump blocks in one read or write before it looks whether it was reset.
const PUMP_POLL: Duration = Duration::from_millis(100);

/// What a relayed connection's two pumps share with the relay.
#[derive(Default)]
struct PairState {
    frozen: AtomicBool,
    /// Set by a reset: the pumps leave without shutting anything down, so that the last close
    /// of each socket (lingering 0 s) sends an RST, not a FIN.
    resetting: AtomicBool,
    /// Bytes relayed so far, both directions.
    relayed: AtomicU64,
}

/// One relayed connection: the accepted side and the side dialled upstream.
struct Pair {
    /// (down, up); `None` once reset (the relay's copies are closed).
    socks: Option<(TcpStream, TcpStream)>,
    state: Arc<PairState>,
}

impl Pair {
    fn cut(&self) {
        if let Some((down, up)) = &self.socks {
            let _ = down.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
        }
    }

    /// Both sockets linger 0 s and are closed once the pumps let go of them (within
    /// [`PUMP_POLL`]; at once when a pump waits in a read, which `shutdown(Read)` ends without
    /// sending anything): each side gets an RST, no FIN before it.
    fn reset(&mut self) {
        let Some((down, up)) = self.socks.take() else {
            return;
        };
        self.state.resetting.store(true, Ordering::SeqCst);
        for s in [&down, &up] {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(Shutdown::Read);
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    /// Every connection accepted so far, in order (cut ones stay, so indexes are stable).
    pairs: Mutex<Vec<Pair>>,
    refusing: AtomicBool,
    /// Connections refused while `refusing`.
    refused: AtomicUsize,
    stopping: AtomicBool,
    accepted: AtomicUsize,
}

/// A relay from a port on 127.0.0.1 to `upstream`.
pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    pub fn start(upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            pairs: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("relay {addr}"))
            .spawn(move || {
                for s in listener.incoming() {
                    if sh.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(down) = s else { continue };
                    if sh.refusing.load(Ordering::SeqCst) {
                        // As a dead host's port would: the connection ends at once.
                        let _ = down.shutdown(Shutdown::Both);
                        sh.refused.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let Ok(up) = TcpStream::connect(sh.upstream) else {
                        let _ = down.shutdown(Shutdown::Both);
                        continue;
                    };
                    for s in [&down, &up] {
                        let _ = s.set_nodelay(true);
                        let _ = s.set_read_timeout(Some(PUMP_POLL));
                        let _ = s.set_write_timeout(Some(PUMP_POLL));
                    }
                    let state = Arc::new(PairState::default());
                    pump(&down, &up, state.clone());
                    pump(&up, &down, state.clone());
                    sh.pairs.lock().unwrap().push(Pair {
                        socks: Some((down, up)),
                        state,
                    });
                    sh.accepted.fetch_add(1, Ordering::SeqCst);
                }
            })?;
        Ok(Relay { addr, shared })
    }

    /// `ws://` URL of the relay (for a client whose server is behind it).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Connections refused so far (see [`Relay::refuse_new`]): a client that tried again
    /// has noticed its link was gone.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections accepted and relayed so far (refused ones not counted).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Ends relayed connection `i` (in accept order) on both sides, as a crash of the far
    /// process or a middlebox dropping it would.
    pub fn cut(&self, i: usize) {
        let pairs = self.shared.pairs.lock().unwrap();
        pairs
            .get(i)
            .unwrap_or_else(|| panic!("relay has no connection #{i}"))
            .cut();
    }

    /// Resets relayed connection `i` (in accept order): both sides get a TCP RST, as when a
    /// CDN, a NAT or a network drops the connection (no FIN first, unlike [`Relay::cut`]).
    pub fn reset(&self, i: usize) {
        let mut pairs = self.shared.pairs.lock().unwrap();
        pairs
            .get_mut(i)
            .unwrap_or_else(|| panic!("relay has no connection #{i}"))
            .reset();
    }

    /// Resets every connection relayed so far (see [`Relay::reset`]).
    pub fn reset_all(&self) {
        for p in self.shared.pairs.lock().unwrap().iter_mut() {
            p.reset();
        }
    }

    /// Bytes relayed so far on connection `i`, both directions together: which link carries
    /// a transfer.
    pub fn relayed(&self, i: usize) -> u64 {
        let pairs = self.shared.pairs.lock().unwrap();
        pairs
            .get(i)
            .unwrap_or_else(|| panic!("relay has no connection #{i}"))
            .state
            .relayed
            .load(Ordering::SeqCst)
    }

    /// Ends every connection relayed so far.
    pub fn cut_all(&self) {
        for p in self.shared.pairs.lock().unwrap().iter() {
            p.cut();
        }
    }

    /// Stops moving bytes on every connection relayed so far, without telling either side
    /// (a frozen process, a host that lost power, a partition).
    pub fn freeze_all(&self) {
        for p in self.shared.pairs.lock().unwrap().iter() {
            p.state.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// From now on, new connections are closed at once (the far side stays dead).
    pub fn refuse_new(&self, refuse: bool) {
        self.shared.refusing.store(refuse, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut_all();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread until either ends, counting. While frozen, what arrives
/// is read and dropped, as a black hole would: the sender's writes keep succeeding. Once the
/// pair is reset, it leaves as soon as it notices (its reads and writes time out every
/// [`PUMP_POLL`]), closing its copies without a shutdown.
fn pump(from: &TcpStream, to: &TcpStream, state: Arc<PairState>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let timed_out = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        )
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        'relay: loop {
            if state.resetting.load(Ordering::SeqCst) {
                break;
            }
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if timed_out(&e) => continue,
                Err(_) => break,
            };
            if state.frozen.load(Ordering::SeqCst) {
                continue;
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                if state.resetting.load(Ordering::SeqCst) {
                    break 'relay;
                }
                match to.write(rest) {
                    Ok(0) => break 'relay,
                    Ok(k) => {
                        rest = &rest[k..];
                        state.relayed.fetch_add(k as u64, Ordering::SeqCst);
                    }
                    Err(e) if timed_out(&e) => {}
                    Err(_) => break 'relay,
                }
            }
        }
        if !state.frozen.load(Ordering::SeqCst) && !state.resetting.load(Ordering::SeqCst) {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    });
}

/// A TCP address on 127.0.0.1 where connections are never answered: a listener with a
/// backlog of zero whose queue is kept full, so the kernel drops further SYNs and a dial
/// hangs until its own timeout. Kept alive by the returned value.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    pub fn start() -> io::Result<Blackhole> {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        l.listen(0)?;
        let addr = l
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        // Fill the accept queue until a connection attempt goes unanswered: from then on
        // every SYN is dropped.
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Ok(Blackhole {
                        addr,
                        _listener: l,
                        _fillers: fillers,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "the listener kept accepting: cannot make a black hole",
        ))
    }
}
