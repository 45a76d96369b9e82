//! Forward mode under the simulation: SOCKS5 on the client, the server dials.
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_forward -- <name> --exact`.

use std::time::Duration;

use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

/// Many concurrent applications of every kind (echo, download, upload, both ways; IPv4, IPv6
/// and domain targets; pipelined or not; slow readers) through one forward client.
fn run_forward_mix(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    let n = w.rng.usize(1..25);
    let start = w.now;
    w.spawn_random(f.socks, n, 256 << 10, start, secs(2.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(forward_mix_many_connections, 100, run_forward_mix);

/// A few big transfers both ways, with large reads so that Data messages reach the gzip
/// threshold (compressible and incompressible payloads).
fn run_forward_bulk(seed: u64) -> World {
    let mut w = World::new(seed, None);
    w.net.max_read = *w.rng.pick(&[64 << 10, 256 << 10, 1 << 20]);
    w.net.max_write = w.net.max_read;
    w.net.sndbuf = w.net.sndbuf.max(1 << 20);
    let f = w.setup_forward(|w, s, c| {
        if w.rng.chance(0.5) {
            // Big batches: one read becomes one Data message of up to 1 MiB.
            s.data.max_batch = 1 << 20;
            c.data.max_batch = 1 << 20;
            s.data.conn_high_water = 4 << 20;
            c.data.conn_high_water = 4 << 20;
        }
    });
    let n = w.rng.usize(1..4);
    for _ in 0..n {
        let up = w.rng.log_between(1 << 20, 3 << 20);
        let down = w.rng.log_between(1 << 20, 3 << 20);
        let plan = match w.rng.usize(0..3) {
            0 => Plan::Echo { up },
            1 => Plan::Download { down, reset: false },
            _ => Plan::Duplex { up, down },
        };
        let mut spec = AppSpec::new(f.socks, plan);
        spec.compressible = w.rng.chance(0.5);
        spec.form = *w.rng.pick(&[Form::V4, Form::V6, Form::Domain]);
        let at = w.now;
        w.spawn(spec, at);
    }
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(forward_bulk_both_directions, 20, run_forward_bulk);

/// FastOpen on the client: success is replied at once and data flows before the server's
/// ConnectResponse; everything still arrives.
fn run_fast_open_success(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, c| c.fast_open = true);
    let n = w.rng.usize(1..15);
    let start = w.now;
    w.spawn_random(f.socks, n, 128 << 10, start, secs(1.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(fast_open_success, 60, run_fast_open_success);

/// FastOpen, the target refuses: the application got success at once and then sees its
/// connection closed with an error (never a clean end); the target was never reached.
fn run_fast_open_refused(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, c| c.fast_open = true);
    let mut apps = Vec::new();
    for _ in 0..w.rng.usize(1..5) {
        let up = w.rng.log_between(1, 64 << 10);
        let spec = World::spec_dial(f.socks, Plan::Echo { up }, Dial::Refuse);
        let at = plus(w.now, w.rng.unit());
        apps.push(w.spawn(spec, at));
    }
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    for a in apps {
        let app = &w.apps[a];
        assert_eq!(
            app.reply,
            Some(0),
            "FastOpen replies success at once: {}",
            app.summary()
        );
        assert_eq!(
            app.closed_by_machine,
            Some(true),
            "closed with an error: {}",
            app.summary()
        );
        assert!(app.targets.is_empty());
        // Closed within a few round trips, not after a timeout.
        let took = app.done_at.unwrap() - app.reply_at.unwrap();
        assert!(took < secs(2.0), "closed after {took:?}: {}", app.summary());
    }
    w
}
sim_test!(fast_open_refused, 50, run_fast_open_refused);

/// FastOpen, the target never answers: the dialling side gives up after ConnectTimeout
/// (10 s) and the application's connection is closed with an error then.
fn run_fast_open_target_silent(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, c| c.fast_open = true);
    let up = w.rng.log_between(1, 16 << 10);
    let spec = World::spec_dial(f.socks, Plan::Echo { up }, Dial::BlackHole);
    let at = w.now;
    let a = w.spawn(spec, at);
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    assert_eq!(app.reply, Some(0), "{}", app.summary());
    assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
    let took = app.done_at.unwrap() - app.reply_at.unwrap();
    assert!(
        took >= secs(9.99) && took < secs(11.0),
        "closed {took:?} after the reply (expected ConnectTimeout = 10 s): {}",
        app.summary()
    );
    w
}
sim_test!(fast_open_target_silent, 30, run_fast_open_target_silent);

/// FastOpen, the far side never sends a ConnectResponse at all (frames dropped): the SOCKS
/// side's guard closes the connection with an error ConnectTimeout + 5 s = 15 s after the
/// request, of virtual time.
fn run_fast_open_peer_silent(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, c| c.fast_open = true);
    for li in w.live_links(f.client) {
        w.filter_link(li, 1, Box::new(|fr: &[u8]| fr.get(1) == Some(&0x05)));
    }
    // An idle connection: still open when the guard fires.
    let spec = AppSpec::new(f.socks, Plan::Hold);
    let at = w.now;
    let a = w.spawn(spec, at);
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    assert_eq!(app.reply, Some(0), "{}", app.summary());
    assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
    let took = app.done_at.unwrap() - app.reply_at.unwrap();
    let slack = w.net.local_latency * 4 + Duration::from_millis(1);
    assert!(
        took >= secs(15.0) - slack && took <= secs(15.0) + slack,
        "closed {took:?} after the reply (expected 15 s): {}",
        app.summary()
    );
    w
}
sim_test!(fast_open_peer_silent, 30, run_fast_open_peer_silent);

/// Without FastOpen a failed connect gets SOCKS reply 0x04 and a clean close: at once when the
/// target refuses, after ConnectTimeout (10 s) when it never answers, after 15 s when the far
/// side never answers.
fn run_connect_failure_reply_04(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    let case = w.rng.usize(0..3);
    if case == 2 {
        for li in w.live_links(f.client) {
            w.filter_link(li, 1, Box::new(|fr: &[u8]| fr.get(1) == Some(&0x05)));
        }
    }
    let dial = [Dial::Refuse, Dial::BlackHole, Dial::Accept][case];
    let mut spec = World::spec_dial(f.socks, Plan::Echo { up: 100 }, dial);
    spec.form = *w.rng.pick(&[Form::V4, Form::V6, Form::Domain]);
    spec.pipelined = w.rng.chance(0.3);
    let at = w.now;
    let a = w.spawn(spec, at);
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    assert_eq!(app.reply, Some(0x04), "{}", app.summary());
    assert_eq!(app.replies, 1);
    // Closed after the reply; when the far side never answered the core resets the socket
    // (reply first), otherwise it closes it cleanly.
    if case == 2 {
        assert!(app.closed_by_machine.is_some(), "{}", app.summary());
    } else {
        assert_eq!(app.closed_by_machine, Some(false), "{}", app.summary());
    }
    let took = app.reply_at.unwrap() - app.started_at.unwrap();
    let (lo, hi) = match case {
        0 => (secs(0.0), secs(1.0)),
        1 => (secs(9.99), secs(11.0)),
        _ => (secs(14.9), secs(15.1)),
    };
    assert!(
        took >= lo && took <= hi,
        "case {case}: reply after {took:?}: {}",
        app.summary()
    );
    w
}
sim_test!(connect_failure_reply_04, 60, run_connect_failure_reply_04);

/// A SOCKS listener with username/password: the right pair passes, a wrong pair gets `01 01`
/// and a close, an application offering only "no auth" gets `05 FF`.
fn run_socks_auth_forward(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|w, _, c| c.socks = Some(w.socks_listen(true)));
    w.check_socks_auth(f.socks);
    w
}
sim_test!(socks_auth_forward, 40, run_socks_auth_forward);

/// Resets in the middle of streams, beside normal traffic (forward or reverse mode): targets
/// that reset after sending part of a download, applications that reset while transferring.
/// The far end of each reset sees an error (never a clean end); everything else succeeds.
fn run_resets_mid_stream(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let socks = if w.rng.chance(0.5) {
        w.setup_forward(|w, _, c| c.fast_open = w.rng.chance(0.3))
            .socks
    } else {
        let k = w.rng.usize(1..3);
        w.setup_reverse(k, false, |_, _, _| {}).socks
    };
    let t0 = w.now;
    let n = w.rng.usize(0..10);
    let normal = w.spawn_random(socks, n, 128 << 10, t0, secs(2.0));
    let mut target_resets = Vec::new();
    let mut app_resets = Vec::new();
    for _ in 0..w.rng.usize(1..6) {
        let at = plus(t0, 2.0 * w.rng.unit());
        if w.rng.chance(0.5) {
            let down = w.rng.log_between(1, 256 << 10);
            let spec = AppSpec::new(socks, Plan::Download { down, reset: true });
            target_resets.push(w.spawn(spec, at));
        } else {
            let mut spec = w.random_tcp_spec(socks, 1 << 20);
            spec.pipelined = false;
            spec.reset_after = Some(Duration::from_micros(w.rng.between(0, 200_000)));
            app_resets.push(w.spawn(spec, at));
        }
    }
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    for a in normal {
        assert!(w.apps[a].success, "app {a}: {}", w.apps[a].summary());
    }
    for a in target_resets {
        let app = &w.apps[a];
        assert_eq!(
            app.closed_by_machine,
            Some(true),
            "the target reset: {}",
            app.summary()
        );
    }
    for a in app_resets {
        let app = &w.apps[a];
        if app.closed_self != Some(true) {
            continue; // it finished before its reset was due
        }
        for t in &app.targets {
            let tg = &w.targets[*t];
            assert!(
                tg.closed_self.is_some() || tg.closed_by_machine == Some(true),
                "the application reset, its target must see an error: {}",
                app.summary()
            );
        }
    }
    w
}
sim_test!(resets_mid_stream, 50, run_resets_mid_stream);
