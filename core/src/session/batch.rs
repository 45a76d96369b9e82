//! When to cut a Data message from what a local socket delivers.
//!
//! The reference delays every channel's data by a rate-driven 20..500 ms once it flows faster
//! than 256 KiB/s; a request that follows a burst then waits up to half a second. Ours
//! ([`BatchPolicy::LinkPaced`]) looks at the link instead of the clock: while the link has
//! nothing queued a read goes out at once, as its own frame and without a copy; only while
//! frames wait on the link do small reads coalesce, and never for longer than `max_delay`.
//! The reference's policy is kept ([`BatchPolicy::Adaptive`]) for comparison and for users who
//! want its behaviour.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::config::{BatchPolicy, DataConfig};
use crate::time::Instant;

const ADAPTIVE_MIN: Duration = Duration::from_millis(20);
const ADAPTIVE_MAX: Duration = Duration::from_millis(500);
const ADAPTIVE_STEP: Duration = Duration::from_millis(48);
const ADAPTIVE_FAST: f64 = 256.0 * 1024.0;
const ADAPTIVE_SLOW: f64 = 128.0 * 1024.0;

/// Payloads to send now, in order: at most a flushed batch followed by the new chunk.
#[derive(Debug, Default)]
pub struct Ready {
    first: Option<Bytes>,
    second: Option<Bytes>,
}

impl Ready {
    fn one(b: Bytes) -> Self {
        Ready {
            first: Some(b),
            second: None,
        }
    }
    fn push(&mut self, b: Bytes) {
        if self.first.is_none() {
            self.first = Some(b);
        } else {
            debug_assert!(self.second.is_none());
            self.second = Some(b);
        }
    }
}

impl Iterator for Ready {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        self.first.take().or_else(|| self.second.take())
    }
}

/// One channel's outgoing batch.
#[derive(Debug)]
pub struct Batcher {
    /// Held chunks: kept as they came, so a batch of one is sent without a copy.
    held: Vec<Bytes>,
    held_len: usize,
    first_at: Option<Instant>,
    /// Adaptive policy state.
    delay: Duration,
    last_flush: Option<Instant>,
    since_flush: usize,
}

impl Default for Batcher {
    fn default() -> Self {
        Batcher::new()
    }
}

impl Batcher {
    /// A batcher holding nothing.
    pub fn new() -> Self {
        Batcher {
            held: Vec::new(),
            held_len: 0,
            first_at: None,
            delay: Duration::ZERO,
            last_flush: None,
            since_flush: 0,
        }
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.held_len == 0
    }

    /// Bytes held.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn len(&self) -> usize {
        self.held_len
    }

    /// When the held batch must go out at the latest.
    pub fn deadline(&self, cfg: &DataConfig) -> Option<Instant> {
        let first = self.first_at?;
        Some(match cfg.batch {
            BatchPolicy::LinkPaced => first + cfg.max_delay,
            BatchPolicy::Adaptive => first + self.delay,
            BatchPolicy::Immediate => first,
        })
    }

    /// Whether [`Batcher::push`] would send a chunk of `len` bytes at once, alone and
    /// unchanged. Lets the caller build that frame in place, around the bytes as they were read.
    pub fn sends_at_once(&self, len: usize, link_busy: bool, cfg: &DataConfig) -> bool {
        if !self.is_empty() || len == 0 {
            return false;
        }
        match cfg.batch {
            BatchPolicy::Immediate => true,
            BatchPolicy::LinkPaced => !link_busy || len >= cfg.max_batch / 2,
            // Its flushes also update the rate estimate: keep it on the one path.
            BatchPolicy::Adaptive => false,
        }
    }

    /// Offer a chunk read from the local socket. `link_busy`: frames are queued on the link.
    pub fn push(&mut self, now: Instant, chunk: Bytes, link_busy: bool, cfg: &DataConfig) -> Ready {
        if chunk.is_empty() {
            return Ready::default();
        }
        match cfg.batch {
            BatchPolicy::Immediate => Ready::one(chunk),
            BatchPolicy::LinkPaced => self.push_paced(now, chunk, link_busy, cfg),
            BatchPolicy::Adaptive => self.push_adaptive(now, chunk, cfg),
        }
    }

    fn push_paced(
        &mut self,
        now: Instant,
        chunk: Bytes,
        link_busy: bool,
        cfg: &DataConfig,
    ) -> Ready {
        let big = chunk.len() >= cfg.max_batch / 2;
        if self.is_empty() && (!link_busy || big) {
            return Ready::one(chunk);
        }
        let mut ready = Ready::default();
        if big || self.held_len + chunk.len() > cfg.max_batch {
            if let Some(b) = self.take() {
                ready.push(b);
            }
            if big || !link_busy {
                ready.push(chunk);
                return ready;
            }
        }
        self.hold(now, chunk);
        // The link has room again, or the batch is full: send what waited, with this chunk.
        if !link_busy || self.held_len >= cfg.max_batch {
            if let Some(b) = self.take() {
                ready.push(b);
            }
        }
        ready
    }

    fn push_adaptive(&mut self, now: Instant, chunk: Bytes, cfg: &DataConfig) -> Ready {
        self.hold(now, chunk);
        if self.delay.is_zero() || self.held_len >= cfg.max_batch {
            return self.flush(now, cfg).map(Ready::one).unwrap_or_default();
        }
        Ready::default()
    }

    fn hold(&mut self, now: Instant, chunk: Bytes) {
        if self.first_at.is_none() {
            self.first_at = Some(now);
        }
        self.held_len += chunk.len();
        self.held.push(chunk);
    }

    /// Send what is held (deadline reached, link drained, or the channel is ending).
    pub fn flush(&mut self, now: Instant, cfg: &DataConfig) -> Option<Bytes> {
        let out = self.take()?;
        if cfg.batch == BatchPolicy::Adaptive {
            self.adapt(now, out.len());
        }
        Some(out)
    }

    /// The reference's rule: fast flows get a growing delay, slow ones none.
    fn adapt(&mut self, now: Instant, sent: usize) {
        self.since_flush += sent;
        let Some(last) = self.last_flush.replace(now) else {
            self.since_flush = 0;
            return;
        };
        // As the reference: under a millisecond since the last flush counts as no rate at all
        // (a request split into two reads must not switch the delay on).
        let elapsed = now - last;
        let rate = if elapsed <= Duration::from_millis(1) {
            0.0
        } else {
            self.since_flush as f64 / elapsed.as_secs_f64()
        };
        self.since_flush = 0;
        self.delay = if rate > ADAPTIVE_FAST {
            if self.delay.is_zero() {
                ADAPTIVE_MIN
            } else {
                (self.delay + ADAPTIVE_STEP).min(ADAPTIVE_MAX)
            }
        } else if rate < ADAPTIVE_SLOW {
            Duration::ZERO
        } else {
            (self.delay / 2).max(ADAPTIVE_MIN)
        };
    }

    fn take(&mut self) -> Option<Bytes> {
        self.first_at = None;
        let len = std::mem::take(&mut self.held_len);
        match self.held.len() {
            0 => None,
            1 => self.held.pop(),
            _ => {
                let mut joined = BytesMut::with_capacity(len);
                for c in self.held.drain(..) {
                    joined.extend_from_slice(&c);
                }
                Some(joined.freeze())
            }
        }
    }

    /// Current adaptive delay (for tests and metrics).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn adaptive_delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: BatchPolicy) -> DataConfig {
        DataConfig {
            batch: p,
            ..DataConfig::default()
        }
    }

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn idle_link_sends_at_once_without_copy() {
        let c = cfg(BatchPolicy::LinkPaced);
        let mut b = Batcher::new();
        let chunk = Bytes::from_static(b"hello");
        let out: Vec<_> = b.push(t(0), chunk.clone(), false, &c).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr(), chunk.as_ptr());
        assert!(b.is_empty());
    }

    #[test]
    fn busy_link_coalesces_until_deadline_or_size() {
        let c = cfg(BatchPolicy::LinkPaced);
        let mut b = Batcher::new();
        for _ in 0..10 {
            assert_eq!(
                b.push(t(0), Bytes::from_static(b"abc"), true, &c).count(),
                0
            );
        }
        assert_eq!(b.deadline(&c), Some(t(0) + c.max_delay));
        assert_eq!(b.flush(t(1), &c).unwrap().len(), 30);
        // A big chunk flushes what is held, then goes itself, in order.
        b.push(t(2), Bytes::from_static(b"x"), true, &c)
            .for_each(drop);
        let big = Bytes::from(vec![7u8; c.max_batch]);
        let out: Vec<_> = b.push(t(2), big, true, &c).collect();
        assert_eq!(
            out.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, c.max_batch]
        );
    }

    #[test]
    fn held_data_is_sent_before_a_chunk_on_an_idle_link() {
        let c = cfg(BatchPolicy::LinkPaced);
        let mut b = Batcher::new();
        b.push(t(0), Bytes::from_static(b"ab"), true, &c)
            .for_each(drop);
        let out: Vec<_> = b.push(t(0), Bytes::from_static(b"cd"), false, &c).collect();
        assert_eq!(out.concat(), b"abcd");
    }

    #[test]
    fn adaptive_follows_the_reference_rule() {
        let c = cfg(BatchPolicy::Adaptive);
        let mut b = Batcher::new();
        // Delay 0: everything goes at once; a fast flow then switches to 20 ms.
        assert_eq!(
            b.push(t(0), Bytes::from(vec![0; 1000]), false, &c).count(),
            1
        );
        assert_eq!(
            b.push(t(2), Bytes::from(vec![0; 100_000]), false, &c)
                .count(),
            1
        );
        assert_eq!(b.adaptive_delay(), ADAPTIVE_MIN);
        assert_eq!(b.push(t(3), Bytes::from(vec![0; 10]), false, &c).count(), 0);
        assert_eq!(b.deadline(&c), Some(t(23)));
        // A slow period brings it back to 0.
        b.flush(t(5000), &c).unwrap();
        assert_eq!(b.adaptive_delay(), Duration::ZERO);
    }
}
