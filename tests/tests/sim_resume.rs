//! Channels that survive a lost link (spec 12.1-12.3) under the simulation: links dropped or
//! silently cut under traffic in every mode, back within the transport grace, once or several
//! times; drops while channels connect (with and without FastOpen); the grace running out;
//! resumes of channels the server does not hold; ten thousand channels suspended at once.
//!
//! The invariant is stronger here than in `sim_faults`: when the link comes back within the
//! grace, every application completes its plan, every byte in order (not "complete or ended
//! with an error").
//!
//! Replay one seed: `SIM_SEED=<seed> cargo test -p linksocks-tests --test sim_resume -- <name> --exact`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use linksocks_core::ids::ChannelId;
use linksocks_core::session::plane::Stats;
use linksocks_core::session::{ClientRole, DataConfig};
use linksocks_core::wire::{self, DecodeLimits, Message};
use linksocks_tests::sim::*;
use linksocks_tests::sim_test;

/// How long a finished run settles before nothing may be left: a link cut silently is only
/// found dead after a minute of silence.
const SETTLE: Duration = Duration::from_secs(90);

/// Lose one live link of `client` now: closed on both ends, or (`partition`) silently cut so
/// that only the keepalive finds it. The server refuses new links for `refuse` seconds.
fn lose_link(w: &mut World, client: NodeIdx, partition: bool, refuse: f64) -> bool {
    let links = w.live_links(client);
    if links.is_empty() {
        return false;
    }
    let li = *w.rng.pick(&links);
    if partition {
        w.partition_link(li);
    } else {
        w.drop_link(li);
    }
    w.refuse_links_until = plus(w.now, refuse);
    true
}

/// `k` losses of links of the `victims` (chosen at random each time) at random moments over
/// `span` seconds from now, each followed by refusals short enough that the link is back
/// well within the grace (30 s; reconnect attempts back off from 1 s by x1.5). The losses
/// are seen at once (a reset): a silent cut is only found after a minute, by which time a
/// connect in flight has timed out (see `silent_cut_found_by_keepalive`).
fn lose_links(w: &mut World, victims: &[NodeIdx], k: usize, span: f64, max_refuse: f64) {
    let t0 = w.now;
    let mut at: Vec<f64> = (0..k).map(|_| span * w.rng.unit()).collect();
    at.sort_by(f64::total_cmp);
    for s in at {
        w.run_until(plus(t0, s));
        let v = *w.rng.pick(victims);
        let refuse = max_refuse * w.rng.unit();
        lose_link(w, v, false, refuse);
    }
}

/// Resuming builds on per-channel flow control: both must be on (the random data paths of the
/// simulation turn it off at times).
fn resumable(d: &mut DataConfig) {
    d.channel_flow = true;
}

/// A forward client with one link (none to continue on at once), both ends resuming.
fn one_link_forward(w: &mut World) -> Forward {
    w.setup_forward(|_, s, c| {
        c.threads = 1;
        resumable(&mut s.data);
        resumable(&mut c.data);
    })
}

fn stats(w: &mut World, n: NodeIdx) -> Stats {
    w.nodes[n].plane().stats.clone()
}

/// Nothing expired, and every suspended channel came back.
fn assert_nothing_expired(w: &mut World, nodes: &[NodeIdx]) {
    for &n in nodes {
        let s = stats(w, n);
        assert_eq!(
            s.channels_expired,
            0,
            "{}: {} channels expired within the grace ({} suspended, {} resumed)\n{}",
            w.nodes[n].name,
            s.channels_expired,
            s.channels_suspended,
            s.channels_resumed,
            w.describe()
        );
    }
}

fn forward_drops(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let fast_open = w.rng.chance(0.3);
    let f = w.setup_forward(|_, s, c| {
        s.fast_open = fast_open;
        c.fast_open = fast_open;
        resumable(&mut s.data);
        resumable(&mut c.data);
    });
    let t0 = w.now;
    let n = w.rng.usize(1..12);
    w.spawn_random(f.socks, n, 1 << 20, t0, secs(2.0));
    let k = w.rng.usize(1..4);
    lose_links(&mut w, &[f.client], k, 3.0, 6.0);
    let deadline = plus(w.now, 900.0);
    // Long enough for a silently cut link to be found dead (and what was queued on it let go).
    w.finish(deadline, SETTLE);
    w.assert_all_succeeded();
    assert_nothing_expired(&mut w, &[f.server, f.client]);
    w
}
sim_test!(forward_link_drops_within_grace, 330, forward_drops);

fn reverse_drops(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let r = w.setup_reverse(k, false, |_, s, cs| {
        resumable(&mut s.data);
        for c in cs {
            resumable(&mut c.data);
        }
    });
    let t0 = w.now;
    let n = w.rng.usize(1..10);
    w.spawn_random(r.socks, n, 1 << 20, t0, secs(2.0));
    let drops = w.rng.usize(1..4);
    let providers = r.providers.clone();
    lose_links(&mut w, &providers, drops, 3.0, 6.0);
    let deadline = plus(w.now, 900.0);
    // Long enough for a silently cut link to be found dead (and what was queued on it let go).
    w.finish(deadline, SETTLE);
    w.assert_all_succeeded();
    let mut nodes = providers;
    nodes.push(r.server);
    assert_nothing_expired(&mut w, &nodes);
    w
}
sim_test!(reverse_link_drops_within_grace, 200, reverse_drops);

/// Agent mode: the provider's link, the connector's, or both, lost under traffic.
fn agent_drops(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let k = w.rng.usize(1..3);
    let fast_open = w.rng.chance(0.3);
    // One window for everyone: a relayed channel resumes only when it is flow-controlled
    // end to end (different windows make the relay turn flow control off).
    let window = w.rng.log_between(64 << 10, 4 << 20) as usize;
    let ag = setup_agent_configs(
        &mut w,
        k,
        fast_open,
        |s| resumable(&mut s.data),
        |_, c| {
            resumable(&mut c.data);
            c.data.channel_window = window;
        },
    );
    let t0 = w.now;
    let n = w.rng.usize(1..10);
    w.spawn_random(ag.csocks, n, 1 << 20, t0, secs(2.0));
    let mut victims = ag.providers.clone();
    victims.push(ag.connector);
    let drops = w.rng.usize(1..4);
    if w.rng.chance(0.3) {
        // Both legs at once.
        let at = plus(t0, 2.0 * w.rng.unit());
        w.run_until(at);
        let p = *w.rng.pick(&ag.providers);
        lose_link(&mut w, p, false, 0.0);
        let refuse = 2.0 * w.rng.unit();
        lose_link(&mut w, ag.connector, false, refuse);
    }
    // New requests wait for a provider only `connector_wait_provider` (5 s): the outages
    // stay shorter, so that only the channels' survival is tested here.
    lose_links(&mut w, &victims, drops, 3.0, 2.0);
    let deadline = plus(w.now, 900.0);
    // Long enough for a silently cut link to be found dead (and what was queued on it let go).
    w.finish(deadline, SETTLE);
    w.assert_all_succeeded();
    victims.push(ag.server);
    assert_nothing_expired(&mut w, &victims);
    w
}
sim_test!(agent_link_drops_within_grace, 200, agent_drops);

/// A link cut silently (a NAT that forgot it): nothing arrives any more, nobody is told. Both
/// ends find it dead by the keepalive within a minute of silence (plus up to one ping
/// interval), suspend its channels, and the client resumes them on a new link: established
/// connections that waited meanwhile complete.
fn silent_cut(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = one_link_forward(&mut w);
    let t0 = w.now;
    let n = w.rng.usize(1..6);
    let apps: Vec<usize> = (0..n)
        .map(|_| {
            let spec = AppSpec::new(
                f.socks,
                Plan::PingPong {
                    burst: w.rng.log_between(1, 256 << 10),
                    rounds: 5,
                    size: 1000,
                    think: secs(0.5),
                    overlap: false,
                },
            );
            w.spawn(spec, t0)
        })
        .collect();
    let ok = w.run_until_pred(plus(t0, 20.0), |w| {
        apps.iter().all(|a| w.apps[*a].reply == Some(0))
    });
    assert!(ok, "connections did not open\n{}", w.describe());
    let cut = w.now;
    assert!(lose_link(&mut w, f.client, true, 0.0));
    let found = w.run_until_pred(plus(cut, 120.0), |w| {
        w.nodes[f.client].lost.iter().any(|(t, _)| *t >= cut)
    });
    assert!(found, "the client never noticed\n{}", w.describe());
    let noticed = w.nodes[f.client]
        .lost
        .iter()
        .map(|x| x.0)
        .find(|t| *t >= cut)
        .expect("noticed");
    // Silence of `dead_after` (60 s), checked when a pong is due (every 30 s + 10 s).
    assert!(
        noticed - cut <= secs(71.0),
        "a silent cut was found only after {:?}",
        noticed - cut
    );
    let deadline = plus(w.now, 900.0);
    w.finish(deadline, SETTLE);
    w.assert_all_succeeded();
    assert_nothing_expired(&mut w, &[f.server, f.client]);
    w
}
sim_test!(silent_cut_found_by_keepalive, 30, silent_cut);

/// A UDP association outlives a dropped link: datagrams sent while it was down may be lost
/// (UDP allows it), those sent after it came back reach their targets and their answers
/// come back, and the association ends only when its application closes it.
fn udp_survives(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let f = one_link_forward(&mut w);
    let t0 = w.now;
    let plan = UdpPlan {
        datagrams: 40,
        max_size: *w.rng.pick(&[512, 1400, 9000]),
        gap: secs(0.1),
        name_addr: w.rng.chance(0.5),
        close_control: true,
        stranger: false,
    };
    let a = w.spawn(AppSpec::new(f.socks, Plan::Udp(plan)), t0);
    let ok = w.run_until_pred(plus(t0, 10.0), |w| w.apps[a].reply == Some(0));
    assert!(ok, "no UDP association\n{}", w.describe());
    let later = secs(0.3 + w.rng.unit());
    w.run_for(later);
    let refuse = w.rng.unit();
    assert!(lose_link(&mut w, f.client, false, refuse));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, SETTLE);
    let app = &w.apps[a];
    assert!(
        app.closed_self.is_some() && app.closed_by_machine.is_none(),
        "the association did not outlive the link: {}",
        app.summary()
    );
    let u = app.udp.as_ref().expect("udp");
    assert!(
        u.received.contains(&39),
        "the last datagram, sent after the link was back, got no answer: {:?}",
        u.received
    );
    assert_nothing_expired(&mut w, &[f.server, f.client]);
    w
}
sim_test!(udp_association_survives_a_drop, 40, udp_survives);

/// Links lost exactly while channels are being opened: Connects (and FastOpen data) in
/// flight, dials running on the far side.
fn connect_drops(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let fast_open = w.rng.chance(0.5);
    let f = w.setup_forward(|_, s, c| {
        s.fast_open = fast_open;
        c.fast_open = fast_open;
        c.threads = 1;
        resumable(&mut s.data);
        resumable(&mut c.data);
    });
    let t0 = w.now;
    let n = w.rng.usize(1..8);
    w.spawn_random(f.socks, n, 256 << 10, t0, secs(0.002));
    // Within a few round trips of the requests: Connects, replies and first data in flight.
    let at = plus(t0, 0.0005 + 0.01 * w.rng.unit());
    w.run_until(at);
    let refuse = 3.0 * w.rng.unit();
    lose_link(&mut w, f.client, false, refuse);
    let deadline = plus(w.now, 900.0);
    // Long enough for a silently cut link to be found dead (and what was queued on it let go).
    w.finish(deadline, SETTLE);
    w.assert_all_succeeded();
    assert_nothing_expired(&mut w, &[f.server, f.client]);
    w
}
sim_test!(drops_during_connect_and_fast_open, 200, connect_drops);

/// The link stays away longer than the grace: every channel that was open ends with an error
/// on both ends (a reset, never a clean end), no sooner than the grace; afterwards the client
/// is back and new connections work.
fn grace_runs_out(seed: u64) -> World {
    let mut w = World::new(seed, None);
    let grace = secs(1.0 + 4.0 * w.rng.unit());
    let f = w.setup_forward(|_, s, c| {
        // One link: with another, the channels would continue on it at once.
        c.threads = 1;
        s.timings.transport_grace = grace;
        c.timings.transport_grace = grace;
        resumable(&mut s.data);
        resumable(&mut c.data);
    });
    let t0 = w.now;
    let n = w.rng.usize(1..8);
    let held: Vec<usize> = (0..n)
        .map(|_| {
            let spec = AppSpec::new(f.socks, Plan::Hold);
            w.spawn(spec, t0)
        })
        .collect();
    // Everyone connected and idle.
    let ok = w.run_until_pred(plus(t0, 30.0), |w| {
        held.iter().all(|a| w.apps[*a].reply == Some(0)) && w.targets.len() >= n
    });
    assert!(ok, "the held connections did not open\n{}", w.describe());
    let cut = w.now;
    assert!(lose_link(&mut w, f.client, false, 3600.0));
    // Both ends give up after the grace; the server keeps refusing meanwhile.
    let ok = w.run_until_pred(plus(cut, grace.as_secs_f64() + 5.0), |w| {
        held.iter().all(|a| w.apps[*a].finished())
            && w.targets.iter().all(|t| t.closed_by_machine.is_some())
    });
    if !ok {
        let apps: Vec<String> = held.iter().map(|a| w.apps[*a].summary()).collect();
        let targets: Vec<String> = w
            .targets
            .iter()
            .map(|t| {
                format!(
                    "app {} by machine {:?} self {:?}",
                    t.app, t.closed_by_machine, t.closed_self
                )
            })
            .collect();
        panic!(
            "channels outlived the grace:\n  {}\n  {}\n{}",
            apps.join("\n  "),
            targets.join("\n  "),
            w.describe()
        );
    }
    for &a in &held {
        let app = &w.apps[a];
        assert_eq!(
            app.closed_by_machine,
            Some(true),
            "app {a} must see a reset: {}",
            app.summary()
        );
        let at = app.done_at.expect("done");
        assert!(
            at >= cut + grace,
            "app {a} ended {:?} after the cut, before the grace of {grace:?}",
            at - cut
        );
    }
    for (i, t) in w.targets.iter().enumerate() {
        assert_eq!(
            t.closed_by_machine,
            Some(true),
            "target {i} must see a reset"
        );
    }
    assert_eq!(w.nodes[f.client].plane().suspended_count(), 0);
    assert_eq!(w.nodes[f.server].plane().suspended_count(), 0);
    // Back, and working.
    w.refuse_links_until = w.now;
    let deadline = plus(w.now, 60.0);
    w.wait_ready(f.client, deadline);
    let late = w.spawn_random(f.socks, 3, 64 << 10, w.now, secs(0.5));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    for a in late {
        assert!(w.apps[a].success, "app {a}: {}", w.apps[a].summary());
    }
    w
}
sim_test!(grace_expiry_ends_with_an_error, 60, grace_runs_out);

/// Frames the server sends toward the client on link `li`, decoded, from now on.
fn record_server_frames(w: &mut World, li: usize) -> Rc<RefCell<Vec<Message>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    w.filter_link(
        li,
        1,
        Box::new(move |f: &[u8]| {
            if let Ok(m) = wire::decode(Bytes::copy_from_slice(f), &DecodeLimits::default()) {
                log.borrow_mut().push(m);
            }
            false
        }),
    );
    seen
}

/// The recorded messages other than Data, for failure messages.
fn control(seen: &Rc<RefCell<Vec<Message>>>) -> Vec<Message> {
    seen.borrow()
        .iter()
        .filter(|m| !matches!(m, Message::Data(_)))
        .cloned()
        .collect()
}

fn frame(m: &Message) -> Bytes {
    wire::encode::encode_to_bytes(m).expect("encodable")
}

/// Resumes of channels the server does not hold, of another peer's channel, and repeated
/// resumes: "channel expired" and no dial for the first two, nothing at all for the last,
/// and the real channels are not disturbed.
/// A forward client with one link that resumes, and one echoing connection through it, open
/// (its rounds still to come) when this returns.
fn forward_with_echo(seed: u64) -> (World, Forward) {
    let mut w = World::new(seed, None);
    let f = w.setup_forward(|_, s, c| {
        c.threads = 1;
        // ChannelResume is an extension: only a peer that negotiated it is answered.
        resumable(&mut s.data);
        resumable(&mut c.data);
    });
    let t0 = w.now;
    let echo = AppSpec::new(
        f.socks,
        Plan::PingPong {
            burst: 4096,
            rounds: 30,
            size: 512,
            think: secs(0.05),
            overlap: false,
        },
    );
    let a = w.spawn(echo, t0);
    let ok = w.run_until_pred(plus(t0, 10.0), |w| w.apps[a].reply == Some(0));
    assert!(ok, "no reply\n{}", w.describe());
    (w, f)
}

fn foreign_resumes(seed: u64) -> World {
    let (mut w, f) = forward_with_echo(seed);
    let li = w.live_links(f.client)[0];
    let seen = record_server_frames(&mut w, li);
    let dials = w.dials.len();
    // An id nobody opened, by ChannelResume and by the reference's resume Connect.
    let mut id = [0u8; 16];
    for b in id.iter_mut() {
        *b = w.rng.usize(0..256) as u8;
    }
    let unknown = ChannelId(id);
    w.inject_frame(
        li,
        1,
        frame(&Message::ChannelResume {
            channel: unknown,
            received: 0,
            written: 0,
        }),
    );
    w.inject_frame(
        li,
        1,
        frame(&Message::ConnectResume(wire::Connect {
            protocol: wire::Protocol::Tcp,
            channel: unknown,
            target: Some(("t0.sim".into(), 80)),
        })),
    );
    w.run_for(secs(0.5));
    let expired: Vec<ChannelId> = seen
        .borrow()
        .iter()
        .filter_map(|m| match m {
            Message::Disconnect { channel, error }
                if error.as_deref() == Some("channel expired") =>
            {
                Some(*channel)
            }
            _ => None,
        })
        .collect();
    assert_eq!(expired, [unknown, unknown], "{:?}", control(&seen));
    assert_eq!(w.dials.len(), dials, "a resume was dialled");
    assert!(
        !seen.borrow().iter().any(|m| matches!(
            m,
            Message::ConnectResponse { .. } | Message::ChannelResume { .. }
        )),
        "{:?}",
        control(&seen)
    );
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(resume_of_unknown_channel, 20, foreign_resumes);

/// A second client with another token cannot take over the first one's channels by naming
/// them: its resume is refused, the owner's traffic goes on.
fn foreign_owner(seed: u64) -> World {
    let (mut w, f) = forward_with_echo(seed);
    w.server(f.server, |s, _| s.add_forward_token(Some("other".into())))
        .expect("token");
    let mut cc = w.client_config("other", ClientRole::Forward);
    cc.threads = 1;
    resumable(&mut cc.data);
    let thief = w.add_client("thief", cc);
    let deadline = plus(w.now, 30.0);
    w.wait_ready(thief, deadline);
    // The owner's channel id, as the server knows it.
    let id = *w.nodes[f.client]
        .plane()
        .channel_ids()
        .first()
        .expect("a channel");
    let li = w.live_links(thief)[0];
    let seen = record_server_frames(&mut w, li);
    for _ in 0..2 {
        w.inject_frame(
            li,
            1,
            frame(&Message::ChannelResume {
                channel: id,
                received: 0,
                written: 0,
            }),
        );
    }
    w.run_for(secs(0.2));
    let expired = seen
        .borrow()
        .iter()
        .filter(|m| matches!(m, Message::Disconnect { channel, error } if *channel == id && error.as_deref() == Some("channel expired")))
        .count();
    assert_eq!(expired, 2, "{:?}", control(&seen));
    let deadline = plus(w.now, 300.0);
    w.finish(deadline, secs(5.0));
    w.assert_all_succeeded();
    w
}
sim_test!(resume_of_another_peers_channel, 20, foreign_owner);

/// Ten thousand idle channels suspended at once: every machine stays within its memory
/// bounds (the invariants check them after every step), and all of them continue.
fn many_suspended(seed: u64) -> World {
    let mut w = World::new(seed, Some(NetProfile::ideal()));
    let f = one_link_forward(&mut w);
    let t0 = w.now;
    const N: usize = 10_000;
    for i in 0..N {
        let spec = AppSpec::new(
            f.socks,
            Plan::PingPong {
                burst: 64,
                rounds: 1,
                size: 64,
                think: secs(10.0),
                overlap: false,
            },
        );
        let at = t0 + Duration::from_micros(100 * i as u64);
        w.spawn(spec, at);
    }
    // All open and thinking.
    let ok = w.run_until_pred_every(plus(t0, 8.0), 1000, |w| {
        w.nodes[f.server].plane().channel_count() == N
    });
    assert!(ok, "not all channels opened\n{}", w.describe());
    w.run_until(plus(t0, 2.5));
    assert!(lose_link(&mut w, f.client, false, 2.0));
    let (c, s) = (
        w.nodes[f.client].plane().suspended_count(),
        w.nodes[f.server].plane().suspended_count(),
    );
    assert_eq!((c, s), (N, N), "suspended (client, server)");
    let per_side = [f.client, f.server].map(|n| w.nodes[n].plane().buffered_bytes());
    for n in [f.client, f.server] {
        let (per, bound) = (w.nodes[n].plane().max_channel_bytes(), w.channel_bound(n));
        assert!(
            per <= bound,
            "a suspended channel holds {per} bytes, over {bound}"
        );
        let (all, global) = (w.nodes[n].plane().buffered_bytes(), w.global_bound(n));
        assert!(
            all <= global,
            "{all} bytes held with {N} channels suspended, over {global}"
        );
    }
    // `finish`, with its walk over every application asked every 1000 steps only.
    let deadline = plus(w.now, 600.0);
    let done = w.run_until_pred_every(deadline, 1000, |w| {
        w.apps.iter().all(|a| a.finished())
            && w.nodes.iter().all(|n| n.plane().channel_count() == 0)
    });
    assert!(done, "not all finished\n{}", w.describe());
    w.run_for(secs(5.0));
    w.check_quiescent();
    w.assert_ok();
    w.assert_all_succeeded();
    assert_nothing_expired(&mut w, &[f.server, f.client]);
    let resumed = stats(&mut w, f.client).channels_resumed;
    assert_eq!(resumed as usize, N);
    eprintln!("10,000 suspended channels: buffered bytes (client, server) = {per_side:?}");
    w
}
/// One seed, run once: it is the largest world of the suite (about a minute unoptimised).
#[test]
fn ten_thousand_suspended_channels() {
    run_seeds_with(
        env!("CARGO_CRATE_NAME"),
        "ten_thousand_suspended_channels",
        1,
        0,
        many_suspended,
    );
}
