//! Faults under the simulation: links lost in the middle of traffic, reconnection backoff,
//! refused tokens, the idle sweep, slow readers; and the reproducibility of a seed.
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_faults -- <name> --exact`.

use std::time::Duration;

use linksocks_core::session::ClientRole;
use linksocks_core::time::Instant;
use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

/// The delays between a client learning its link is gone and its next attempt, for the
/// attempts after `from`.
fn reconnect_gaps(w: &World, n: NodeIdx, from: Instant) -> Vec<(Instant, Duration)> {
    let node = &w.nodes[n];
    // Each loss is followed by the next attempt.
    node.lost
        .iter()
        .map(|x| x.0)
        .filter(|t| *t >= from)
        .filter_map(|l| {
            let o = node.opened.iter().map(|x| x.0).find(|o| *o > l)?;
            Some((l, o - l))
        })
        .collect()
}

/// The reference's backoff: after an established link is lost, 1 s; after each failed attempt
/// the delay grows x1.5 (1, 1, 1.5, 2.25, ...), capped at 10 min.
fn expected_gaps(k: usize, first_was_ready: bool) -> Vec<Duration> {
    let mut v = Vec::new();
    let mut d = 1.0f64;
    for i in 0..k {
        if i == 0 && first_was_ready {
            v.push(secs(1.0));
            continue;
        }
        v.push(secs(d.min(600.0)));
        d *= 1.5;
    }
    v
}

fn assert_gaps(w: &World, gaps: &[(Instant, Duration)], expect: &[Duration]) {
    for (i, ((at, got), want)) in gaps.iter().zip(expect).enumerate() {
        let diff = if got > want {
            *got - *want
        } else {
            *want - *got
        };
        assert!(
            diff <= Duration::from_micros(1),
            "reconnect attempt {i} (after the loss at {at:?}) came {got:?} later, expected {want:?}; all: {gaps:?}\n{}",
            w.describe()
        );
    }
}

/// A forward client's link drops (or is silently cut) with channels in flight; the server
/// refuses links for a while. In-flight streams end visibly (invariants), the client retries
/// on the reference's backoff, and once it is back new connections work. Requests made while
/// no link is up wait up to 10 s for one.
fn run_link_drop_reconnect(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, c| c.threads = 1);
    let t0 = w.now;
    let n = w.rng.usize(1..15);
    w.spawn_random(f.socks, n, 256 << 10, t0, secs(2.0));
    let partition = w.rng.chance(0.3);
    let cut = plus(t0, 0.1 + 1.9 * w.rng.unit());
    let down_for = if w.rng.chance(0.3) {
        0.0
    } else {
        12.0 * w.rng.unit()
    };
    w.run_until(cut);
    let li = *w.live_links(f.client).first().expect("link");
    if partition {
        w.partition_link(li);
    } else {
        w.drop_link(li);
    }
    // The server refuses links from the cut until `down_for` after the client noticed.
    w.refuse_links_until = plus(cut, 3600.0);
    // Silence for `dead_after` (60 s), checked when a pong is due: within 71 s.
    let noticed_by = plus(cut, 71.0);
    let ok = w.run_until_pred(noticed_by, |w| {
        w.nodes[f.client].lost.iter().any(|(t, _)| *t >= cut)
    });
    assert!(
        ok,
        "the client never noticed its link was gone\n{}",
        w.describe()
    );
    let noticed = w.nodes[f.client]
        .lost
        .iter()
        .map(|x| x.0)
        .find(|t| *t >= cut)
        .unwrap();
    w.refuse_links_until = plus(noticed, down_for);
    // A request while the link is down.
    let waiting = AppSpec::new(f.socks, Plan::Echo { up: 1000 });
    let ask = plus(noticed, 0.1);
    let wa = w.spawn(waiting, ask);
    let deadline = plus(noticed, down_for + 60.0);
    w.wait_ready(f.client, deadline);
    let back = w.now;
    let late = w.spawn_random(f.socks, 5, 64 << 10, back, secs(1.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));

    let gaps = reconnect_gaps(&w, f.client, noticed);
    let expect = expected_gaps(gaps.len(), true);
    assert_gaps(&w, &gaps, &expect);
    for a in late {
        assert!(
            w.apps[a].success,
            "app {a} after the reconnect: {}",
            w.apps[a].summary()
        );
    }
    let app = &w.apps[wa];
    if back <= plus(ask, 9.999) {
        assert!(
            app.success,
            "the link was back {:?} after the request: {}",
            back - ask,
            app.summary()
        );
    } else if back > plus(ask, 10.001) {
        assert_eq!(app.reply, Some(0x03), "no link for 10 s: {}", app.summary());
        let waited = app.reply_at.unwrap() - ask;
        assert!(
            waited >= secs(10.0) && waited <= secs(10.1),
            "waited {waited:?}"
        );
    }
    w
}
sim_test!(link_drop_reconnect, 60, run_link_drop_reconnect);

/// A wrong token: the client stops with Event::Fatal and never tries again.
fn run_auth_failure_fatal(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let sc = w.server_config();
    let server = w.add_server(sc);
    w.server(server, |s, _| s.add_forward_token(Some(FWD_TOKEN.into())))
        .expect("token");
    let mut cc = w.client_config("not-the-token", ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    let c = w.add_client("client", cc);
    w.run_for(secs(120.0));
    let (at, reason) = w.nodes[c].fatal.clone().expect("the client gave up");
    assert!(reason.contains("invalid token"), "{reason}");
    assert!(at < secs(1.0).into_instant(), "gave up at {at:?}");
    let opens = w.nodes[c].opened.len();
    let threads = w.nodes[c].link_ids.len();
    assert_eq!(opens, threads, "no link opened after the refusal");
    assert!(w.nodes[c].client().is_stopped());
    w.check_quiescent();
    w
}
sim_test!(auth_failure_fatal, 30, run_auth_failure_fatal);

/// With retry_auth the client keeps trying on the backoff (1, 1.5, 2.25, ... s) and gets in
/// once the server knows the token; then it works.
fn run_auth_failure_retry(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let sc = w.server_config();
    let server = w.add_server(sc);
    let mut cc = w.client_config(FWD_TOKEN, ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    cc.retry_auth = true;
    cc.threads = 1;
    let c = w.add_client("client", cc);
    let add_at = plus(w.now, 2.0 + 25.0 * w.rng.unit());
    w.call_at(add_at, move |w| {
        w.server(server, |s, _| s.add_forward_token(Some(FWD_TOKEN.into())))
            .expect("token");
    });
    let deadline = plus(add_at, 60.0);
    w.wait_ready(c, deadline);
    let ready = w.now;
    assert!(w.nodes[c].fatal.is_none());
    let gaps = reconnect_gaps(&w, c, Instant::ZERO);
    let expect = expected_gaps(gaps.len(), false);
    assert_gaps(&w, &gaps, &expect);
    let last_gap = gaps.last().map(|g| g.1).unwrap_or_default();
    assert!(
        ready <= add_at + last_gap + secs(1.0),
        "ready at {ready:?}, token added at {add_at:?}"
    );
    let socks = w.wait_listener(c, plus(w.now, 5.0));
    let at = w.now;
    w.spawn_random(socks, 3, 16 << 10, at, secs(0.5));
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(auth_failure_retry, 30, run_auth_failure_retry);

/// Idle connections are ended by the sweep 12 h after their last activity (checked every
/// 60 s), with an error on both ends; a connection with traffic every 20 min survives.
fn run_idle_sweep(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let reverse = w.rng.chance(0.3);
    let socks = if reverse {
        w.setup_reverse(1, false, |_, _, _| {}).socks
    } else {
        w.setup_forward(|_, _, _| {}).socks
    };
    let t0 = w.now;
    let k = w.rng.usize(1..4);
    let idle: Vec<usize> = (0..k)
        .map(|_| {
            let at = plus(t0, 5.0 * w.rng.unit());
            w.spawn(AppSpec::new(socks, Plan::Hold), at)
        })
        .collect();
    let busy = w.spawn(
        AppSpec::new(
            socks,
            Plan::PingPong {
                burst: 0,
                rounds: 40,
                size: 10,
                think: secs(20.0 * 60.0),
                overlap: false,
            },
        ),
        t0,
    );
    let deadline = plus(t0, 15.0 * 3600.0);
    w.finish(deadline, secs(5.0));
    assert!(w.apps[busy].success, "{}", w.apps[busy].summary());
    let twelve = 12.0 * 3600.0;
    for a in idle {
        let app = &w.apps[a];
        assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
        let from = app.reply_at.unwrap();
        let closed = app.done_at.unwrap();
        assert!(
            closed >= plus(from, twelve - 1.0) && closed <= plus(from, twelve + 62.0),
            "closed at {closed:?}, idle since {from:?}"
        );
        for t in &app.targets {
            assert_eq!(
                w.targets[*t].closed_by_machine,
                Some(true),
                "the target is reset too"
            );
        }
    }
    w
}
sim_test!(idle_sweep_12h, 15, run_idle_sweep);

/// Slow readers (applications downloading, targets of uploads) under small water marks: the
/// memory bounds hold at every step (checked by the world), nothing is lost, and the other
/// connections on the same link finish too.
fn run_slow_reader(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|w, s, c| {
        for d in [&mut s.data, &mut c.data] {
            // Without flow control (a reference peer) a slow reader holds its whole link, so
            // the other connections could not be required to finish.
            d.channel_flow = true;
            d.conn_high_water = w.rng.log_between(16 << 10, 1 << 20) as usize;
            d.conn_low_water = d.conn_high_water / 4;
            d.link_high_water = w.rng.log_between(32 << 10, 4 << 20) as usize;
            d.link_low_water = d.link_high_water / 4;
        }
    });
    let t0 = w.now;
    let k = w.rng.usize(1..4);
    for _ in 0..k {
        // Reads at 64 KiB/s .. 1 MiB/s: each pause stays well under the 10 s ping deadline.
        let every = Duration::from_millis(w.rng.between(5, 50));
        let per_sec = w.rng.log_between(64 << 10, 1 << 20);
        let bytes = (per_sec as f64 * every.as_secs_f64()).max(1.0) as usize;
        let slow = ReadRate::Slow { bytes, every };
        let size = w.rng.log_between(256 << 10, 2 << 20);
        let mut spec = if w.rng.chance(0.5) {
            let mut s = AppSpec::new(
                f.socks,
                Plan::Download {
                    down: size,
                    reset: false,
                },
            );
            s.read = slow;
            s
        } else {
            let mut s = AppSpec::new(f.socks, Plan::Upload { up: size });
            s.target_read = slow;
            s
        };
        spec.compressible = w.rng.chance(0.3);
        w.spawn(spec, t0);
    }
    let m = w.rng.usize(0..8);
    w.spawn_random(f.socks, m, 64 << 10, t0, secs(5.0));
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(slow_reader_bounded, 30, run_slow_reader);

/// One seed gives one run: a forward client with many channels open (idle ones among them)
/// loses its link, reconnects, and the rest is swept after 12 h. Every seed runs twice and the
/// two histories (fingerprints of every event and output) must be equal. (The other scenarios
/// check this on every fourth seed.)
fn run_same_seed_same_run(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    let t0 = w.now;
    let n = w.rng.usize(1..10);
    w.spawn_random(f.socks, n, 64 << 10, t0, secs(1.0));
    // Many channels open when the link drops or the sweep runs: their ends are produced by
    // iterating the machines' tables.
    for _ in 0..w.rng.usize(2..12) {
        let at = plus(t0, if w.rng.chance(0.5) { 0.0 } else { 1.0 });
        w.spawn(AppSpec::new(f.socks, Plan::Hold), at);
    }
    w.run_until(plus(t0, 0.5));
    for li in w.live_links(f.client) {
        w.drop_link(li);
    }
    let deadline = plus(w.now, 13.0 * 3600.0);
    w.finish(deadline, secs(5.0));
    w
}

#[test]
fn same_seed_same_run() {
    run_seeds_with(
        env!("CARGO_CRATE_NAME"),
        "same_seed_same_run",
        30,
        1,
        run_same_seed_same_run,
    );
}

trait IntoInstant {
    fn into_instant(self) -> Instant;
}
impl IntoInstant for Duration {
    fn into_instant(self) -> Instant {
        Instant::from_duration(self)
    }
}

/// Closing a client and the server (each twice) in the middle of traffic: no panic, every
/// stream ends visibly, nothing is left; the closed client never reconnects.
fn run_shutdown_twice(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    let t0 = w.now;
    let n = w.rng.usize(1..12);
    w.spawn_random(f.socks, n, 128 << 10, t0, secs(2.0));
    let at = plus(t0, 2.0 * w.rng.unit());
    w.run_until(at);
    let client = f.client;
    let server = f.server;
    let server_first = w.rng.chance(0.5);
    let close_client = |w: &mut World| {
        w.with(client, |n, now| n.client().close(now));
        w.with(client, |n, now| n.client().close(now));
    };
    let close_server = |w: &mut World| {
        w.refuse_links_until = Instant::from_nanos(u64::MAX);
        w.server(server, |s, now| s.close(now));
        w.server(server, |s, now| s.close(now));
    };
    let pause = secs(3.0 * w.rng.unit());
    if server_first {
        close_server(&mut w);
        w.run_for(pause);
        close_client(&mut w);
    } else {
        close_client(&mut w);
        w.run_for(pause);
        close_server(&mut w);
    }
    let closed = w.now;
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(30.0));
    assert!(w.nodes[client].client().is_stopped());
    let reopened = w.nodes[client]
        .opened
        .iter()
        .filter(|(t, _)| *t > closed)
        .count();
    assert_eq!(reopened, 0, "a closed client opened links again");
    w
}
sim_test!(shutdown_twice, 40, run_shutdown_twice);
