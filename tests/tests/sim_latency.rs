//! The delay the machines themselves add to a request/response round trip.
//!
//! On a simulated link with zero latency, infinite bandwidth and instant local sockets, every
//! microsecond of a round trip is added by the machines (batching). An application exchanges
//! 100-byte echoes, 10 ms apart, on an idle connection and right after an echoed bulk burst.
//! With `BatchPolicy::LinkPaced` (the default) nothing may be added; `BatchPolicy::Adaptive`
//! (the reference's SendManager) holds data once a flow has been fast. Both are printed:
//! `cargo test -p linksocks-tests --test sim_latency -- --nocapture`.

use std::time::Duration;

use linksocks_core::session::{BatchPolicy, DataConfig};
use linksocks_tests::sim::*;

/// Round trip times of `rounds` echoes after a burst of `burst` bytes (with `overlap`, the
/// first echo is sent right behind the burst).
fn measure(policy: BatchPolicy, burst: u64, rounds: u32, overlap: bool) -> Vec<Duration> {
    let mut w = World::new(7, Some(NetProfile::ideal()));
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
        .map(|x| format!("{:.1} ms", x.as_secs_f64() * 1e3))
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
    println!("round trip added by the machines (zero-latency link, 100-byte echoes 10 ms apart):");
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
    assert!(
        paced_idle.iter().chain(&paced_after).all(|d| d.is_zero()),
        "LinkPaced must add no delay on an idle link"
    );
}
