//! The invariants, checked after every step and at the end of a run. See the module
//! documentation of [`crate::sim`] for their precise statement.

use std::collections::HashMap;
use std::fmt::Write as _;

use linksocks_core::session::plane::{self, Timer};
use linksocks_core::session::LinkId;

use super::app::Plan;
use super::world::{NodeIdx, World};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum HState {
    Open,
    /// Conn only: the driver reported the socket closed; only `Close` may still name it.
    ReportedClosed,
    Closed,
}

/// The handles a machine created, and which of them are closed.
#[derive(Default)]
pub struct Handles {
    map: HashMap<(&'static str, u64), HState>,
}

impl World {
    fn handle_err(&mut self, n: NodeIdx, msg: String) {
        let name = self.nodes[n].name.clone();
        self.violation(format!("{name}: {msg}"));
    }

    /// A machine created a handle (an output that opens it, or a handle returned to us).
    pub(crate) fn h_create(&mut self, n: NodeIdx, kind: &'static str, id: u64) {
        if let Some(old) = self.nodes[n].handles.map.insert((kind, id), HState::Open) {
            self.handle_err(n, format!("{kind} handle {id} created again (was {old:?})"));
        }
    }

    /// An output names a handle: it must exist and not be closed.
    pub(crate) fn h_use(&mut self, n: NodeIdx, kind: &'static str, id: u64, what: &str) -> bool {
        match self.nodes[n].handles.map.get(&(kind, id)) {
            None => {
                self.handle_err(
                    n,
                    format!("{what} names {kind} {id}, which was never created"),
                );
                false
            }
            Some(HState::Closed) => {
                self.handle_err(
                    n,
                    format!("{what} names {kind} {id}, which is already closed"),
                );
                false
            }
            Some(_) => true,
        }
    }

    /// An output closes a handle.
    pub(crate) fn h_close(&mut self, n: NodeIdx, kind: &'static str, id: u64, what: &str) -> bool {
        if !self.h_use(n, kind, id, what) {
            return false;
        }
        self.nodes[n].handles.map.insert((kind, id), HState::Closed);
        true
    }

    /// A `Write`: the socket must be open and not reported closed by the driver.
    pub(crate) fn h_write(&mut self, n: NodeIdx, id: u64) -> bool {
        if !self.h_use(n, "conn", id, "Write") {
            return false;
        }
        if self.nodes[n].handles.map.get(&("conn", id)) == Some(&HState::ReportedClosed) {
            self.handle_err(
                n,
                format!("Write to conn {id} after the driver reported it closed"),
            );
            return false;
        }
        true
    }

    /// The driver reported a socket ended: with an error (nothing may be written to it any
    /// more) or a clean EOF (a half-close: the machine may still write, e.g. the SOCKS reply to
    /// an application that sent its request, data and EOF at once).
    pub(crate) fn h_reported_closed(&mut self, n: NodeIdx, id: u64, error: bool) {
        if !error {
            return;
        }
        if let Some(s) = self.nodes[n].handles.map.get_mut(&("conn", id)) {
            if *s == HState::Open {
                *s = HState::ReportedClosed;
            }
        }
    }

    /// The driver told the machine a link is gone.
    pub(crate) fn h_link_closed(&mut self, n: NodeIdx, id: u64) {
        self.nodes[n]
            .handles
            .map
            .insert(("link", id), HState::Closed);
    }

    // ------------------------------------------------------------------ memory

    /// The per-channel bound: what one channel may hold in a machine.
    ///
    /// Derivation (DataConfig `d`, the simulation's largest local read `r`): a channel holds
    /// its batch (at most `d.max_batch + r`: a batch is cut once it reaches `max_batch`, so it
    /// overshoots by at most one read), its early data (the reader or link feeding it is
    /// paused once it reaches `d.conn_high_water`, so at most one more read or frame gets in)
    /// and its socket's unwritten bytes (the link is paused once they reach
    /// `d.conn_high_water`, one frame may still be in the call that crossed the mark). Early
    /// data and unwritten bytes never peak together (the former becomes the latter when the
    /// channel opens). With `P = d.max_batch + r + 64 KiB` (the largest frame payload: a batch,
    /// a read, or a UDP datagram) the bound is `d.conn_high_water + 2 P + 4 KiB` (SOCKS replies
    /// and slack). With per-channel flow control the link is paused only past
    /// `conn_high_water + 2 window + WINDOW_OVERSHOOT` (a correct sender stays within its window
    /// plus one frame; the rest guards against one that does not). A channel that can resume
    /// also keeps what it sent until it is acknowledged: its window plus the payload that
    /// crossed it.
    pub fn channel_bound(&self, n: NodeIdx) -> usize {
        let d = &self.nodes[n].data;
        let p = d.max_batch + self.net.max_read + (64 << 10);
        let (guard, replay) = if d.channel_flow {
            let w = d.channel_window.max(plane::MIN_WINDOW);
            (2 * w + plane::WINDOW_OVERSHOOT, w + p)
        } else {
            (0, 0)
        };
        d.conn_high_water + guard + replay + 2 * p + 4096
    }

    /// The bound on everything a machine buffers: per link its high water mark (or the UDP
    /// drop mark when UDP is used) plus one payload per channel that may write after the mark
    /// was crossed, and per channel its own bound.
    pub fn global_bound(&self, n: NodeIdx) -> usize {
        let d = &self.nodes[n].data;
        let p = d.max_batch + self.net.max_read + (64 << 10);
        let plane = self.nodes[n].plane();
        let links = plane.links.len().max(1);
        let channels = plane.channel_count();
        let link_mark = if self.udp_used {
            d.link_high_water.max(d.udp_drop_water)
        } else {
            d.link_high_water
        };
        links * (link_mark + p) + channels * (self.channel_bound(n) + p) + (64 << 10)
    }

    pub(crate) fn check_memory(&mut self, n: NodeIdx) {
        let plane = self.nodes[n].plane();
        let per = plane.max_channel_bytes();
        let total = plane.buffered_bytes();
        let (cb, gb) = (self.channel_bound(n), self.global_bound(n));
        if per > cb {
            let name = self.nodes[n].name.clone();
            self.violation(format!(
                "{name}: a channel holds {per} bytes, over the bound {cb}"
            ));
        }
        if total > gb {
            let name = self.nodes[n].name.clone();
            self.violation(format!(
                "{name}: {total} bytes buffered, over the bound {gb}"
            ));
        }
    }

    // ------------------------------------------------------------------ the end of a run

    /// Timers a machine may keep when nothing is open: the cleaner, pings and pong deadlines
    /// of its links, reconnect timers of its lost links. Returns (allowed present, total).
    fn timer_census(&self, n: NodeIdx) -> (usize, usize, String) {
        let plane = self.nodes[n].plane();
        let mut allowed = 0;
        let mut which = String::new();
        if plane.timers.get(Timer::Cleaner).is_some() {
            allowed += 1;
        }
        let ids: Vec<LinkId> = self.nodes[n].link_ids.clone();
        for l in ids {
            for t in [Timer::Ping(l), Timer::Pong(l), Timer::Reconnect(l)] {
                if plane.timers.get(t).is_some() {
                    allowed += 1;
                    let _ = write!(which, "{t:?} ");
                }
            }
        }
        (allowed, plane.timers.len(), which)
    }

    /// Every connection is closed: nothing may be left in the machines but periodic timers.
    pub fn check_quiescent(&mut self) {
        for n in 0..self.nodes.len() {
            let name = self.nodes[n].name.clone();
            let p = self.nodes[n].plane();
            let (ch, conns, udps, buf) = (
                p.channel_count(),
                p.conn_count(),
                p.udp_count(),
                p.buffered_bytes(),
            );
            if ch != 0 || conns != 0 || udps != 0 || buf != 0 {
                self.violation(format!(
                    "{name}: left after every connection closed: {ch} channels, {conns} sockets, {udps} UDP sockets, {buf} bytes buffered"
                ));
            }
            let (allowed, total, which) = self.timer_census(n);
            if total > allowed {
                self.violation(format!(
                    "{name}: {} timers left besides the periodic ones (periodic: cleaner + {which})",
                    total - allowed
                ));
            }
        }
        for s in 0..self.socks.len() {
            let sk = &self.socks[s];
            if !sk.machine_closed && !sk.reported_closed {
                let (node, conn) = (sk.node, sk.conn);
                let name = self.nodes[node].name.clone();
                self.violation(format!("{name}: {conn} was never closed"));
            }
        }
        for u in 0..self.udps.len() {
            if !self.udps[u].closed {
                let (node, udp) = (self.udps[u].node, self.udps[u].udp);
                let name = self.nodes[node].name.clone();
                self.violation(format!("{name}: {udp} was never closed"));
            }
        }
        for a in 0..self.apps.len() {
            if self.apps[a].started_at.is_some() && !self.apps[a].finished() {
                self.violation(format!(
                    "app {a} never finished: {}",
                    self.apps[a].summary()
                ));
            }
        }
        self.assert_ok();
    }

    /// Fault-free runs: every application got what its plan asked for, and every upload
    /// reached its target entirely (nothing is lost without an error when nothing failed).
    pub fn assert_all_succeeded(&self) {
        let mut bad = Vec::new();
        for (a, app) in self.apps.iter().enumerate() {
            if app.started_at.is_none() {
                continue;
            }
            if !app.success {
                bad.push(format!("app {a}: {}", app.summary()));
            }
        }
        if !bad.is_empty() {
            panic!(
                "{} of {} applications did not succeed in a fault-free run:\n  {}\n{}",
                bad.len(),
                self.apps.len(),
                bad.join("\n  "),
                self.describe()
            );
        }
    }

    /// Applications whose plan completed.
    pub fn succeeded(&self) -> usize {
        self.apps.iter().filter(|a| a.success).count()
    }

    /// Every application and target finished and no machine holds a channel.
    pub fn is_quiet(&self) -> bool {
        self.apps
            .iter()
            .all(|a| a.started_at.is_some() && a.finished())
            && self
                .targets
                .iter()
                .all(|t| t.closed_self.is_some() || t.closed_by_machine.is_some())
            && self.nodes.iter().all(|n| n.plane().channel_count() == 0)
    }

    /// Run until the world is quiet (every application and target finished, no channel left),
    /// then `settle` longer, then check that nothing is left. Panics (with what is still
    /// running) if it is not quiet by `deadline`.
    pub fn finish(&mut self, deadline: linksocks_core::time::Instant, settle: std::time::Duration) {
        let done = self.run_until_pred(deadline, |w| w.is_quiet());
        if !done {
            let mut pending: Vec<String> = self
                .apps
                .iter()
                .enumerate()
                .filter(|(_, a)| a.started_at.is_some() && !a.finished())
                .take(10)
                .map(|(i, a)| format!("app {i}: {}", a.summary()))
                .collect();
            for (i, t) in self.targets.iter().enumerate() {
                if t.closed_self.is_none() && t.closed_by_machine.is_none() {
                    pending.push(format!(
                        "target {i} of app {}: received {} sent {}",
                        t.app, t.recv, t.sent
                    ));
                }
            }
            for n in &self.nodes {
                let c = n.plane().channel_count();
                if c > 0 {
                    pending.push(format!("{}: {c} channels", n.name));
                    for line in n.plane().describe_channels().into_iter().take(5) {
                        pending.push(format!("  {line}"));
                    }
                }
            }
            panic!(
                "not quiet at {deadline:?} (something hangs):\n  {}\n{}",
                pending.join("\n  "),
                self.describe()
            );
        }
        self.run_for(settle);
        self.check_quiescent();
    }

    /// Uploads: whether the target got everything (set as success by the target side).
    pub fn upload_apps(&self) -> impl Iterator<Item = usize> + '_ {
        self.apps
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a.spec.plan, Plan::Upload { .. }))
            .map(|(i, _)| i)
    }
}
