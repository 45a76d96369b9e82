//! End-to-end load generator for SOCKS5 proxies (LinkSocks and its peers), std threads only.
//!
//! ```text
//! e2e run --socks 127.0.0.1:1080|direct [--pids LOCAL,EXIT] --label NAME --out FILE [options]
//! e2e relay-front --listen ADDR --back ADDR     # plain SOCKS5 relay, first of two hops
//! e2e relay-back --listen ADDR                  # plain relay that dials, second hop
//! e2e table [--baseline LABEL] FILE...          # markdown table of result files
//! e2e echo-server --listen ADDR                 # TCP echo target in a process of its own
//! e2e free-port                                 # prints a free TCP port on 127.0.0.1
//! e2e wait-port ADDR [SECS]                     # waits until ADDR accepts TCP connections
//! ```
//!
//! `run` starts its own targets on 127.0.0.1 (bulk source/sink, TCP echo, UDP echo), speaks
//! SOCKS5 itself, and writes `key<TAB>value` lines to FILE. See `benches/README.md`.

mod measure;
mod pool;
mod procfs;
mod relay;
mod socks;
mod table;
mod targets;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage:
  e2e run --socks ADDR|direct [--pids LOCAL_PID,EXIT_PID] [--label NAME] [--out FILE]
          [--description TEXT] [--bytes SIZE (1GiB)] [--bulk-secs S (10)]
          [--rate-secs S (3)] [--rate1-secs S (2)] [--concurrency N (50)] [--held N (2000)]
          [--udp N (2000)] [--udp-size BYTES (512)] [--echo N (1000)] [--quick]
          [--only udp,rate1,echo,rate50,down1,up1,down4,held,churn]
          [--echo-target ADDR] [--churn N (0)]
  e2e echo-server --listen ADDR
  e2e relay-front --listen ADDR --back ADDR
  e2e relay-back --listen ADDR
  e2e table [--baseline LABEL] FILE...
  e2e free-port
  e2e wait-port ADDR [SECS]"
    );
    exit(2)
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (num, mul) = [
        ("gib", 1u64 << 30),
        ("g", 1 << 30),
        ("mib", 1 << 20),
        ("m", 1 << 20),
        ("kib", 1 << 10),
        ("k", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    match num.parse::<f64>() {
        Ok(v) => (v * mul as f64) as u64,
        Err(_) => {
            eprintln!("bad size {s}");
            exit(2)
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    match v.as_deref().map(str::parse) {
        Some(Ok(x)) => x,
        _ => {
            eprintln!("{flag}: missing or bad value");
            exit(2)
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else { usage() };
    match cmd.as_str() {
        "run" => run(args),
        "relay-front" | "relay-back" => {
            let (mut listen, mut back) = (None, None);
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--listen" => listen = Some(parse::<SocketAddr>(&a, args.next())),
                    "--back" => back = Some(parse::<SocketAddr>(&a, args.next())),
                    _ => usage(),
                }
            }
            let listen = listen.unwrap_or_else(|| usage());
            let r = if cmd == "relay-front" {
                relay::front(listen, back.unwrap_or_else(|| usage()))
            } else {
                relay::back(listen)
            };
            if let Err(e) = r {
                eprintln!("{cmd}: {e}");
                exit(1);
            }
        }
        "table" => {
            let mut baseline = None;
            let mut files = Vec::new();
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--baseline" => baseline = args.next(),
                    _ => files.push(a),
                }
            }
            let setups: Vec<_> = files
                .iter()
                .map(|f| {
                    table::load(f).unwrap_or_else(|e| {
                        eprintln!("{f}: {e}");
                        exit(1)
                    })
                })
                .collect();
            let setups = table::merge(setups);
            print!("{}", table::render(&setups, baseline.as_deref()));
        }
        "echo-server" => {
            let listen = match (args.next().as_deref(), args.next()) {
                (Some("--listen"), Some(a)) => parse::<SocketAddr>("--listen", Some(a)),
                _ => usage(),
            };
            if let Err(e) = targets::echo_forever(listen) {
                eprintln!("echo-server: {e}");
                exit(1);
            }
        }
        "free-port" => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            println!("{}", l.local_addr().unwrap().port());
        }
        "wait-port" => {
            let addr: SocketAddr = parse("ADDR", args.next());
            let secs: f64 = args.next().map(|s| parse("SECS", Some(s))).unwrap_or(30.0);
            let start = Instant::now();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if start.elapsed().as_secs_f64() > secs {
                    eprintln!("{addr} not listening after {secs} s");
                    exit(1);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        _ => usage(),
    }
}

fn run(mut args: impl Iterator<Item = String>) {
    let mut o = measure::Opts {
        proxy: None,
        pids: Vec::new(),
        bytes: 1 << 30,
        bulk_secs: 10.0,
        rate_secs: 3.0,
        rate1_secs: 2.0,
        concurrency: 50,
        held: 2000,
        udp_count: 2000,
        udp_size: 512,
        echo_count: 1000,
        only: Vec::new(),
        echo_target: None,
        churn: 0,
    };
    let (mut label, mut out, mut description) = (String::from("setup"), None, None);
    let mut socks_given = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socks" => {
                let v = args.next().unwrap_or_else(|| usage());
                socks_given = true;
                o.proxy = (v != "direct").then(|| parse("--socks", Some(v)));
            }
            "--pids" => {
                let v = args.next().unwrap_or_default();
                o.pids = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|p| parse("--pids", Some(p.to_string())))
                    .collect();
            }
            "--label" => label = args.next().unwrap_or_else(|| usage()),
            "--out" => out = args.next(),
            "--description" => description = args.next(),
            "--bytes" => o.bytes = parse_size(&args.next().unwrap_or_else(|| usage())),
            "--bulk-secs" => o.bulk_secs = parse(&a, args.next()),
            "--rate-secs" => o.rate_secs = parse(&a, args.next()),
            "--rate1-secs" => o.rate1_secs = parse(&a, args.next()),
            "--concurrency" => o.concurrency = parse(&a, args.next()),
            "--held" => o.held = parse(&a, args.next()),
            "--udp" => o.udp_count = parse(&a, args.next()),
            "--udp-size" => o.udp_size = parse(&a, args.next()),
            "--echo" => o.echo_count = parse(&a, args.next()),
            "--echo-target" => o.echo_target = Some(parse(&a, args.next())),
            "--churn" => o.churn = parse(&a, args.next()),
            "--only" => {
                o.only = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--quick" => {
                o.bytes = 256 << 20;
                o.bulk_secs = 2.0;
                o.rate_secs = 1.0;
                o.rate1_secs = 0.5;
                o.held = 300;
                o.udp_count = 300;
                o.echo_count = 200;
            }
            _ => usage(),
        }
    }
    if !socks_given {
        usage();
    }
    let bytes = o.bytes;
    eprintln!("== {label}");
    let mut b = measure::Bench::new(o).unwrap_or_else(|e| {
        eprintln!("cannot start targets: {e}");
        exit(1)
    });
    b.r.text("label", &label);
    if let Some(d) = description {
        b.r.text("description", &d);
    }
    b.r.num("bulk_target_bytes", bytes as f64);
    b.run_all();
    let text: String = b.r.0.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    match out {
        Some(f) => std::fs::write(&f, text).unwrap_or_else(|e| {
            eprintln!("{f}: {e}");
            exit(1)
        }),
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
    // Exit at once: target threads are still parked on their sockets.
    exit(0);
}
