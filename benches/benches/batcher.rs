//! Criterion benches of `linksocks_core::session::batch::Batcher`, the part of the data path
//! that decides when a socket read becomes a Data message.
//!
//! - `feed/<pattern>/<policy>`: the cost per chunk fed, as a driver pays it: `push` of the
//!   chunk, draining what is ready, then the flush decision (`deadline`, and `flush` when it
//!   is due). Time advances by a fixed step per chunk (simulated clock), so the adaptive
//!   policy sees the rate the pattern implies.
//! - `decide/<state>/<policy>`: one flush decision alone (`deadline` and the comparison with
//!   `now`), on an empty batcher and on one holding a small chunk whose deadline is not due.
//! - `flush/<n>x100B/<policy>`: `flush` of a batch of n held 100-byte chunks (n > 1 joins them
//!   into one buffer: that copy is the cost of coalescing).
//!
//! Patterns: bulk (64 KiB chunks every 64 µs, about 1 GB/s) on an idle and on a busy link;
//! interactive (100 B every 1 ms) on an idle link; small reads (100 B every 2 µs) on a busy
//! link, the case where coalescing happens.
//!
//! Run: `cargo bench -p linksocks-benches --bench batcher -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use linksocks_benches::noise;
use linksocks_core::session::batch::Batcher;
use linksocks_core::session::config::{BatchPolicy, DataConfig};
use linksocks_core::time::Instant;

struct Pattern {
    name: &'static str,
    chunk: usize,
    link_busy: bool,
    step: Duration,
}

const PATTERNS: [Pattern; 4] = [
    Pattern {
        name: "bulk_64KiB_idle_link",
        chunk: 64 << 10,
        link_busy: false,
        step: Duration::from_micros(64),
    },
    Pattern {
        name: "bulk_64KiB_busy_link",
        chunk: 64 << 10,
        link_busy: true,
        step: Duration::from_micros(64),
    },
    Pattern {
        name: "interactive_100B_idle_link",
        chunk: 100,
        link_busy: false,
        step: Duration::from_millis(1),
    },
    Pattern {
        name: "small_100B_busy_link",
        chunk: 100,
        link_busy: true,
        step: Duration::from_micros(2),
    },
];

const POLICIES: [(&str, BatchPolicy); 2] = [
    ("LinkPaced", BatchPolicy::LinkPaced),
    ("Adaptive", BatchPolicy::Adaptive),
];

fn cfg(batch: BatchPolicy) -> DataConfig {
    DataConfig {
        batch,
        ..DataConfig::default()
    }
}

/// What a driver does per chunk read: push, send what is ready, decide whether to flush.
/// Returns the bytes made ready (so nothing is optimized away).
#[inline(always)]
fn feed(b: &mut Batcher, now: Instant, chunk: Bytes, busy: bool, cfg: &DataConfig) -> usize {
    let mut sent = 0;
    for out in b.push(now, chunk, busy, cfg) {
        sent += black_box(out).len();
    }
    if let Some(d) = b.deadline(cfg) {
        if now >= d {
            if let Some(out) = b.flush(now, cfg) {
                sent += black_box(out).len();
            }
        }
    }
    sent
}

fn bench_feed(c: &mut Criterion) {
    let mut g = c.benchmark_group("feed");
    for p in &PATTERNS {
        let chunk = noise(p.chunk);
        g.throughput(Throughput::Bytes(p.chunk as u64));
        for (pname, policy) in POLICIES {
            let cfg = cfg(policy);
            g.bench_function(BenchmarkId::new(p.name, pname), |bench| {
                let mut b = Batcher::new();
                let mut now = Instant::ZERO;
                bench.iter(|| {
                    now += p.step;
                    feed(&mut b, now, chunk.clone(), p.link_busy, &cfg)
                });
            });
        }
    }
    g.finish();
}

fn bench_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let small = noise(100);
    for (pname, policy) in POLICIES {
        let cfg = cfg(policy);
        // Empty batcher: the common case on an idle link (nothing held, no timer).
        g.bench_function(BenchmarkId::new("empty", pname), |bench| {
            let mut b = Batcher::new();
            let now = Instant::from_nanos(1_000_000);
            bench.iter(|| match b.deadline(black_box(&cfg)) {
                Some(d) if black_box(now) >= d => b.flush(now, &cfg).map(|o| o.len()),
                _ => None,
            });
        });
        // Holding one small chunk, deadline not due yet: the decision is "wait".
        g.bench_function(BenchmarkId::new("holding_not_due", pname), |bench| {
            let mut b = Batcher::new();
            let t0 = Instant::from_nanos(1_000_000);
            if policy == BatchPolicy::Adaptive {
                // Drive the adaptive delay above zero first: a fast flow (1 MiB in 2 ms; under
                // a millisecond between flushes counts as no rate at all, as in the reference).
                b.push(t0, noise(1 << 20), false, &cfg).for_each(drop);
                b.push(t0 + Duration::from_millis(2), noise(1 << 20), false, &cfg)
                    .for_each(drop);
            }
            let t1 = t0 + Duration::from_millis(3);
            b.push(t1, small.clone(), true, &cfg).for_each(drop);
            assert!(!b.is_empty(), "{pname}: the chunk should be held");
            bench.iter(|| match b.deadline(black_box(&cfg)) {
                Some(d) if black_box(t1) >= d => b.flush(t1, &cfg).map(|o| o.len()),
                _ => None,
            });
        });
    }
    g.finish();
}

fn bench_flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    let small = noise(100);
    // Made once: Adaptive only needs the two large pushes for their sizes (to set its rate).
    // Filling fresh megabytes in every setup evicted the caches before each measured flush,
    // and the Adaptive figures then varied 2-3x from run to run.
    let big = noise(1 << 20);
    for n in [1usize, 10, 100] {
        g.throughput(Throughput::Bytes(100 * n as u64));
        for (pname, policy) in POLICIES {
            let cfg = cfg(policy);
            let now = Instant::from_nanos(3_000_000);
            g.bench_function(BenchmarkId::new(format!("{n}x100B"), pname), |bench| {
                bench.iter_batched_ref(
                    || {
                        let mut b = Batcher::new();
                        if policy == BatchPolicy::Adaptive {
                            b.push(Instant::ZERO, big.clone(), false, &cfg)
                                .for_each(drop);
                            b.push(Instant::from_nanos(2_000_000), big.clone(), false, &cfg)
                                .for_each(drop);
                        }
                        for _ in 0..n {
                            b.push(now, small.clone(), true, &cfg).for_each(drop);
                        }
                        assert_eq!(b.len(), 100 * n);
                        b
                    },
                    |b| b.flush(now, &cfg).map(|o| o.len()),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_feed, bench_decide, bench_flush);
criterion_main!(benches);
