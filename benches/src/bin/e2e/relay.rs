//! A chain of two plain relays, the ceiling for any tunnel: every byte crosses three loopback
//! hops (application -> front -> back -> target) with no framing at all.
//!
//! - `relay-front`: a SOCKS5 server (no auth; CONNECT and UDP ASSOCIATE). For CONNECT it dials
//!   the back relay, sends the target as `ATYP ADDR PORT`, waits for one status byte, answers
//!   the application and then copies bytes both ways. For UDP it forwards each SOCKS5 datagram
//!   as it is to the back relay's UDP port, from one socket per association.
//! - `relay-back`: reads the target header, dials, answers one status byte (0 = ok) and copies
//!   bytes both ways. On UDP (same port number) it strips the SOCKS5 header, sends the payload
//!   to the target from one socket per front socket, and sends replies back with a header.
//!
//! One thread per direction per connection, a 64 KiB buffer each: a plain, tuned-enough relay.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use crate::pool::Pool;
use crate::socks;

const STACK: usize = 128 << 10;
const BUF: usize = 64 << 10;

static POOL: OnceLock<Pool> = OnceLock::new();

/// Runs `f` on a pooled thread (a new one only when none is idle).
fn spawn(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let pool = POOL.get_or_init(|| Pool::new(STACK, 32));
    if pool.run(f) {
        Ok(())
    } else {
        Err(io::Error::other("cannot start a thread"))
    }
}

/// Copies `from` to `to` until EOF, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Copies both ways: one direction on a new thread, the other on this one.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (done, wait) = std::sync::mpsc::channel();
    if spawn(move || {
        pump(a2, b2);
        let _ = done.send(());
    })
    .is_err()
    {
        return;
    }
    pump(b, a);
    let _ = wait.recv();
}

fn serve(listener: TcpListener, f: impl Fn(TcpStream) + Send + Sync + Copy + 'static) {
    for s in listener.incoming() {
        match s {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                if let Err(e) = spawn(move || f(s)) {
                    eprintln!("relay: {e}");
                }
            }
            Err(e) => {
                eprintln!("relay accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ---- front ----

pub fn front(listen: SocketAddr, back: SocketAddr) -> io::Result<()> {
    let l = TcpListener::bind(listen)?;
    BACK.set(back).ok();
    serve(l, |s| {
        let _ = front_conn(s);
    });
    Ok(())
}

static BACK: OnceLock<SocketAddr> = OnceLock::new();

fn reply(s: &mut TcpStream, code: u8, bound: SocketAddr) -> io::Result<()> {
    let mut r = vec![5, code, 0];
    socks::encode_addr(&mut r, bound);
    s.write_all(&r)
}

fn front_conn(mut s: TcpStream) -> io::Result<()> {
    let back = *BACK.get().unwrap();
    s.set_read_timeout(Some(socks::STEP_TIMEOUT))?;
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut methods = vec![0u8; h[1] as usize];
    s.read_exact(&mut methods)?;
    if h[0] != 5 || !methods.contains(&0) {
        s.write_all(&[5, 0xff])?;
        return Ok(());
    }
    s.write_all(&[5, 0])?;
    let mut r = [0u8; 3];
    s.read_exact(&mut r)?;
    let target = match socks::read_addr(&mut s) {
        Ok(t) => t,
        Err(_) => return reply(&mut s, 8, "0.0.0.0:0".parse().unwrap()),
    };
    let zero: SocketAddr = "0.0.0.0:0".parse().unwrap();
    match r[1] {
        socks::CMD_CONNECT => {
            let mut b = match TcpStream::connect(back) {
                Ok(b) => b,
                Err(_) => return reply(&mut s, 1, zero),
            };
            b.set_nodelay(true)?;
            let mut hdr = Vec::with_capacity(19);
            socks::encode_addr(&mut hdr, target);
            b.write_all(&hdr)?;
            let mut st = [0u8; 1];
            b.read_exact(&mut st)?;
            if st[0] != 0 {
                return reply(&mut s, st[0], zero);
            }
            let local = s.local_addr()?;
            reply(&mut s, 0, local)?;
            s.set_read_timeout(None)?;
            splice(s, b);
            Ok(())
        }
        socks::CMD_UDP => front_udp(s, back),
        _ => reply(&mut s, 7, zero),
    }
}

fn front_udp(mut s: TcpStream, back: SocketAddr) -> io::Result<()> {
    let ip = s.local_addr()?.ip();
    let app_side = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let back_side = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    back_side.connect(back)?;
    let bound = app_side.local_addr()?;
    reply(&mut s, 0, bound)?;
    let stop = Arc::new(AtomicBool::new(false));
    let app: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let tick = Some(Duration::from_millis(200));
    app_side.set_read_timeout(tick)?;
    back_side.set_read_timeout(tick)?;
    let (a2, b2) = (app_side.try_clone()?, back_side.try_clone()?);
    let (stop2, app2) = (stop.clone(), app.clone());
    // Replies: back relay -> application.
    spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok(n) = b2.recv(&mut buf) {
                if let Some(to) = *app2.lock().unwrap() {
                    let _ = a2.send_to(&buf[..n], to);
                }
            }
        }
    })?;
    // Requests: application -> back relay, on another thread; this one watches the control
    // connection.
    let stop3 = stop.clone();
    spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop3.load(Ordering::Relaxed) {
            if let Ok((n, from)) = app_side.recv_from(&mut buf) {
                *app.lock().unwrap() = Some(from);
                let _ = back_side.send(&buf[..n]);
            }
        }
    })?;
    s.set_read_timeout(None)?;
    let mut sink = [0u8; 64];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    // The two threads see this within 200 ms and go back to the pool.
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

// ---- back ----

pub fn back(listen: SocketAddr) -> io::Result<()> {
    let l = TcpListener::bind(listen)?;
    let u = UdpSocket::bind(l.local_addr()?)?;
    spawn(move || back_udp(u))?;
    serve(l, |s| {
        let _ = back_conn(s);
    });
    Ok(())
}

fn back_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(socks::STEP_TIMEOUT))?;
    let target = socks::read_addr(&mut s)?;
    match TcpStream::connect_timeout(&target, Duration::from_secs(10)) {
        Ok(t) => {
            t.set_nodelay(true)?;
            s.write_all(&[0])?;
            s.set_read_timeout(None)?;
            splice(s, t);
        }
        Err(_) => s.write_all(&[5])?,
    }
    Ok(())
}

fn back_udp(u: UdpSocket) {
    let outs: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = u.recv_from(&mut buf) else {
            continue;
        };
        if n < 3 {
            continue;
        }
        let Some((target, hl)) = socks::parse_addr(&buf[3..n]) else {
            continue;
        };
        let out = {
            let mut m = outs.lock().unwrap();
            match m.get(&from) {
                Some(o) => o.clone(),
                None => {
                    let Ok(o) = UdpSocket::bind("127.0.0.1:0") else {
                        continue;
                    };
                    let o = Arc::new(o);
                    m.insert(from, o.clone());
                    let (o2, u2, outs2) = (o.clone(), u.try_clone().unwrap(), outs.clone());
                    let _ = o.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = spawn(move || {
                        let mut b = vec![0u8; 65536];
                        let mut d = Vec::with_capacity(65536);
                        loop {
                            match o2.recv_from(&mut b) {
                                Ok((k, src)) => {
                                    d.clear();
                                    d.extend_from_slice(&[0, 0, 0]);
                                    socks::encode_addr(&mut d, src);
                                    d.extend_from_slice(&b[..k]);
                                    let _ = u2.send_to(&d, from);
                                }
                                Err(_) => {
                                    // Idle for a minute: forget the association.
                                    outs2.lock().unwrap().remove(&from);
                                    return;
                                }
                            }
                        }
                    });
                    o
                }
            }
        };
        let _ = out.send_to(&buf[3 + hl..n], target);
    }
}
