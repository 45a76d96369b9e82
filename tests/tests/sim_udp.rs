//! UDP ASSOCIATE under the simulation: datagrams both ways to IPv4, IPv6 and domain echo
//! targets, the relay restricted to the application, the association's end.
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_udp -- <name> --exact`.

use std::net::SocketAddr;
use std::time::Duration;

use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

fn random_udp_plan(w: &mut World, close_control: bool) -> UdpPlan {
    UdpPlan {
        datagrams: w.rng.between(1, 20) as u32,
        // Mostly small, sometimes over the reference's 4,096-byte truncation, up to 64 KB.
        max_size: *w.rng.pick(&[512, 1400, 4096, 9000, 65_000]),
        gap: Duration::from_micros(w.rng.between(0, 50_000)),
        name_addr: w.rng.chance(0.5),
        close_control,
        stranger: w.rng.chance(0.3),
    }
}

/// UDP applications (and some TCP ones) through a SOCKS listener; every datagram's echo comes
/// back intact, from the right source, only to the application; closing the control
/// connection closes the relay on both sides.
fn udp_lifecycle(w: &mut World, socks: SocketAddr) {
    let k = w.rng.usize(1..6);
    let mut udp_apps = Vec::new();
    for _ in 0..k {
        let plan = random_udp_plan(w, true);
        let at = plus(w.now, w.rng.unit());
        let spec = AppSpec::new(socks, Plan::Udp(plan));
        udp_apps.push(w.spawn(spec, at));
    }
    let m = w.rng.usize(0..4);
    let start = w.now;
    w.spawn_random(socks, m, 32 << 10, start, secs(1.0));
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    let strangers = udp_apps
        .iter()
        .filter(|a| matches!(&w.apps[**a].spec.plan, Plan::Udp(p) if p.stranger))
        .count() as u64;
    let dropped: u64 = w
        .nodes
        .iter()
        .map(|n| n.plane().stats.udp_dropped_foreign)
        .sum();
    assert_eq!(
        dropped, strangers,
        "datagrams from strangers dropped by the relays"
    );
}

fn run_udp_forward(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|w, _, c| c.fast_open = w.rng.chance(0.3));
    udp_lifecycle(&mut w, f.socks);
    w
}
sim_test!(udp_forward, 60, run_udp_forward);

fn run_udp_reverse(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let r = w.setup_reverse(k, false, |w, s, _| s.fast_open = w.rng.chance(0.3));
    udp_lifecycle(&mut w, r.socks);
    w
}
sim_test!(udp_reverse, 60, run_udp_reverse);

/// An association left idle (control connection open, no datagrams) is ended by the idle
/// sweep after 12 h (checked every 60 s): the control connection is closed with an error, both
/// relays are closed.
fn run_udp_idle_timeout(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    let mut plan = random_udp_plan(&mut w, false);
    plan.datagrams = plan.datagrams.min(3);
    let at = w.now;
    let a = w.spawn(AppSpec::new(f.socks, Plan::Udp(plan)), at);
    let deadline = plus(w.now, 13.0 * 3600.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    assert!(app.success, "{}", app.summary());
    assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
    let idle_from = app.reply_at.unwrap();
    let closed = app.done_at.unwrap();
    let twelve = 12.0 * 3600.0;
    assert!(
        closed >= plus(idle_from, twelve) && closed <= plus(idle_from, twelve + 62.0),
        "closed at {closed:?}, idle since about {idle_from:?}"
    );
    w
}
sim_test!(udp_idle_timeout, 15, run_udp_idle_timeout);
