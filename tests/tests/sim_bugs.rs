//! Reproductions of the core bugs the simulation found, one scenario each, kept as regression
//! tests now that they are fixed (core commit 87c3d85; bug 6, head-of-line blocking, by
//! per-channel flow control). A newly found bug gets its scenario here, `#[ignore]`d until
//! fixed (run it with `cargo test -p linksocks-tests --test sim_bugs -- --ignored`).
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_bugs -- <name> --exact --include-ignored`.

use std::net::SocketAddr;
use std::time::Duration;

use linksocks_core::session::{ClientConfig, ClientRole, Event, ReverseTokenSpec};
use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

// ---------------------------------------------------------------------------------- bug 1

/// Bug 1: a SOCKS-side socket paused for holding too much early data (pipelined data before
/// the ConnectResponse, over `conn_high_water`) is never resumed when the channel opens while
/// its link is over `link_high_water`: `Plane::open_channel` only resumes it `if
/// !link_over(link)`, and `pause_conn_read` returns early for an already-paused socket, so it
/// is never put on the link's `paused_readers`. The rest of the upload and the EOF are never
/// read; the channel hangs forever (found as seed 17 of the forward mix).
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_early_data_pause_never_resumed(seed: u64) -> World {
    let mut w = World::new(seed, None);
    w.net.latency = Duration::from_millis(20);
    w.net.bandwidth = 1 << 20;
    w.net.window = 256 << 10;
    w.net.sndbuf = 1 << 20;
    w.net.max_read = 16 << 10;
    w.net.max_write = 16 << 10;
    let f = w.setup_forward(|_, _, c| {
        c.threads = 1;
        c.fast_open = false;
        c.data.max_batch = 16 << 10;
        // Early data is held up to conn_high_water (64 KiB); flushing it at open pushes the
        // link over its 32 KiB mark.
        c.data.conn_high_water = 64 << 10;
        c.data.conn_low_water = 16 << 10;
        c.data.link_high_water = 32 << 10;
        c.data.link_low_water = 8 << 10;
    });
    let mut spec = AppSpec::new(f.socks, Plan::Upload { up: 256 << 10 });
    spec.pipelined = true;
    let at = w.now;
    w.spawn(spec, at);
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(
    early_data_pause_never_resumed,
    20,
    run_early_data_pause_never_resumed
);

// ---------------------------------------------------------------------------------- bug 2

/// Bug 2a: with FastOpen, an application that sends a short message and closes (request,
/// data, EOF) loses it silently: the server gets Connect, Data, Disconnect while its dial is
/// still running; `Plane::disconnect` calls `remove_channel`, which drops the early data and
/// cancels the dial, so the target is never even connected. The application saw success and
/// a clean close. (The reference keeps the channel queue and cleans up 5 s later, so the data
/// is written once the dial completes.)
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_fast_open_upload_then_close(seed: u64) -> World {
    let mut w = World::new(seed, None);
    w.net.dial_latency = Duration::from_millis(30);
    w.net.latency = Duration::from_millis(1);
    let f = w.setup_forward(|_, _, c| c.fast_open = true);
    let up = w.rng.between(1, 4096);
    let at = w.now;
    w.spawn(AppSpec::new(f.socks, Plan::Upload { up }), at);
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(
    fast_open_upload_then_close,
    20,
    run_fast_open_upload_then_close
);

/// Bug 2b: without FastOpen, an application that pipelines request + data and closes before
/// the reply loses the data: `Plane::conn_closed` -> `finish_channel` sends Disconnect and
/// `remove_channel` drops `early` (it was never sent), so the dial is cancelled or the target
/// sees a clean EOF with none of the bytes. (The reference does not read the socket before
/// the ConnectResponse, then forwards the data and the EOF.)
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_pipelined_upload_closed_before_reply(seed: u64) -> World {
    let mut w = World::new(seed, None);
    w.net.latency = Duration::from_millis(10);
    let f = w.setup_forward(|_, _, c| c.fast_open = false);
    let up = w.rng.between(1, 4096);
    let mut spec = AppSpec::new(f.socks, Plan::Upload { up });
    spec.pipelined = true;
    spec.eager_close = true;
    let at = w.now;
    w.spawn(spec, at);
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(
    pipelined_upload_closed_before_reply,
    20,
    run_pipelined_upload_closed_before_reply
);

// ---------------------------------------------------------------------------------- bugs 3, 4

fn token_of(w: &World, n: NodeIdx) -> Option<String> {
    w.nodes[n].events.iter().rev().find_map(|(_, e)| match e {
        Event::ConnectorToken { token } => Some(token.clone()),
        _ => None,
    })
}

/// Autonomy server, two providers of one reverse token, the owner registers a connector token
/// and a connector uses it. Returns (owner, token, connector SOCKS address).
fn setup_autonomy(w: &mut World) -> (NodeIdx, String, SocketAddr) {
    let mut sc = w.server_config();
    sc.connector_autonomy = true;
    let server = w.add_server(sc);
    w.server(server, |s, _| {
        s.add_reverse_token(ReverseTokenSpec {
            token: Some(REV_TOKEN.into()),
            socks: None,
            allow_manage_connector: false,
        })
    })
    .expect("reverse token");
    let mut oc = w.client_config(REV_TOKEN, ClientRole::Provider);
    oc.connector_token = Some("my-connector".into());
    let owner = w.add_client("owner", oc);
    let xc = w.client_config(REV_TOKEN, ClientRole::Provider);
    let other = w.add_client("other-provider", xc);
    let deadline = plus(w.now, 30.0);
    w.wait_ready(other, deadline);
    assert!(w.run_until_pred(deadline, |w| token_of(w, owner).is_some()));
    let token = token_of(w, owner).expect("token");
    let mut cc: ClientConfig = w.client_config(&token, ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    let connector = w.add_client("connector", cc);
    w.wait_ready(connector, deadline);
    let csocks = w.wait_listener(connector, deadline);
    (owner, token, csocks)
}

/// Bug 3: in autonomy mode any provider of the same reverse token can take over another
/// provider's connector token: `ServerMachine::on_connector` (Add) sees the token exists for
/// the same reverse token and sets `owner = Some(link)` without checking that the request
/// comes from the owner (same instance). The connector's traffic then goes to the thief. The
/// reference refuses with "connector token already exists" (notes §6, connector isolation).
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_autonomy_token_not_stolen(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let (owner, token, csocks) = setup_autonomy(&mut w);
    let mut tc = w.client_config(REV_TOKEN, ClientRole::Provider);
    tc.connector_token = Some(token.clone());
    let thief = w.add_client("thief", tc);
    let deadline = plus(w.now, 30.0);
    w.wait_ready(thief, deadline);
    w.run_for(secs(2.0));
    let start = w.now;
    let apps = w.spawn_random(csocks, 4, 16 << 10, start, secs(1.0));
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    assert!(
        token_of(&w, thief).is_none(),
        "the server let a second provider take over connector token {token:?}"
    );
    for a in apps {
        assert_eq!(
            w.dial_nodes(a),
            vec![owner],
            "app {a}: {}",
            w.apps[a].summary()
        );
    }
    w
}
sim_test!(autonomy_token_not_stolen, 10, run_autonomy_token_not_stolen);

/// Bug 4: in autonomy mode, a connector request made while its provider reconnects fails
/// after ConnectorWaitProvider (5 s, reply 0x04) although the provider is back after ~1 s:
/// the request waits in `waiting_relays` with `owner = <old link>`; `authenticate` calls
/// `serve_waiting` before the provider re-adds its token, and `on_connector` (Add, takeover)
/// updates the owner but never calls `serve_waiting`. (Reference behaviours 12 and 13.)
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_autonomy_owner_returns(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let (owner, _token, csocks) = setup_autonomy(&mut w);
    let li = *w.live_links(owner).first().expect("owner link");
    w.drop_link(li);
    let dropped = w.now;
    let d = w.spawn(
        AppSpec::new(csocks, Plan::Echo { up: 1000 }),
        plus(dropped, 0.1),
    );
    let a = w.spawn(
        AppSpec::new(csocks, Plan::Echo { up: 1000 }),
        plus(dropped, 8.0),
    );
    let deadline = plus(w.now, 120.0);
    w.finish(deadline, secs(5.0));
    assert!(
        w.apps[a].success,
        "request after the replay: {}",
        w.apps[a].summary()
    );
    assert!(
        w.apps[d].success,
        "request while the owner reconnected (back after ~1 s, wait is 5 s): {}",
        w.apps[d].summary()
    );
    w
}
sim_test!(autonomy_owner_returns, 10, run_autonomy_owner_returns);

// ---------------------------------------------------------------------------------- bugs 5, 6

/// Bug 5: a slow local reader kills the whole link. The client pauses reading the link
/// (`PauseLink`) while a socket's write queue is over `conn_high_water`; the server's ping
/// (every 30 s) is then not read, so no pong comes, and the server closes the link 10 s later
/// (`Timer::Pong`), ending every channel on it. `Plane::block_link` cancels only the pausing
/// side's own pong deadline; the peer cannot know. Here: one 4 MiB download read at 16 KiB/s
/// dies at ~40 s.
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_slow_reader_link_survives(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, s, c| {
        for d in [&mut s.data, &mut c.data] {
            d.conn_high_water = 64 << 10;
            d.conn_low_water = 16 << 10;
        }
    });
    let mut spec = AppSpec::new(
        f.socks,
        Plan::Download {
            down: 4 << 20,
            reset: false,
        },
    );
    spec.read = ReadRate::Slow {
        bytes: 4096,
        every: secs(0.25),
    };
    let at = w.now;
    let a = w.spawn(spec, at);
    let deadline = plus(w.now, 3600.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    assert!(app.success, "{}\n{}", app.summary(), w.describe());
    w
}
sim_test!(slow_reader_link_survives, 5, run_slow_reader_link_survives);

/// A slow reader downloading over a client with `threads` links, and three small echoes
/// started beside it: each must succeed within 5 s.
fn slow_reader_beside_echoes(seed: u64, threads: usize) -> World {
    let mut w = World::new(seed, None);
    w.net.window = 1 << 20;
    let f = w.setup_forward(|_, s, c| {
        c.threads = threads;
        s.data.link_high_water = 1 << 20;
        for d in [&mut s.data, &mut c.data] {
            d.conn_high_water = 64 << 10;
            d.conn_low_water = 16 << 10;
            // Both ends ours, with the flow control that keeps a slow channel to itself.
            d.channel_flow = true;
        }
    });
    let mut spec = AppSpec::new(
        f.socks,
        Plan::Download {
            down: 2 << 20,
            reset: false,
        },
    );
    spec.read = ReadRate::Slow {
        bytes: 16 << 10,
        every: secs(0.25),
    };
    let at = w.now;
    w.spawn(spec, at);
    let later = plus(w.now, 3.0);
    let others: Vec<usize> = (0..3)
        .map(|i| {
            w.spawn(
                AppSpec::new(f.socks, Plan::Echo { up: 100 }),
                plus(later, i as f64),
            )
        })
        .collect();
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(5.0));
    // An echo may wait behind what the link already carries of the download: at most the
    // channel's share of the sender's queue plus the network's window, each way, at the
    // link's speed. Blocked behind the download it would not finish at all (0x04 at 15 s).
    let limit = {
        let queued = (w.net.window + (1 << 20) + (128 << 10)) as f64;
        let wire = if w.net.bandwidth == 0 {
            0.0
        } else {
            2.0 * queued / w.net.bandwidth as f64
        };
        secs(1.0 + wire) + w.net.latency * 4 + w.net.jitter * 4
    };
    for a in others {
        let app = &w.apps[a];
        assert!(
            app.success,
            "a small echo beside a slow download: {}",
            app.summary()
        );
        let took = app.done_at.unwrap() - app.started_at.unwrap();
        assert!(
            took < limit,
            "a small echo took {took:?} beside a slow download (limit {limit:?})"
        );
    }
    w
}

/// Bug 6 (head-of-line blocking), fixed by per-channel flow control: while one slow reader
/// drains its download, the other channels on the same link used to wait behind the data
/// queued for it (new connections got no ConnectResponse and failed with 0x04 after 15 s).
/// Now the slow channel alone is paused.
fn run_slow_reader_does_not_block_others(seed: u64) -> World {
    slow_reader_beside_echoes(seed, 1)
}
sim_test!(
    slow_reader_does_not_block_others,
    5,
    run_slow_reader_does_not_block_others
);

/// The earlier mitigation of bug 6 (87c3d85): with two links, new channels avoid a congested
/// link, so small requests beside a slow download complete promptly.
fn run_slow_reader_spares_other_links(seed: u64) -> World {
    slow_reader_beside_echoes(seed, 2)
}
sim_test!(
    slow_reader_spares_other_links,
    5,
    run_slow_reader_spares_other_links
);

// ---------------------------------------------------------------------------------- bug 7

/// Bug 7: when the dialling side's connect timer (`Timer::Chan`, ConnectTimeout) fires before
/// the runtime reports the dial outcome, `Plane::fire` emits `Close { conn, abort: true }` to
/// cancel the dial and then `remove_channel` -> `drop_conn` emits a second `Close` for the
/// same conn (the handle invariant catches it). A driver may close a reused socket handle.
///
/// Fixed in core commit 87c3d85; kept as a regression test.
fn run_dial_timeout_single_close(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, _, _| {});
    for i in 0..4 {
        let spec = World::spec_dial(f.socks, Plan::Echo { up: 10 }, Dial::BlackHole);
        let at = plus(w.now, i as f64 * 0.1);
        w.spawn(spec, at);
    }
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    w
}
sim_test!(dial_timeout_single_close, 10, run_dial_timeout_single_close);
