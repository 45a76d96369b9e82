//! Agent mode (connector -> server -> provider) and autonomy (providers manage their own
//! connector tokens) under the simulation.
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_agent -- <name> --exact`.

use std::net::SocketAddr;

use linksocks_core::session::{ClientConfig, ClientRole, Event, ReverseTokenSpec};
use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

/// Applications on the connector's SOCKS port and on the server's own SOCKS port all reach
/// their targets through the providers.
fn run_agent_mix(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let fo = w.rng.chance(0.3);
    let ag = setup_agent(&mut w, k, fo);
    let start = w.now;
    let n = w.rng.usize(1..15);
    let via_connector = w.spawn_random(ag.csocks, n, 128 << 10, start, secs(2.0));
    let m = w.rng.usize(0..6);
    w.spawn_random(ag.ssocks, m, 64 << 10, start, secs(2.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    for a in via_connector {
        let nodes = w.dial_nodes(a);
        assert!(
            nodes.len() == 1 && ag.providers.contains(&nodes[0]),
            "app {a} via the connector was dialled by {nodes:?}, not by a provider"
        );
    }
    let _ = (ag.server, ag.connector);
    w
}
sim_test!(agent_mix, 60, run_agent_mix);

/// A connector's request while no provider is connected waits up to ConnectorWaitProvider
/// (5 s): a provider arriving in time serves it; otherwise the request fails (reply 0x04, or
/// with FastOpen an error close) after 5 s.
fn run_connector_waits_for_provider(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let sc = w.server_config();
    let server = w.add_server(sc);
    w.server(server, |s, _| {
        s.add_reverse_token(ReverseTokenSpec {
            token: Some(REV_TOKEN.into()),
            socks: None,
            allow_manage_connector: false,
        })
        .expect("reverse token");
        s.add_connector_token(Some(CONN_TOKEN.into()), REV_TOKEN)
            .expect("connector token");
    });
    let mut cc = w.client_config(CONN_TOKEN, ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    cc.fast_open = w.rng.chance(0.3);
    let fo = cc.fast_open;
    let connector = w.add_client("connector", cc);
    let deadline = plus(w.now, 30.0);
    w.wait_ready(connector, deadline);
    let csocks = w.wait_listener(connector, deadline);
    let in_time = w.rng.chance(0.5);
    let start = plus(w.now, w.rng.unit());
    let arrive = if in_time {
        0.2 + 4.0 * w.rng.unit()
    } else {
        5.5 + 3.0 * w.rng.unit()
    };
    let spec = AppSpec::new(
        csocks,
        Plan::Echo {
            up: w.rng.log_between(1, 32 << 10),
        },
    );
    let a = w.spawn(spec, start);
    let pc = w.client_config(REV_TOKEN, ClientRole::Provider);
    w.call_at(plus(start, arrive), move |w| {
        w.add_client("provider", pc);
    });
    let deadline = plus(w.now, 60.0);
    w.finish(deadline, secs(5.0));
    let app = &w.apps[a];
    if in_time {
        assert!(
            app.success,
            "provider arrived after {arrive:.2} s: {}",
            app.summary()
        );
    } else {
        assert!(!app.success);
        if fo {
            assert_eq!(app.closed_by_machine, Some(true), "{}", app.summary());
        } else {
            assert_eq!(app.reply, Some(0x04), "{}", app.summary());
        }
        let took = app.done_at.unwrap() - app.started_at.unwrap();
        assert!(
            took >= secs(5.0) && took <= secs(6.0),
            "failed after {took:?}: {}",
            app.summary()
        );
    }
    w
}
sim_test!(
    connector_waits_for_provider,
    50,
    run_connector_waits_for_provider
);

struct Autonomy {
    server: NodeIdx,
    owner: NodeIdx,
    other: NodeIdx,
    token: String,
    connector: NodeIdx,
    csocks: SocketAddr,
}

/// Autonomy: two providers of one reverse token (no server SOCKS listener); the owner
/// registers a connector token (generated or its own), a connector uses it.
fn setup_autonomy(w: &mut World) -> Autonomy {
    let mut sc = w.server_config();
    let by_flag = w.rng.chance(0.5);
    sc.connector_autonomy = by_flag;
    let server = w.add_server(sc);
    w.server(server, |s, _| {
        s.add_reverse_token(ReverseTokenSpec {
            token: Some(REV_TOKEN.into()),
            socks: None,
            allow_manage_connector: !by_flag,
        })
        .expect("reverse token");
    });
    let mut oc = w.client_config(REV_TOKEN, ClientRole::Provider);
    let asked = if w.rng.chance(0.5) {
        String::new()
    } else {
        "my-connector".to_string()
    };
    oc.connector_token = Some(asked.clone());
    let owner = w.add_client("owner", oc);
    let xc = w.client_config(REV_TOKEN, ClientRole::Provider);
    let other = w.add_client("other-provider", xc);
    let deadline = plus(w.now, 30.0);
    w.wait_ready(other, deadline);
    let ok = w.run_until_pred(deadline, |w| token_of(w, owner).is_some());
    assert!(ok, "no connector token registered\n{}", w.describe());
    let token = token_of(w, owner).expect("token");
    if !asked.is_empty() {
        assert_eq!(token, asked);
    } else {
        assert_eq!(
            token.len(),
            16,
            "generated tokens are 16 hex characters: {token:?}"
        );
    }
    let mut cc: ClientConfig = w.client_config(&token, ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    let connector = w.add_client("connector", cc);
    w.wait_ready(connector, deadline);
    let csocks = w.wait_listener(connector, deadline);
    Autonomy {
        server,
        owner,
        other,
        token,
        connector,
        csocks,
    }
}

fn token_of(w: &World, n: NodeIdx) -> Option<String> {
    w.nodes[n].events.iter().rev().find_map(|(_, e)| match e {
        Event::ConnectorToken { token } => Some(token.clone()),
        _ => None,
    })
}

/// The connector reaches targets only through the provider that registered its token; the
/// server opened no SOCKS listener at all for the autonomy token.
fn run_autonomy(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let au = setup_autonomy(&mut w);
    let start = w.now;
    let n = w.rng.usize(1..12);
    let apps = w.spawn_random(au.csocks, n, 64 << 10, start, secs(2.0));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    for a in apps {
        assert_eq!(
            w.dial_nodes(a),
            vec![au.owner],
            "app {a} must be served by the token's owner"
        );
    }
    assert_eq!(
        w.nodes[au.server].listens, 0,
        "no server SOCKS listener in autonomy mode"
    );
    let _ = (au.other, au.connector, au.token);
    w
}
sim_test!(autonomy_connector_isolated, 50, run_autonomy);

/// Agent mode under churn: a provider's or the connector's link drops in the middle of
/// traffic. Streams end visibly (the invariants), relayed channels of the dead link are ended
/// on the other side too, nothing is left; once everything is back new requests work.
fn run_agent_churn(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let ag = setup_agent(&mut w, 2, false);
    let t0 = w.now;
    let n = w.rng.usize(3..15);
    w.spawn_random(ag.csocks, n, 128 << 10, t0, secs(2.0));
    let m = w.rng.usize(0..5);
    w.spawn_random(ag.ssocks, m, 64 << 10, t0, secs(2.0));
    let victim = if w.rng.chance(0.5) {
        ag.connector
    } else {
        *w.rng.pick(&ag.providers)
    };
    let at = plus(t0, 0.2 + 1.8 * w.rng.unit());
    w.run_until(at);
    if let Some(&li) = w.live_links(victim).first() {
        if w.rng.chance(0.3) {
            w.partition_link(li);
        } else {
            w.drop_link(li);
        }
    }
    // After 100 s everything is back (a partition is noticed within 60 s of silence plus up to
    // a ping interval, reconnect 1 s).
    let later = plus(w.now, 100.0);
    let late = w.spawn_random(ag.csocks, 4, 16 << 10, later, secs(1.0));
    let deadline = plus(w.now, 400.0);
    w.finish(deadline, secs(5.0));
    for a in late {
        assert!(
            w.apps[a].success,
            "app {a} after recovery: {}",
            w.apps[a].summary()
        );
    }
    w
}
sim_test!(agent_churn, 50, run_agent_churn);

/// Flow control across a relay whose two sides may not both speak it (a reference provider
/// behind our server, or a reference connector in front of it, played here by clients with
/// the extension turned off): windows far smaller than the transfers, so an end that waited
/// for acknowledgements the other end never sends would stall, and the run would fail.
fn run_agent_mixed_flow(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let fo = w.rng.chance(0.3);
    let ag = setup_agent_with(&mut w, k, fo, |w, c| {
        c.data.channel_flow = w.rng.chance(0.5);
        c.data.channel_window = w.rng.log_between(16 << 10, 256 << 10) as usize;
    });
    let start = w.now;
    let n = w.rng.usize(1..8);
    w.spawn_random(ag.csocks, n, 2 << 20, start, secs(2.0));
    let deadline = plus(w.now, 600.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(agent_mixed_flow, 40, run_agent_mixed_flow);
