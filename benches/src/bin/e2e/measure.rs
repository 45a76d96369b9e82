//! The measurements, for one setup: a SOCKS5 address (or none: direct) and the PIDs of the
//! proxy processes (local side first, exit side second).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs::{self, PeakSampler};
use crate::socks::{self, UdpAssoc};
use crate::targets::{self, Targets, OP_DOWN, OP_UP};

pub struct Opts {
    pub proxy: Option<SocketAddr>,
    pub pids: Vec<u32>,
    /// Bytes per 1-stream bulk test (the 4-stream test moves the same total).
    pub bytes: u64,
    /// Each bulk test stops after this long even if `bytes` were not moved.
    pub bulk_secs: f64,
    pub rate_secs: f64,
    pub rate1_secs: f64,
    pub concurrency: usize,
    pub held: usize,
    pub udp_count: usize,
    pub udp_size: usize,
    pub echo_count: usize,
    /// Run only these tests (udp, rate1, echo, rate50, down1, up1, down4, held, churn);
    /// empty: all.
    pub only: Vec<String>,
    /// Echo target for the held and churn tests (and the readiness check) instead of the
    /// generator's own: an `e2e echo-server` in another process.
    pub echo_target: Option<SocketAddr>,
    /// Short connections for the churn test, one after another (0: no churn test).
    pub churn: usize,
}

/// Results, in the order measured: `key value` lines.
#[derive(Default)]
pub struct Results(pub Vec<(String, String)>);

impl Results {
    pub fn num(&mut self, k: &str, v: f64) {
        self.0.push((k.to_string(), format!("{v}")));
        eprintln!("  {k} = {}", pretty(v));
    }
    pub fn text(&mut self, k: &str, v: &str) {
        let v = v.replace(['\n', '\t'], " ");
        eprintln!("  {k} = {v}");
        self.0.push((k.to_string(), v));
    }
}

fn pretty(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn ms(d: u64) -> f64 {
    d as f64 / 1e6
}

/// Percentile of sorted nanosecond samples.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const SIDES: [&str; 2] = ["local", "exit"];

type Test = fn(&mut Bench) -> io::Result<()>;

pub struct Bench {
    o: Opts,
    t: Targets,
    data: Arc<Vec<u8>>,
    tck: f64,
    pub r: Results,
}

impl Bench {
    pub fn new(o: Opts) -> io::Result<Self> {
        let data = Arc::new(targets::noise(1 << 20, 0x9e37_79b9_7f4a_7c15));
        let t = targets::start(data.clone())?;
        Ok(Bench {
            o,
            t,
            data,
            tck: procfs::clk_tck(),
            r: Results::default(),
        })
    }

    fn echo_addr(&self) -> SocketAddr {
        self.o.echo_target.unwrap_or(self.t.echo)
    }

    fn fds(&self) -> Vec<usize> {
        self.o
            .pids
            .iter()
            .map(|p| procfs::fd_count(*p).unwrap_or(0))
            .collect()
    }

    fn conn(&self, target: SocketAddr) -> io::Result<TcpStream> {
        socks::connect(self.o.proxy, target)
    }

    fn rss(&self) -> Vec<u64> {
        self.o
            .pids
            .iter()
            .map(|p| procfs::rss_kib(*p).unwrap_or(0))
            .collect()
    }

    fn cpu(&self) -> f64 {
        procfs::cpu_secs(&self.o.pids, self.tck)
    }

    /// Runs everything; a failed test is recorded as `error.<test>` and the others go on.
    pub fn run_all(&mut self) {
        if let Err(e) = self.ready() {
            self.r.text("error", &format!("proxy not ready: {e}"));
            return;
        }
        for (i, kib) in self.rss().into_iter().enumerate() {
            self.r
                .num(&format!("idle_rss_{}_kib", SIDES[i]), kib as f64);
        }
        let tests: [(&str, Test); 7] = [
            ("udp", Bench::udp),
            ("rate1", |b| b.rate(1, b.o.rate1_secs, "rate1")),
            ("echo", Bench::echo),
            // Before the bulk tests, which may leave a proxy with garbage to collect.
            ("rate50", |b| {
                b.rate(b.o.concurrency, b.o.rate_secs, "rate50")
            }),
            ("down1", |b| b.bulk_down(1, "down1")),
            ("up1", Bench::bulk_up),
            ("down4", |b| b.bulk_down(4, "down4")),
        ];
        let only = self.o.only.clone();
        let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
        for (name, f) in tests {
            if !wanted(name) {
                continue;
            }
            eprintln!(" {name}");
            if let Err(e) = f(self) {
                self.r.text(&format!("error.{name}"), &e.to_string());
            }
        }
        self.cpu_per_gib();
        if !self.o.pids.is_empty() && self.o.held > 0 && wanted("held") {
            eprintln!(" held");
            if let Err(e) = self.held() {
                self.r.text("error.held", &e.to_string());
            }
        }
        if self.o.churn > 0 && wanted("churn") {
            eprintln!(" churn");
            self.churn();
        }
    }

    /// `churn` short connections one after another (SOCKS5 handshake, one 32-byte echo,
    /// close), after a warm-up of a tenth of them (at most 1000): the proxies' open
    /// descriptors and RSS at the end against those after the warm-up.
    fn churn(&mut self) {
        let n = self.o.churn;
        let warm = (n / 10).min(1000);
        let msg = [5u8; 32];
        let mut buf = [0u8; 32];
        let mut errors = 0u64;
        let mut first_err = None;
        let mut before = (Vec::new(), Vec::new());
        let mut start = Instant::now();
        for i in 0..warm + n {
            if i == warm {
                // The proxies end their side of a connection just after the generator's:
                // let the warm-up's last ones go before counting.
                let settle = Instant::now() + Duration::from_secs(2);
                let mut f = self.fds();
                while Instant::now() < settle {
                    thread::sleep(Duration::from_millis(100));
                    let g = self.fds();
                    if g == f {
                        break;
                    }
                    f = g;
                }
                before = (f, self.rss());
                start = Instant::now();
            }
            let r = (|| {
                let mut s = self.conn(self.echo_addr())?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                Self::echo_once(&mut s, &msg, &mut buf)
            })();
            if let Err(e) = r {
                errors += 1;
                first_err.get_or_insert(format!("connection {i}: {e}"));
            }
            if i >= warm && (i - warm + 1).is_multiple_of(10_000) {
                eprintln!("  {} of {n} ({errors} errors)", i - warm + 1);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        // The same settling for the last connections: descriptors back where they were, or 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after_fds = self.fds();
        while after_fds != before.0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            after_fds = self.fds();
        }
        let after_rss = self.rss();
        self.r.num("churn_count", n as f64);
        self.r.num("churn_warmup", warm as f64);
        self.r.num("churn_errors", errors as f64);
        if let Some(e) = first_err {
            self.r.text("churn_first_error", &e);
        }
        self.r.num("churn_secs", secs);
        self.r.num("churn_per_sec", n as f64 / secs);
        for i in 0..after_rss.len() {
            let side = SIDES[i];
            self.r
                .num(&format!("churn_fds_{side}_before"), before.0[i] as f64);
            self.r
                .num(&format!("churn_fds_{side}_after"), after_fds[i] as f64);
            self.r
                .num(&format!("churn_rss_{side}_before_kib"), before.1[i] as f64);
            self.r
                .num(&format!("churn_rss_{side}_after_kib"), after_rss[i] as f64);
            if before.1[i] > 0 {
                let pct = (after_rss[i] as f64 / before.1[i] as f64 - 1.0) * 100.0;
                self.r.num(&format!("churn_rss_{side}_change_pct"), pct);
            }
        }
    }

    fn echo_once(s: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> io::Result<()> {
        s.write_all(msg)?;
        s.read_exact(&mut buf[..msg.len()])?;
        if &buf[..msg.len()] != msg {
            return Err(io::Error::other("echo mismatch"));
        }
        Ok(())
    }

    /// Waits (up to 60 s) until one request/response through the proxy works.
    fn ready(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let msg = [7u8; 32];
        let mut buf = [0u8; 32];
        loop {
            let attempt = (|| {
                let mut s = self.conn(self.echo_addr())?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                Self::echo_once(&mut s, &msg, &mut buf)
            })();
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(60) => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// UDP round trips, one at a time: count, loss, RTT.
    fn udp(&mut self) -> io::Result<()> {
        let a = UdpAssoc::open(self.o.proxy)?;
        let mut sbuf = Vec::with_capacity(self.o.udp_size + 32);
        let mut rbuf = vec![0u8; 65536];
        let mut payload = targets::noise(self.o.udp_size.max(8), 7);
        // Warm-up (not counted): the first datagram may set up the association.
        a.sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        payload[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut warm = false;
        for _ in 0..10 {
            a.send(self.t.udp, &payload, &mut sbuf)?;
            if a.recv(&mut rbuf).is_ok() {
                warm = true;
                break;
            }
        }
        if !warm {
            return Err(io::Error::other("no UDP reply at all (10 tries)"));
        }
        let wait = Duration::from_millis(200);
        let mut rtts = Vec::with_capacity(self.o.udp_count);
        let mut sent = 0u64;
        let mut consecutive_lost = 0;
        let mut bad_len = 0u64;
        let start = Instant::now();
        for i in 0..self.o.udp_count as u64 {
            payload[..8].copy_from_slice(&i.to_le_bytes());
            let t0 = Instant::now();
            a.send(self.t.udp, &payload, &mut sbuf)?;
            sent += 1;
            let mut got = false;
            loop {
                let left = wait.saturating_sub(t0.elapsed());
                if left.is_zero() {
                    break;
                }
                a.sock.set_read_timeout(Some(left))?;
                match a.recv(&mut rbuf) {
                    Ok(r) if r.len() >= 8 => {
                        let seq =
                            u64::from_le_bytes(rbuf[r.start..r.start + 8].try_into().unwrap());
                        if seq == i {
                            if r.len() != payload.len() {
                                bad_len += 1;
                            }
                            rtts.push(t0.elapsed().as_nanos() as u64);
                            got = true;
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        break
                    }
                    Err(_) => {}
                }
            }
            if got {
                consecutive_lost = 0;
            } else {
                consecutive_lost += 1;
                if consecutive_lost >= 50 {
                    self.r
                        .text("udp_note", "stopped after 50 datagrams lost in a row");
                    break;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let recv = rtts.len() as u64;
        rtts.sort_unstable();
        self.r.num("udp_sent", sent as f64);
        self.r.num("udp_received", recv as f64);
        self.r.num(
            "udp_loss_pct",
            100.0 * (self.o.udp_count as u64 - recv) as f64 / self.o.udp_count as f64,
        );
        if bad_len > 0 {
            self.r.num("udp_wrong_length", bad_len as f64);
        }
        self.r.num("udp_rtt_p50_ms", ms(pct(&rtts, 50.0)));
        self.r.num("udp_rtt_p99_ms", ms(pct(&rtts, 99.0)));
        self.r.num("udp_round_trips_per_s", recv as f64 / secs);
        Ok(())
    }

    /// Connections with one 32-byte request/response each, `conc` at a time, for `secs`.
    fn rate(&mut self, conc: usize, secs: f64, key: &str) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let samples: Arc<Mutex<Vec<(u64, u64, u64)>>> = Default::default();
        let errors = Arc::new(AtomicU64::new(0));
        let first_err: Arc<Mutex<Option<String>>> = Default::default();
        let cpu0 = self.cpu();
        let start = Instant::now();
        let mut hs = Vec::new();
        for w in 0..conc {
            let (proxy, echo) = (self.o.proxy, self.t.echo);
            let (samples, errors, first_err) = (samples.clone(), errors.clone(), first_err.clone());
            hs.push(
                thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || {
                        let mut mine = Vec::with_capacity(4096);
                        let mut msg = [0u8; 32];
                        msg[..8].copy_from_slice(&(w as u64).to_le_bytes());
                        let mut buf = [0u8; 32];
                        while Instant::now() < deadline {
                            let t0 = Instant::now();
                            let r = (|| {
                                let mut s = socks::connect(proxy, echo)?;
                                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                                let t1 = Instant::now();
                                Self::echo_once(&mut s, &msg, &mut buf)?;
                                Ok::<_, io::Error>(t1)
                            })();
                            match r {
                                Ok(t1) => {
                                    let t2 = Instant::now();
                                    mine.push((
                                        (t2 - t0).as_nanos() as u64,
                                        (t1 - t0).as_nanos() as u64,
                                        (t2 - t1).as_nanos() as u64,
                                    ));
                                }
                                Err(e) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    first_err.lock().unwrap().get_or_insert(e.to_string());
                                    thread::sleep(Duration::from_millis(1));
                                }
                            }
                        }
                        samples.lock().unwrap().extend(mine);
                    })?,
            );
        }
        for h in hs {
            let _ = h.join();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = self.cpu() - cpu0;
        let s = samples.lock().unwrap();
        let n = s.len();
        let mut total: Vec<u64> = s.iter().map(|x| x.0).collect();
        let mut setup: Vec<u64> = s.iter().map(|x| x.1).collect();
        let mut echo: Vec<u64> = s.iter().map(|x| x.2).collect();
        total.sort_unstable();
        setup.sort_unstable();
        echo.sort_unstable();
        self.r
            .num(&format!("{key}_conns_per_s"), n as f64 / elapsed);
        self.r.num(&format!("{key}_p50_ms"), ms(pct(&total, 50.0)));
        self.r.num(&format!("{key}_p99_ms"), ms(pct(&total, 99.0)));
        self.r
            .num(&format!("{key}_setup_p50_ms"), ms(pct(&setup, 50.0)));
        self.r
            .num(&format!("{key}_echo_p50_ms"), ms(pct(&echo, 50.0)));
        self.r
            .num(&format!("{key}_echo_p99_ms"), ms(pct(&echo, 99.0)));
        let errs = errors.load(Ordering::Relaxed);
        self.r.num(&format!("{key}_errors"), errs as f64);
        if let Some(e) = first_err.lock().unwrap().as_ref() {
            self.r.text(&format!("{key}_first_error"), e);
        }
        if !self.o.pids.is_empty() && n > 0 {
            self.r.num(
                &format!("{key}_cpu_ms_per_1000"),
                cpu * 1e3 / (n as f64 / 1e3),
            );
        }
        Ok(())
    }

    /// Request/response of 32 B on one established connection, the link idle in between.
    fn echo(&mut self) -> io::Result<()> {
        let mut s = self.conn(self.t.echo)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let msg = [42u8; 32];
        let mut buf = [0u8; 32];
        for _ in 0..20 {
            Self::echo_once(&mut s, &msg, &mut buf)?;
        }
        let mut v = Vec::with_capacity(self.o.echo_count);
        for _ in 0..self.o.echo_count {
            thread::sleep(Duration::from_micros(500));
            let t0 = Instant::now();
            Self::echo_once(&mut s, &msg, &mut buf)?;
            v.push(t0.elapsed().as_nanos() as u64);
        }
        v.sort_unstable();
        self.r.num("echo_rtt_p50_ms", ms(pct(&v, 50.0)));
        self.r.num("echo_rtt_p99_ms", ms(pct(&v, 99.0)));
        Ok(())
    }

    fn bulk_start(&self, op: u8, n: u64) -> io::Result<TcpStream> {
        let mut s = self.conn(self.t.bulk)?;
        let mut h = [0u8; 9];
        h[0] = op;
        h[1..].copy_from_slice(&n.to_le_bytes());
        s.write_all(&h)?;
        Ok(s)
    }

    fn record_bulk(&mut self, key: &str, bytes: u64, secs: f64, cpu: f64, peaks: Vec<u64>) {
        self.r
            .num(&format!("{key}_mb_per_s"), bytes as f64 / secs / 1e6);
        self.r.num(&format!("{key}_bytes"), bytes as f64);
        self.r.num(&format!("{key}_secs"), secs);
        if !self.o.pids.is_empty() {
            self.r.num(&format!("{key}_cpu_s"), cpu);
            let gib = bytes as f64 / (1u64 << 30) as f64;
            self.r.num(&format!("{key}_cpu_s_per_gib"), cpu / gib);
            for (i, p) in peaks.into_iter().enumerate() {
                self.r
                    .num(&format!("{key}_peak_rss_{}_kib", SIDES[i]), p as f64);
            }
        }
    }

    /// Downloads `bytes` in total over `streams` connections (or for `bulk_secs`).
    fn bulk_down(&mut self, streams: usize, key: &str) -> io::Result<()> {
        let per = self.o.bytes / streams as u64;
        let mut socks = Vec::new();
        for _ in 0..streams {
            socks.push(self.conn(self.t.bulk)?);
        }
        let sampler = PeakSampler::start(&self.o.pids);
        let cpu0 = self.cpu();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(self.o.bulk_secs);
        let mut hs = Vec::new();
        for mut s in socks {
            hs.push(thread::spawn(move || -> io::Result<(u64, Instant)> {
                let mut h = [0u8; 9];
                h[0] = OP_DOWN;
                h[1..].copy_from_slice(&per.to_le_bytes());
                s.write_all(&h)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut buf = vec![0u8; 256 << 10];
                let mut got = 0u64;
                while got < per {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got += n as u64,
                        Err(e)
                            if e.kind() == io::ErrorKind::WouldBlock
                                || e.kind() == io::ErrorKind::TimedOut => {}
                        Err(e) => return Err(e),
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                Ok((got, Instant::now()))
            }));
        }
        let mut total = 0;
        let mut end = start;
        for h in hs {
            let (got, at) = h
                .join()
                .map_err(|_| io::Error::other("thread panicked"))??;
            total += got;
            end = end.max(at);
        }
        let cpu = self.cpu() - cpu0;
        let peaks = sampler.finish();
        self.record_bulk(key, total, (end - start).as_secs_f64(), cpu, peaks);
        Ok(())
    }

    /// Uploads `bytes` (or for `bulk_secs`); done when the sink reports it has them all.
    fn bulk_up(&mut self) -> io::Result<()> {
        let key = "up1";
        let mut s = self.bulk_start(OP_UP, self.o.bytes)?;
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut r = s.try_clone()?;
        r.set_read_timeout(Some(Duration::from_millis(100)))?;
        let (a2, st2) = (acked.clone(), stop.clone());
        let reader = thread::spawn(move || {
            let mut b = [0u8; 8];
            let mut have = 0;
            while !st2.load(Ordering::Relaxed) {
                match r.read(&mut b[have..]) {
                    Ok(0) => return,
                    Ok(n) => {
                        have += n;
                        if have == 8 {
                            a2.store(u64::from_le_bytes(b), Ordering::Release);
                            have = 0;
                        }
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        let sampler = PeakSampler::start(&self.o.pids);
        let cpu0 = self.cpu();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(self.o.bulk_secs);
        let mut sent = 0u64;
        let mut off = 0usize;
        let chunk = 256 << 10;
        // A write blocks at most this long, so the deadline holds on a stalled proxy too.
        s.set_write_timeout(Some(Duration::from_millis(200)))?;
        while sent < self.o.bytes && Instant::now() < deadline {
            let end = (off + chunk).min(self.data.len());
            let end = end.min(off + (self.o.bytes - sent) as usize);
            match s.write(&self.data[off..end]) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    off = (off + n) % self.data.len();
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        // Wait for the sink to have it all (bounded).
        let wait_until = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Acquire) < sent && Instant::now() < wait_until {
            thread::sleep(Duration::from_micros(200));
        }
        let end = Instant::now();
        let got = acked.load(Ordering::Acquire);
        stop.store(true, Ordering::Relaxed);
        let cpu = self.cpu() - cpu0;
        let peaks = sampler.finish();
        drop(s);
        let _ = reader.join();
        if got < sent {
            self.r.text(
                "up1_note",
                &format!("sink got {got} of {sent} bytes within 60 s"),
            );
        }
        self.record_bulk(key, got, (end - start).as_secs_f64(), cpu, peaks);
        Ok(())
    }

    fn cpu_per_gib(&mut self) {
        if self.o.pids.is_empty() {
            return;
        }
        let get = |k: &str| {
            self.r
                .0
                .iter()
                .find(|(kk, _)| kk == k)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        let mut cpu = 0.0;
        let mut bytes = 0.0;
        for k in ["down1", "up1", "down4"] {
            if let (Some(c), Some(b)) = (get(&format!("{k}_cpu_s")), get(&format!("{k}_bytes"))) {
                cpu += c;
                bytes += b;
            }
        }
        if bytes > 0.0 {
            self.r
                .num("bulk_cpu_s_per_gib", cpu / (bytes / (1u64 << 30) as f64));
        }
    }

    /// Opens `held` connections, each checked with one echo, and measures RSS per connection.
    fn held(&mut self) -> io::Result<()> {
        thread::sleep(Duration::from_millis(500));
        let base = self.rss();
        let msg = [9u8; 32];
        let mut buf = [0u8; 32];
        let mut conns = Vec::with_capacity(self.o.held);
        let start = Instant::now();
        let mut first_err = None;
        for _ in 0..self.o.held {
            let r = (|| {
                let mut s = self.conn(self.echo_addr())?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                Self::echo_once(&mut s, &msg, &mut buf)?;
                Ok::<_, io::Error>(s)
            })();
            match r {
                Ok(s) => conns.push(s),
                Err(e) => {
                    first_err.get_or_insert(e.to_string());
                    if conns.is_empty() || start.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                }
            }
        }
        let open_secs = start.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs(1));
        let with = self.rss();
        // Are they all still alive?
        let mut alive = 0;
        for s in conns.iter_mut() {
            if Self::echo_once(s, &msg, &mut buf).is_ok() {
                alive += 1;
            }
        }
        let n = conns.len();
        self.r.num("held_target", self.o.held as f64);
        self.r.num("held_opened", n as f64);
        self.r.num("held_alive", alive as f64);
        self.r.num("held_open_secs", open_secs);
        if let Some(e) = first_err {
            self.r.text("held_first_error", &e);
        }
        let mut sum = 0.0;
        for i in 0..base.len() {
            self.r
                .num(&format!("held_base_rss_{}_kib", SIDES[i]), base[i] as f64);
            self.r
                .num(&format!("held_rss_{}_kib", SIDES[i]), with[i] as f64);
            if n > 0 {
                let per = (with[i] as f64 - base[i] as f64) / n as f64;
                sum += per;
                self.r.num(&format!("held_kib_per_conn_{}", SIDES[i]), per);
            }
        }
        if n > 0 {
            self.r.num("held_kib_per_conn_both", sum);
        }
        drop(conns);
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}
