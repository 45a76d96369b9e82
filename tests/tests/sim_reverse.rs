//! Reverse mode under the simulation: SOCKS5 on the server, providers dial.
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_reverse -- <name> --exact`.

use linksocks_core::session::{ClientRole, Event, ReverseTokenSpec};
use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

/// A random mix of applications on the server's SOCKS port, served by one to three providers.
fn run_reverse_mix(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..4);
    let r = w.setup_reverse(k, false, |w, s, _| s.fast_open = w.rng.chance(0.3));
    let n = w.rng.usize(1..20);
    let start = w.now;
    w.spawn_random(r.socks, n, 256 << 10, start, secs(2.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(reverse_mix, 80, run_reverse_mix);

/// Three providers (one link each): requests are spread round robin, each provider serves
/// floor(n/3) or ceil(n/3) of them.
fn run_reverse_round_robin(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let r = w.setup_reverse(3, false, |_, _, ps| {
        for p in ps.iter_mut() {
            p.threads = 1;
        }
    });
    let n = w.rng.usize(3..31);
    let start = w.now;
    let apps = w.spawn_random(r.socks, n, 16 << 10, start, secs(1.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    let mut per = vec![0usize; 3];
    for a in apps {
        let nodes = w.dial_nodes(a);
        assert_eq!(nodes.len(), 1, "app {a} dialled {nodes:?}");
        let i = r
            .providers
            .iter()
            .position(|p| *p == nodes[0])
            .expect("a provider dialled");
        per[i] += 1;
    }
    let (lo, hi) = (n / 3, n.div_ceil(3));
    assert!(
        per.iter().all(|c| *c >= lo && *c <= hi),
        "{n} requests spread {per:?} over three providers (round robin gives {lo}..={hi} each)"
    );
    w
}
sim_test!(reverse_round_robin, 50, run_reverse_round_robin);

/// Provider churn under load: one provider's link drops. Its channels end with an error on
/// both ends (never a silent end), requests made while it is away go to the others, it comes
/// back (reconnect after 1 s) and serves again; every application not hit by the drop succeeds.
fn run_provider_churn(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let r = w.setup_reverse(3, false, |_, _, ps| {
        for p in ps.iter_mut() {
            p.threads = 1;
        }
    });
    let t0 = w.now;
    let n = w.rng.usize(10..40);
    w.spawn_random(r.socks, n, 256 << 10, t0, secs(3.0));
    let victim = *w.rng.pick(&r.providers);
    let drop_at = plus(t0, 0.3 + 2.5 * w.rng.unit());
    w.run_until(drop_at);
    let li = *w.live_links(victim).first().expect("victim link");
    w.drop_link(li);
    let dropped = w.now;
    // Requests after it came back are served by all three again.
    let back = plus(dropped, 10.0);
    let late = w.spawn_random(r.socks, 9, 16 << 10, back, secs(1.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));

    let ready_again = w.nodes[victim]
        .events
        .iter()
        .filter(|(t, e)| *t > dropped && matches!(e, Event::LinkReady { .. }))
        .map(|(t, _)| *t)
        .next()
        .expect("the provider reconnected");
    assert!(
        ready_again <= plus(dropped, 2.0),
        "reconnected at {ready_again:?}, dropped at {dropped:?}"
    );
    for d in &w.dials {
        assert!(
            !(d.node == victim && d.at > dropped && d.at < ready_again),
            "a request was dialled by the dropped provider while it was away: {d:?}"
        );
    }
    for (a, app) in w.apps.iter().enumerate() {
        if app.success {
            continue;
        }
        // Only applications whose channel used the dropped link may fail, and only visibly:
        // a failure reply or a reset at or after the drop, or (an upload the application had
        // already closed) its target reset by the drop.
        let on_victim = w.dial_nodes(a).contains(&victim) || app.targets.is_empty();
        let seen = (app.closed_by_machine == Some(true) || matches!(app.hs, Hs::Failed(_)))
            && app.done_at.is_some_and(|t| t >= dropped);
        let upload_lost = app.closed_self == Some(false)
            && app
                .targets
                .iter()
                .all(|t| w.targets[*t].closed_by_machine == Some(true));
        assert!(
            on_victim && (seen || upload_lost),
            "app {a} failed without being hit by the drop: {}\n{}",
            app.summary(),
            w.describe()
        );
    }
    for t in &w.targets {
        if t.node == victim && t.created < dropped && t.closed_self.is_none() {
            if let Some(abort) = t.closed_by_machine {
                let app = &w.apps[t.app];
                assert!(
                    abort || app.success || app.closed_self == Some(false),
                    "a target on the dropped provider ended cleanly: {}",
                    app.summary()
                );
            }
        }
    }
    let mut served_late = vec![0; 3];
    for a in late {
        assert!(
            w.apps[a].success,
            "app {a} after recovery: {}",
            w.apps[a].summary()
        );
        let i = r
            .providers
            .iter()
            .position(|p| w.dial_nodes(a).contains(p))
            .expect("dialled");
        served_late[i] += 1;
    }
    assert!(
        served_late.iter().all(|c| *c == 3),
        "after recovery 9 requests spread {served_late:?}"
    );
    w
}
sim_test!(reverse_provider_churn, 50, run_provider_churn);

/// No provider: a request waits ProviderWait (10 s), then gets reply 0x03. A provider that
/// appears within the wait serves the request.
fn run_reverse_no_provider(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let mut sc = w.server_config();
    sc.socks_nowait = true;
    let server = w.add_server(sc);
    let listen = w.socks_listen(false);
    w.server(server, |s, _| {
        s.add_reverse_token(ReverseTokenSpec {
            token: Some(REV_TOKEN.into()),
            socks: Some(listen),
            allow_manage_connector: false,
        })
    })
    .expect("token");
    let deadline = plus(w.now, 5.0);
    let socks = w.wait_listener(server, deadline);
    // Provider arrives: never, within the wait, or after it.
    let case = w.rng.usize(0..3);
    let arrive = match case {
        0 => None,
        1 => Some(0.5 + 8.0 * w.rng.unit()),
        _ => Some(10.5 + 5.0 * w.rng.unit()),
    };
    let start = plus(w.now, w.rng.unit());
    let mut spec = AppSpec::new(
        socks,
        Plan::Echo {
            up: w.rng.log_between(1, 64 << 10),
        },
    );
    spec.pipelined = w.rng.chance(0.3);
    let a = w.spawn(spec, start);
    if let Some(at) = arrive {
        let pc = w.client_config(REV_TOKEN, ClientRole::Provider);
        w.call_at(plus(start, at), move |w| {
            w.add_client("provider", pc);
        });
    }
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    match case {
        1 => assert!(app.success, "a provider arrived in time: {}", app.summary()),
        _ => {
            assert_eq!(app.reply, Some(0x03), "{}", app.summary());
            let waited = app.reply_at.unwrap() - app.started_at.unwrap();
            assert!(
                waited >= secs(10.0) && waited <= secs(10.1),
                "replied 0x03 after {waited:?}: {}",
                app.summary()
            );
            assert!(app.targets.is_empty());
        }
    }
    w
}
sim_test!(reverse_no_provider_reply_03, 60, run_reverse_no_provider);

/// Username/password on the server's reverse SOCKS listener.
fn run_reverse_socks_auth(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let r = w.setup_reverse(k, true, |_, _, _| {});
    w.check_socks_auth(r.socks);
    w
}
sim_test!(reverse_socks_auth, 40, run_reverse_socks_auth);

/// Removing the reverse token under load: the server closes its providers' links and its
/// SOCKS listener; channels in flight end visibly (the invariants), new applications find no
/// listener, and the providers, refused on reconnection, stop.
fn run_reverse_token_removed(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let r = w.setup_reverse(k, false, |_, _, _| {});
    let t0 = w.now;
    let n = w.rng.usize(1..15);
    w.spawn_random(r.socks, n, 128 << 10, t0, secs(2.0));
    let at = plus(t0, 2.0 * w.rng.unit());
    w.run_until(at);
    let server = r.server;
    w.server(server, |s, now| s.remove_token(now, REV_TOKEN))
        .expect("removed");
    let removed = w.now;
    let late = w.spawn(
        AppSpec::new(r.socks, Plan::Echo { up: 10 }),
        plus(removed, 1.0),
    );
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(10.0));
    assert_eq!(
        w.apps[late].note.as_deref(),
        Some("no listener"),
        "{}",
        w.apps[late].summary()
    );
    for p in r.providers {
        let (at, reason) = w.nodes[p].fatal.clone().expect("the provider stopped");
        assert!(at > removed && reason.contains("invalid token"), "{reason}");
    }
    w
}
sim_test!(reverse_token_removed, 40, run_reverse_token_removed);
