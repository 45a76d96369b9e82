//! UDP ASSOCIATE under the simulation: datagrams both ways to IPv4, IPv6 and domain echo
//! targets, the relay restricted to the application, gzip above the threshold, the
//! association's end (control connection closed at any moment, idle timeout).
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_udp -- <name> --exact`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use linksocks_core::session::{DataConfig, Timings};

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

/// Short idle timeout (20 s, swept every second), in forward or reverse mode: an association
/// left idle is ended by the sweep (control connection reset, relay and far-side socket
/// closed: the end-of-run check finds no UDP socket left on any node) no sooner than the idle
/// timeout after its last datagram; an association that keeps sending, each datagram well
/// within the idle timeout of the last, lives through several idle timeouts and ends only when
/// its application closes it.
fn run_udp_idle_short(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let idle = secs(20.0);
    let set = |t: &mut Timings| {
        t.idle_timeout = idle;
        t.cleaner_interval = secs(1.0);
    };
    let socks = if w.rng.chance(0.5) {
        w.setup_forward(|_, s, c| {
            set(&mut s.timings);
            set(&mut c.timings);
        })
        .socks
    } else {
        let k = w.rng.usize(1..3);
        w.setup_reverse(k, false, |_, s, ps| {
            set(&mut s.timings);
            ps.iter_mut().for_each(|p| set(&mut p.timings));
        })
        .socks
    };
    let mut quiet = random_udp_plan(&mut w, false);
    quiet.datagrams = quiet.datagrams.min(3);
    quiet.gap = Duration::ZERO;
    let mut busy = random_udp_plan(&mut w, true);
    // Three idle timeouts of traffic, a datagram every 2 to 5 s.
    busy.gap = secs(w.rng.between(2, 5) as f64);
    busy.datagrams = (60.0 / busy.gap.as_secs_f64()).ceil() as u32 + 1;
    let at = w.now;
    let q = w.spawn(AppSpec::new(socks, Plan::Udp(quiet)), at);
    let b = w.spawn(AppSpec::new(socks, Plan::Udp(busy)), at);
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();

    let app = &w.apps[q];
    assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
    let (from, closed) = (app.reply_at.unwrap(), app.done_at.unwrap());
    // Its last echo is back within about a second of the reply (at most 3 datagrams of up to
    // 64 KB, links of 1 MiB/s or more), and the sweep runs every second.
    assert!(
        closed >= from + idle && closed <= from + idle + secs(1.0 + 1.0 + 2.0),
        "idle association closed at {closed:?}, idle since about {from:?}"
    );
    let app = &w.apps[b];
    assert_eq!(app.closed_by_machine, None, "{}", app.summary());
    assert!(app.closed_self.is_some(), "{}", app.summary());
    let lived = app.done_at.unwrap() - app.reply_at.unwrap();
    assert!(lived >= secs(60.0), "busy association lived {lived:?}");
    w
}
sim_test!(udp_idle_short, 30, run_udp_idle_short);

/// Applications close (cleanly or with a reset) at random moments of their exchange: before
/// the reply, with datagrams in flight both ways, after the last echo. Every association ends
/// on both sides: no channel, no relay, no far-side socket is left on any node, and nothing
/// reaches an application after it closed.
fn run_udp_close_in_flight(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let socks = if w.rng.chance(0.5) {
        w.setup_forward(|w, _, c| c.fast_open = w.rng.chance(0.3))
            .socks
    } else {
        let k = w.rng.usize(1..3);
        w.setup_reverse(k, false, |w, s, _| s.fast_open = w.rng.chance(0.3))
            .socks
    };
    let k = w.rng.usize(1..8);
    for _ in 0..k {
        let mut plan = random_udp_plan(&mut w, true);
        plan.datagrams = w.rng.between(5, 40) as u32;
        let run_for = plan.gap.as_secs_f64() * plan.datagrams as f64 + 0.2;
        let at = plus(w.now, w.rng.unit());
        let close_after = secs(w.rng.unit() * run_for);
        let mut spec = AppSpec::new(socks, Plan::Udp(plan));
        if w.rng.chance(0.3) {
            spec.reset_after = Some(close_after);
            w.spawn(spec, at);
        } else {
            let a = w.spawn(spec, at);
            w.call_at(at + close_after, move |w| w.app_close(a, None));
        }
    }
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    w
}
sim_test!(udp_close_in_flight, 60, run_udp_close_in_flight);

/// Gzip applies to UDP as to TCP: with a small compression threshold and sampling off (as the
/// reference), every Data frame of an association whose payload is at or over the threshold
/// is gzip-compressed, every other one is not (counted on the wire, both ways), and every echo
/// comes back intact.
fn run_udp_gzip(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let threshold = w.rng.log_between(16, 16 << 10) as usize;
    let set = |d: &mut DataConfig| {
        d.compression_threshold = threshold;
        d.compression_sampling = false;
    };
    // One link per client, so the counting filters below see every frame.
    let clients = if w.rng.chance(0.5) {
        let f = w.setup_forward(|_, s, c| {
            set(&mut s.data);
            set(&mut c.data);
            c.threads = 1;
        });
        (f.socks, vec![f.client])
    } else {
        let k = w.rng.usize(1..3);
        let r = w.setup_reverse(k, false, |_, s, ps| {
            set(&mut s.data);
            for p in ps.iter_mut() {
                set(&mut p.data);
                p.threads = 1;
            }
        });
        (r.socks, r.providers)
    };
    let (socks, clients) = clients;
    // (UDP Data frames, of them gzip-compressed), both directions together.
    let seen = Rc::new(Cell::new((0u64, 0u64)));
    for c in clients {
        let links = w.live_links(c);
        assert_eq!(links.len(), 1, "links of node {c}");
        for side in 0..2 {
            let seen = seen.clone();
            w.filter_link(
                links[0],
                side,
                Box::new(move |f: &[u8]| {
                    // Version, type Data, protocol UDP, channel (16), compression.
                    if f.len() > 19 && f[1] == 0x04 && f[2] == 0x02 {
                        let (n, z) = seen.get();
                        seen.set((n + 1, z + u64::from(f[19] == 0x01)));
                    }
                    false
                }),
            );
        }
    }
    let k = w.rng.usize(1..5);
    let mut apps = Vec::new();
    for _ in 0..k {
        let mut plan = random_udp_plan(&mut w, true);
        plan.stranger = false;
        let at = plus(w.now, w.rng.unit());
        apps.push(w.spawn(AppSpec::new(socks, Plan::Udp(plan)), at));
    }
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    let sizes: Vec<usize> = apps
        .iter()
        .flat_map(|&a| w.apps[a].udp.as_ref().unwrap().sent.iter().map(|s| s.1))
        .collect();
    let big = sizes.iter().filter(|&&n| n >= threshold).count() as u64;
    assert_eq!(
        seen.get(),
        (2 * sizes.len() as u64, 2 * big),
        "(UDP Data frames, gzip ones) for {} datagrams, {big} at or over {threshold} bytes",
        sizes.len()
    );
    w
}
sim_test!(udp_gzip, 60, run_udp_gzip);
