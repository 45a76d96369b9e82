//! The byte accounting of one channel, both directions: what flow control bounds and what a
//! resume must replay. Pure bookkeeping, no I/O.
//!
//! Offsets count payload bytes of the channel's stream since it opened (as read from the
//! local socket, before any compression), so both ends agree on them whatever frames carried
//! the bytes.
//!
//! Outbound, `acked <= resend_from <= sent`: bytes below `acked` were written out by the
//! peer; the log holds `[log.start(), sent)`, which is what a resume may have to send again.
//! Inbound, `ack_sent <= written <= received`.

use std::collections::VecDeque;

use bytes::Bytes;

/// Payloads sent and not yet known to be delivered, in order, for replay after a lost link.
#[derive(Debug, Default)]
pub struct ReplayLog {
    chunks: VecDeque<Bytes>,
    /// Stream offset of the first byte of `chunks[0]`.
    start: u64,
    /// Bytes held.
    len: usize,
}

impl ReplayLog {
    /// An empty log whose next byte is at `offset`.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn at(offset: u64) -> Self {
        ReplayLog {
            chunks: VecDeque::new(),
            start: offset,
            len: 0,
        }
    }

    /// Stream offset of the first byte held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Stream offset just past the last byte held.
    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Bytes held.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append the next bytes of the stream (sent data kept for replay).
    pub fn push(&mut self, payload: Bytes) {
        if payload.is_empty() {
            return;
        }
        self.len += payload.len();
        self.chunks.push_back(payload);
    }

    /// Forget every byte before `offset` (delivered). Offsets outside the log are clamped: a
    /// peer cannot make us drop what we never held, nor move the log backwards.
    pub fn trim_to(&mut self, offset: u64) {
        let offset = offset.min(self.end());
        while self.start < offset {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let drop = (offset - self.start).min(front.len() as u64) as usize;
            if drop == front.len() {
                self.chunks.pop_front();
            } else {
                // A slice of the same buffer: no copy.
                *front = front.slice(drop..);
            }
            self.start += drop as u64;
            self.len -= drop;
        }
    }

    /// Forget everything and restart at `offset`.
    pub fn reset(&mut self, offset: u64) {
        self.chunks.clear();
        self.start = offset;
        self.len = 0;
    }

    /// The held bytes from `offset` on, as slices of what was pushed (no copies). `offset`
    /// below the start yields everything held, past the end nothing.
    pub fn since(&self, offset: u64) -> Vec<Bytes> {
        let mut skip = offset.saturating_sub(self.start);
        let mut out = Vec::new();
        for c in &self.chunks {
            let n = c.len() as u64;
            if skip >= n {
                skip -= n;
                continue;
            }
            out.push(c.slice(skip as usize..));
            skip = 0;
        }
        out
    }
}

/// One channel's byte counts in both directions.
#[derive(Debug, Default)]
pub struct Stream {
    /// Outbound: bytes of the stream handed to a link (or logged while the link is down) ...
    pub sent: u64,
    /// ... of which the peer has written out this many (its acknowledgements).
    pub acked: u64,
    /// Outbound bytes kept for replay. Only a channel that can resume keeps what it sent;
    /// any channel keeps here what it could not send while suspended.
    pub log: ReplayLog,
    /// Keep sent bytes until acknowledged (the channel resumes byte-exactly).
    pub keep: bool,
    /// Inbound: bytes of the peer's stream received ...
    pub received: u64,
    /// ... written out to the local socket ...
    pub written: u64,
    /// ... and acknowledged to the peer.
    pub ack_sent: u64,
}

impl Stream {
    /// Bytes sent and not acknowledged: what counts against the window.
    pub fn unacked(&self) -> u64 {
        self.sent.saturating_sub(self.acked)
    }

    /// Count `payload` as sent; keep it when the channel keeps what it sends or when it is
    /// only being logged (`held`: the link is down, it goes out on resume).
    pub fn on_send(&mut self, payload: &Bytes, held: bool) {
        if self.keep || held {
            if self.log.is_empty() && self.log.start() != self.sent {
                self.log.reset(self.sent);
            }
            self.log.push(payload.clone());
        }
        self.sent += payload.len() as u64;
    }

    /// The peer acknowledged `n` more bytes. Never past what was sent.
    pub fn on_ack(&mut self, n: u64) {
        self.acked = self.acked.saturating_add(n).min(self.sent);
        if self.keep {
            self.log.trim_to(self.acked);
        }
    }

    /// The peer, resuming, has received `received` of our bytes and written `written`. The
    /// log is cut to what it lacks, which is returned for sending again. Counts from a peer
    /// that claims more than we sent are clamped.
    pub fn on_peer_resume(&mut self, received: u64, written: u64) -> Vec<Bytes> {
        let received = received.min(self.sent);
        self.acked = self.acked.max(written.min(received));
        self.log.trim_to(received);
        let again = self.log.since(received);
        if !self.keep {
            // Held only while the link was down: once sent, not kept.
            self.log.reset(self.sent);
        }
        again
    }

    /// A resume without counts (the reference's): what waited for the link goes now; what
    /// was lost in flight stays lost.
    pub fn take_held(&mut self) -> Vec<Bytes> {
        let held = self.log.since(0);
        self.log.reset(self.sent);
        held
    }

    /// `n` bytes of the peer's stream arrived.
    pub fn on_receive(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// `n` received bytes were written out to the local socket.
    pub fn on_written(&mut self, n: usize) {
        self.written = (self.written + n as u64).min(self.received);
    }

    /// Bytes written out and not yet acknowledged to the peer.
    pub fn to_ack(&self) -> u64 {
        self.written - self.ack_sent
    }

    /// Acknowledge up to `max` bytes now; returns how many.
    pub fn take_ack(&mut self, max: u64) -> u64 {
        let n = self.to_ack().min(max);
        self.ack_sent += n;
        n
    }

    /// Our side of a resume: everything written counts as acknowledged from now on.
    pub fn resume_counts(&mut self) -> (u64, u64) {
        self.ack_sent = self.written;
        (self.received, self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn cat(v: Vec<Bytes>) -> String {
        v.iter()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<String>()
    }

    #[test]
    fn log_trims_and_replays_across_chunk_boundaries() {
        let mut l = ReplayLog::at(10);
        l.push(b("abc"));
        l.push(b(""));
        l.push(b("defg"));
        assert_eq!((l.start(), l.end(), l.len()), (10, 17, 7));
        assert_eq!(cat(l.since(0)), "abcdefg");
        assert_eq!(cat(l.since(12)), "cdefg");
        assert_eq!(cat(l.since(13)), "defg");
        assert_eq!(cat(l.since(17)), "");
        assert_eq!(cat(l.since(99)), "");
        l.trim_to(14);
        assert_eq!((l.start(), l.len()), (14, 3));
        assert_eq!(cat(l.since(0)), "efg");
        // Backwards and past-the-end trims are clamped.
        l.trim_to(5);
        assert_eq!(l.start(), 14);
        l.trim_to(1000);
        assert_eq!((l.start(), l.len(), l.end()), (17, 0, 17));
    }

    #[test]
    fn a_resume_resends_exactly_what_the_peer_lacks() {
        let mut s = Stream {
            keep: true,
            ..Stream::default()
        };
        s.on_send(&b("hello "), false);
        s.on_send(&b("world"), false);
        s.on_ack(3);
        assert_eq!((s.unacked(), s.log.len()), (8, 8));
        // The peer got 7 bytes ("hello w"), wrote 5 of them; "orld" was in flight and lost.
        let again = s.on_peer_resume(7, 5);
        assert_eq!(cat(again), "orld");
        assert_eq!(s.acked, 5);
        assert_eq!(s.log.start(), 7);
        s.on_ack(6);
        assert_eq!((s.acked, s.log.len()), (11, 0));
    }

    #[test]
    fn a_lying_peer_cannot_make_us_drop_unsent_data_or_overcount() {
        let mut s = Stream {
            keep: true,
            ..Stream::default()
        };
        s.on_send(&b("abcdef"), false);
        assert_eq!(cat(s.on_peer_resume(1_000, 2_000)), "");
        assert_eq!(s.acked, 6);
        s.on_ack(u64::MAX);
        assert_eq!(s.acked, 6);
        let mut r = Stream::default();
        r.on_receive(4);
        r.on_written(10);
        assert_eq!(r.written, 4);
    }

    #[test]
    fn a_channel_that_cannot_resume_keeps_only_what_waited_for_the_link() {
        let mut s = Stream::default();
        s.on_send(&b("sent"), false);
        assert!(s.log.is_empty());
        s.on_send(&b("held"), true);
        s.on_send(&b("!"), true);
        assert_eq!((s.log.start(), s.log.len()), (4, 5));
        // A reference peer resumes without counts: everything held goes, nothing else.
        assert_eq!(cat(s.take_held()), "held!");
        assert!(s.log.is_empty());
        assert_eq!(s.log.start(), 9);
        let mut s = Stream::default();
        s.on_send(&b("sent"), false);
        s.on_send(&b("held"), true);
        assert_eq!(cat(s.log.since(0)), "held");
        assert_eq!(cat(s.on_peer_resume(4, 0)), "held");
        assert!(s.log.is_empty());
        assert_eq!(s.log.start(), 8);
    }

    #[test]
    fn acknowledgements_are_deltas_until_a_resume_makes_them_absolute() {
        let mut r = Stream::default();
        r.on_receive(100);
        r.on_written(60);
        assert_eq!(r.take_ack(50), 50);
        assert_eq!(r.to_ack(), 10);
        r.on_written(40);
        assert_eq!(r.resume_counts(), (100, 100));
        assert_eq!(r.to_ack(), 0);
    }
}
