//! Flow control and resume, driven through a plane with one link.
use bytes::Bytes;

use super::*;
use crate::ids::SeededIds;
use crate::session::config::{BatchPolicy, DataConfig, Timings};
use crate::session::output::Output;
use crate::time::Instant;
use crate::wire::{self, Connect, DecodeLimits, Protocol};

const T0: Instant = Instant::ZERO;
const CHANNEL: ChannelId = ChannelId([7; 16]);
const K: usize = 1 << 10;

struct Setup {
    p: Plane,
    link: LinkId,
    conn: ConnId,
    key: ChanKey,
}

/// A plane with one link on which `window` was agreed, and one open channel we dialled
/// for the peer on it. Reads go out at once (no batching), so each read is one frame.
fn setup(window: usize, tweak: impl FnOnce(&mut DataConfig)) -> Setup {
    let mut data = DataConfig {
        batch: BatchPolicy::Immediate,
        channel_window: window,
        ..DataConfig::default()
    };
    tweak(&mut data);
    let ids = Box::new(SeededIds::new(1));
    let mut p = Plane::new(data, Timings::default(), false, ids, T0);
    let link = p.new_link_id();
    p.add_link(T0, link);
    p.set_link_ready(T0, link);
    p.set_flow_window(link, window);
    let connect = Connect {
        protocol: Protocol::Tcp,
        channel: CHANNEL,
        target: Some(("target.test".into(), 80)),
    };
    p.dial(T0, link, connect);
    let conn = p
        .out
        .iter()
        .find_map(|o| match o {
            Output::Dial { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a dial");
    p.dial_result(T0, conn, Ok(()));
    let key = p.by_wire[&(link, CHANNEL)];
    p.out.clear();
    Setup { p, link, conn, key }
}

impl Setup {
    /// The application side of our channel sent `n` bytes.
    fn read(&mut self, n: usize) {
        let req = self.p.conn_data(T0, self.conn, Bytes::from(vec![b'x'; n]));
        assert!(req.is_none());
    }

    /// A frame arrived from the peer.
    fn peer_sends(&mut self, msg: &Message) {
        let frame = wire::encode::encode_to_bytes(msg).expect("encodable");
        self.peer_frame(frame);
    }

    fn peer_frame(&mut self, frame: Bytes) {
        let routed = self.p.link_frame(T0, self.link, frame);
        assert!(matches!(routed, super::super::Routed::Done));
    }

    /// The peer sent `n` bytes of Data on the channel.
    fn data_peer_sends(&mut self, n: usize) {
        let payload = Bytes::from(vec![b'y'; n]);
        let frame = self.p.data_frame(Protocol::Tcp, CHANNEL, payload, None);
        self.peer_frame(frame);
    }

    fn ack(&mut self, bytes: u32) {
        let msg = Message::ChannelAck {
            channel: CHANNEL,
            bytes,
        };
        self.peer_sends(&msg);
    }

    fn outputs(&mut self) -> Vec<Output> {
        self.p.out.drain(..).collect()
    }

    fn read_paused(&mut self) -> bool {
        let conn = self.conn;
        let outs = self.outputs();
        assert!(!outs
            .iter()
            .any(|o| matches!(o, Output::ResumeRead { conn: c } if *c == conn)));
        outs.iter()
            .any(|o| matches!(o, Output::PauseRead { conn: c } if *c == conn))
    }

    fn read_resumed(&mut self) -> bool {
        let conn = self.conn;
        self.outputs()
            .iter()
            .any(|o| matches!(o, Output::ResumeRead { conn: c } if *c == conn))
    }

    /// The acknowledgements we sent the peer since the last look.
    fn acks_sent(&mut self) -> Vec<u32> {
        let limits = DecodeLimits::default();
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Transmit { frame, .. } => match wire::decode(frame, &limits) {
                    Ok(Message::ChannelAck { channel, bytes }) => {
                        assert_eq!(channel, CHANNEL);
                        Some(bytes)
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn unacked(&self) -> usize {
        self.p.channels[&self.key].stream.unacked() as usize
    }
}

#[test]
fn windows_are_agreed_at_least_min_window_and_only_when_enabled() {
    let mut s = setup(MIN_WINDOW, |_| {});
    assert_eq!(s.p.own_window(), MIN_WINDOW);
    s.p.set_flow_window(s.link, 1000);
    assert_eq!(s.p.flow_window(s.link), Some(MIN_WINDOW));
    s.p.set_flow_window(s.link, 5 * MIN_WINDOW);
    assert_eq!(s.p.flow_window(s.link), Some(5 * MIN_WINDOW));

    let mut off = setup(4 * MIN_WINDOW, |d| d.channel_flow = false);
    assert_eq!(off.p.own_window(), 4 * MIN_WINDOW);
    assert_eq!(off.p.flow_window(off.link), None);
    assert!(!off.p.channels[&off.key].windowed);
    // Without a window nothing pauses for it, and nothing is kept.
    for _ in 0..8 {
        off.read(16 * K);
    }
    assert!(!off.read_paused());
    assert_eq!(off.p.channels[&off.key].stream.log.len(), 0);
}

#[test]
fn a_full_window_pauses_reading() {
    let mut s = setup(MIN_WINDOW, |_| {});
    assert!(s.p.channels[&s.key].windowed);
    for _ in 0..3 {
        s.read(16 * K);
    }
    assert_eq!(s.unacked(), 48 * K);
    assert!(!s.read_paused());
    s.read(16 * K);
    assert_eq!(s.unacked(), MIN_WINDOW);
    assert!(s.read_paused());
    assert!(s.p.channels[&s.key].window_full);
    assert!(s.p.channel_holds_reading(s.conn));
}

#[test]
fn an_ack_below_the_window_resumes_reading() {
    let mut s = setup(MIN_WINDOW, |_| {});
    s.read(MIN_WINDOW);
    assert!(s.read_paused());
    s.ack(0);
    assert!(!s.read_resumed());
    s.ack(1);
    assert!(s.read_resumed());
    assert_eq!(s.unacked(), MIN_WINDOW - 1);
    // The one byte of room fills again.
    s.read(1);
    assert!(s.read_paused());
    s.ack(MIN_WINDOW as u32);
    assert!(s.read_resumed());
    assert_eq!(s.unacked(), 0);
}

#[test]
fn acks_go_a_quarter_window_at_a_time() {
    let window = 4 * MIN_WINDOW;
    let mut s = setup(window, |_| {});
    s.data_peer_sends(window / 4 + 36 * K);
    assert!(s.acks_sent().is_empty());
    s.p.conn_written(s.conn, 20 * K);
    assert!(s.acks_sent().is_empty());
    // A quarter window written, though more is still queued.
    s.p.conn_written(s.conn, window / 4 - 20 * K);
    assert_eq!(s.acks_sent(), [(window / 4) as u32]);
    s.p.conn_written(s.conn, 30 * K);
    assert!(s.acks_sent().is_empty());
    // Everything written: the rest is acknowledged at once.
    s.p.conn_written(s.conn, 6 * K);
    assert_eq!(s.acks_sent(), [(36 * K) as u32]);
}

#[test]
fn acks_go_when_idle_but_not_for_crumbs() {
    let mut s = setup(4 * MIN_WINDOW, |_| {});
    s.data_peer_sends(20 * K);
    s.p.conn_written(s.conn, 20 * K);
    assert_eq!(s.acks_sent(), [(20 * K) as u32]);
    // Idle, but less than a quarter of the smallest window: wait for more.
    s.data_peer_sends(K);
    s.p.conn_written(s.conn, K);
    assert!(s.acks_sent().is_empty());
    s.data_peer_sends(15 * K);
    s.p.conn_written(s.conn, 15 * K);
    assert_eq!(s.acks_sent(), [(16 * K) as u32]);
}

#[test]
fn no_window_stops_counting() {
    let mut s = setup(MIN_WINDOW, |_| {});
    s.read(MIN_WINDOW);
    assert!(s.read_paused());
    s.peer_sends(&Message::ChannelNoWindow { channel: CHANNEL });
    assert!(s.read_resumed());
    assert!(!s.p.channels[&s.key].windowed);
    assert_eq!(s.unacked(), 0);
    for _ in 0..8 {
        s.read(16 * K);
    }
    assert!(!s.read_paused());
    // Nothing will be acknowledged, so nothing is kept for a resume either.
    assert_eq!(s.p.channels[&s.key].stream.log.len(), 0);
}

#[test]
fn a_windowed_channel_may_queue_past_the_high_mark_before_the_link_pauses() {
    let mut s = setup(MIN_WINDOW, |d| {
        d.conn_high_water = 64 * K;
        d.conn_low_water = 16 * K;
    });
    let guard = 2 * MIN_WINDOW + WINDOW_OVERSHOOT;
    assert_eq!(s.p.receive_guard(s.link, s.conn), guard);
    let pauses_link =
        |outs: Vec<Output>| outs.iter().any(|o| matches!(o, Output::PauseLink { .. }));
    s.data_peer_sends(64 * K);
    assert!(!pauses_link(s.outputs()));
    // Without a window the high mark alone holds.
    s.peer_sends(&Message::ChannelNoWindow { channel: CHANNEL });
    assert_eq!(s.p.receive_guard(s.link, s.conn), 0);
    s.data_peer_sends(K);
    assert!(pauses_link(s.outputs()));
}
