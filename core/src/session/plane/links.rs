//! The links: frames queued on them and credited back as written, pausing their reading for a
//! full writer elsewhere, and liveness.

use std::collections::VecDeque;

use bytes::Bytes;
use tracing::debug;

use super::{LinkEntry, PeerKey, Plane, Resume, Timer};
use crate::session::backlog::Backlog;
use crate::session::channel::{ChanKey, Local};
use crate::session::output::{Event, Output};
use crate::session::LinkId;
use crate::time::Instant;
use crate::wire::{self, Message};

impl Plane {
    /// Register a link (opened by the client, accepted by the server).
    pub fn add_link(&mut self, now: Instant, link: LinkId) {
        self.links.insert(
            link,
            LinkEntry {
                ready: false,
                backlog: Backlog::new(self.data.link_high_water, self.data.link_low_water),
                paused_readers: Vec::new(),
                paused_links: Vec::new(),
                paused_by: 0,
                batched: Vec::new(),
                heard: now,
                malformed_logged: false,
                flow_window: None,
                in_order: VecDeque::new(),
                head_written: 0,
                owner: PeerKey::default(),
                resume: Resume::Off,
                deferred: Vec::new(),
            },
        );
    }

    /// Mark a link authenticated and start its liveness pings.
    pub fn set_link_ready(&mut self, now: Instant, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.ready = true;
            self.timers
                .set(Timer::Ping(link), now + self.timings.ping_interval);
            self.event(Event::LinkReady { link });
        }
    }

    /// Queue one frame on a link. Returns false if the link is unknown.
    pub fn transmit(&mut self, link: LinkId, frame: Bytes) -> bool {
        self.transmit_for(link, None, frame)
    }

    pub(super) fn transmit_for(
        &mut self,
        link: LinkId,
        key: Option<ChanKey>,
        frame: Bytes,
    ) -> bool {
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        if !l.deferred.is_empty() {
            self.flush_deferred(link);
        }
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        l.backlog.add(frame.len());
        l.in_order.push_back((key, frame.len()));
        self.stats.frames_to_links += 1;
        self.stats.bytes_to_links += frame.len() as u64;
        self.out.push_back(Output::Transmit { link, frame });
        true
    }

    /// Queue a frame that may wait for the next one (see [`super::LinkEntry::deferred`]).
    pub(super) fn send_deferred(&mut self, now: Instant, link: LinkId, msg: &Message) {
        let frame = match wire::encode::encode_to_bytes(msg) {
            Ok(f) => f,
            Err(e) => {
                debug!(%link, error = %e, "cannot encode {}", msg.name());
                return;
            }
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.deferred.push(frame);
        if l.deferred.len() == 1 {
            self.timers.set(Timer::Deferred(link), now + super::DEFER);
        } else if l.deferred.len() >= super::DEFER_MAX {
            self.flush_deferred(link);
        }
    }

    /// Send the deferred frames of `link` now.
    pub(super) fn flush_deferred(&mut self, link: LinkId) {
        self.timers.cancel(Timer::Deferred(link));
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for frame in std::mem::take(&mut l.deferred) {
            l.backlog.add(frame.len());
            l.in_order.push_back((None, frame.len()));
            self.stats.frames_to_links += 1;
            self.stats.bytes_to_links += frame.len() as u64;
            self.out.push_back(Output::Transmit { link, frame });
        }
    }

    /// Encode and queue a control message.
    pub fn send(&mut self, link: LinkId, msg: &Message) {
        match wire::encode::encode_to_bytes(msg) {
            Ok(frame) => {
                self.transmit(link, frame);
            }
            Err(e) => debug!(%link, error = %e, "cannot encode {}", msg.name()),
        }
    }

    /// A link not worth giving new channels: its reading is paused for a slow local writer,
    /// or its unsent frames are over the high mark.
    pub fn link_congested(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.paused_by > 0 || l.backlog.is_over())
    }

    pub(super) fn link_busy(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.backlog.queued() >= self.data.max_batch)
    }

    pub(super) fn link_over(&self, link: LinkId) -> bool {
        self.links.get(&link).is_some_and(|l| l.backlog.is_over())
    }

    /// Frames of `bytes` were written to the link's socket.
    pub fn link_sent(&mut self, now: Instant, link: LinkId, bytes: usize) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let drained = l.backlog.sub(bytes);
        let mut credits: Vec<(ChanKey, usize)> = Vec::new();
        let mut left = bytes + l.head_written;
        l.head_written = 0;
        while let Some(&(key, n)) = l.in_order.front() {
            if n > left {
                l.head_written = left;
                break;
            }
            left -= n;
            l.in_order.pop_front();
            if let Some(key) = key {
                credits.push((key, n));
            }
        }
        let idle = l.backlog.queued() < self.data.max_batch;
        let batched = if idle {
            std::mem::take(&mut l.batched)
        } else {
            Vec::new()
        };
        let (readers, links) = if drained {
            (
                std::mem::take(&mut l.paused_readers),
                std::mem::take(&mut l.paused_links),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let share = self.data.channel_link_share;
        for (key, n) in credits {
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            ch.on_link = ch.on_link.saturating_sub(n);
            if ch.over_share && ch.on_link <= share / 2 {
                ch.over_share = false;
                if let Some(conn) = ch.conn() {
                    self.resume_conn_read(conn);
                }
            }
        }
        for key in batched {
            self.flush_batch(now, key);
        }
        for conn in readers {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.parked_on = None;
            }
            self.resume_conn_read(conn);
        }
        for other in links {
            self.unblock_link(other);
        }
    }

    pub(super) fn block_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.paused_by += 1;
            if l.paused_by == 1 {
                // A link we do not read cannot deliver its pong: don't count it as dead.
                self.timers.cancel(Timer::Pong(link));
                self.out.push_back(Output::PauseLink { link });
            }
        }
    }

    pub(super) fn unblock_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.paused_by = l.paused_by.saturating_sub(1);
            if l.paused_by == 0 {
                self.out.push_back(Output::ResumeLink { link });
            }
        }
    }

    /// Liveness: a pong (or any frame) arrived.
    /// The peer showed it is alive: any frame, a pong, or a ping of its own.
    pub fn link_alive(&mut self, now: Instant, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.heard = now;
        }
        self.timers.cancel(Timer::Pong(link));
    }

    /// Whether the peer on `link` showed it is alive less than `within` before `now`.
    pub fn heard_within(&self, link: LinkId, now: Instant, within: std::time::Duration) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| now.saturating_duration_since(l.heard) < within)
    }

    /// Forget a link. Its channels are suspended for the transport grace when they can be
    /// resumed (see [`Resume`]), otherwise ended; `reason` goes to the far ends of those.
    pub fn remove_link(&mut self, now: Instant, link: LinkId, reason: &str) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        if l.ready {
            self.event(Event::LinkLost {
                link,
                reason: reason.to_string(),
            });
        }
        self.timers.cancel(Timer::Ping(link));
        self.timers.cancel(Timer::Pong(link));
        self.timers.cancel(Timer::Deferred(link));
        for other in l.paused_links {
            self.unblock_link(other);
        }
        let keys: Vec<ChanKey> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.link == link
                    || c.alias == Some(link)
                    || matches!(c.local, Local::Route(Some(o)) if o == link)
            })
            .map(|(k, _)| *k)
            .collect();
        let suspended_before = self.stats.channels_suspended;
        for key in keys {
            self.link_lost(now, key, link, l.resume, reason);
        }
        // Sockets that waited for this link to drain: read again, unless their channel is
        // suspended (it holds them itself).
        for conn in l.paused_readers {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.parked_on == Some(link) {
                    c.parked_on = None;
                }
            }
            self.resume_conn_read(conn);
        }
        let suspended = self.stats.channels_suspended - suspended_before;
        if suspended > 0 {
            debug!(
                %link,
                channels = suspended,
                grace = ?self.timings.transport_grace,
                "link lost: channels suspended until it is back"
            );
            // A client with another live link resumes them there at once.
            self.resume_suspended(now);
        }
    }
}
