//! The delay the machines themselves add to a request/response round trip.
//!
//! On a simulated link with zero latency and instant local sockets, every microsecond of a
//! round trip beyond the link's transmission time (a few microseconds for 100 bytes at the
//! 64 MB/s used here) is added by the machines (batching). An application exchanges
//! 100-byte echoes, 10 ms apart, on an idle connection and right after an echoed bulk burst.
//! With `BatchPolicy::LinkPaced` (the default) nothing may be added; `BatchPolicy::Adaptive`
//! (the reference's SendManager) holds data for 20..500 ms once a flow has been fast, which it
//! measures between flushes at least a millisecond apart (here the simulated application
//! writes its burst at once, so the policy sees no rate and holds nothing). An echo sent right
//! behind a burst waits for the burst's data already queued on the link (at most a channel's
//! share, 1 MiB, at the link's speed): that is the link, not batching. All are printed:
//! `cargo test -p linksocks-tests --test sim_latency -- --nocapture`.

use std::time::Duration;

use linksocks_core::session::{BatchPolicy, DataConfig};
use linksocks_tests::sim::*;

/// Round trip times of `rounds` echoes after a burst of `burst` bytes (with `overlap`, the
/// first echo is sent right behind the burst).
fn measure(policy: BatchPolicy, burst: u64, rounds: u32, overlap: bool) -> Vec<Duration> {
    // Finite bandwidth, so that a burst takes time and the reference's policy sees a rate
    // (it ignores flushes under a millisecond apart).
    let mut net = NetProfile::ideal();
    net.bandwidth = 64_000_000;
    let mut w = World::new(7, Some(net));
    let data = DataConfig {
        batch: policy,
        ..DataConfig::default()
    };
    let f = w.setup_forward(|_, s, c| {
        s.data = data.clone();
        c.data = data.clone();
        c.threads = 1;
    });
    let plan = Plan::PingPong {
        burst,
        rounds,
        size: 100,
        think: Duration::from_millis(10),
        overlap,
    };
    let at = w.now;
    let a = w.spawn(AppSpec::new(f.socks, plan), at);
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(1.0));
    if let Some(dir) = std::env::var_os("SIM_LATENCY_TRACE") {
        let path =
            std::path::Path::new(&dir).join(format!("latency-{policy:?}-{burst}-{overlap}.trace"));
        w.dump_trace(&path).expect("trace written");
    }
    let app = &w.apps[a];
    assert!(app.success, "{}", app.summary());
    assert_eq!(app.rtts.len(), rounds as usize);
    app.rtts.clone()
}

fn show(d: &[Duration]) -> String {
    let v: Vec<String> = d
        .iter()
        .map(|x| format!("{:.3} ms", x.as_secs_f64() * 1e3))
        .collect();
    v.join(", ")
}

#[test]
fn latency_added_by_batching() {
    let burst = 4 << 20;
    let rounds = 8;
    let paced_idle = measure(BatchPolicy::LinkPaced, 0, rounds, false);
    let paced_after = measure(BatchPolicy::LinkPaced, burst, rounds, false);
    let paced_behind = measure(BatchPolicy::LinkPaced, burst, 1, true);
    let adaptive_idle = measure(BatchPolicy::Adaptive, 0, rounds, false);
    let adaptive_after = measure(BatchPolicy::Adaptive, burst, rounds, false);
    let adaptive_behind = measure(BatchPolicy::Adaptive, burst, 1, true);
    println!(
        "round trip on a zero-latency 64 MB/s link (100-byte echoes 10 ms apart; transmission \
         alone is a few µs):"
    );
    println!(
        "  LinkPaced, idle connection:                  {}",
        show(&paced_idle)
    );
    println!(
        "  LinkPaced, after a 4 MiB echoed burst:       {}",
        show(&paced_after)
    );
    println!(
        "  LinkPaced, right behind a 4 MiB burst:       {}",
        show(&paced_behind)
    );
    println!(
        "  Adaptive,  idle connection:                  {}",
        show(&adaptive_idle)
    );
    println!(
        "  Adaptive,  after a 4 MiB echoed burst:       {}",
        show(&adaptive_after)
    );
    println!(
        "  Adaptive,  right behind a 4 MiB burst:       {}",
        show(&adaptive_behind)
    );
    let limit = Duration::from_micros(100);
    assert!(
        paced_idle.iter().chain(&paced_after).all(|d| *d < limit),
        "LinkPaced must add no delay on an idle link"
    );
}
