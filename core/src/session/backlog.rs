//! Backpressure bookkeeping. The LinkSocks wire has no window updates, so flow control is
//! local: bytes handed to a writer and not yet written are counted, and crossing the high
//! water mark stops the reader that feeds it until the count falls below the low mark.
//! Nothing is ever dropped (the reference drops at 1,000 queued messages); memory is bounded
//! by the marks plus one read per paused source. (With peers that speak our extension,
//! channels also have windows: see `plane/flow.rs`.)

/// Unwritten bytes queued toward one writer (a link or a local socket), with hysteresis.
#[derive(Clone, Debug)]
pub struct Backlog {
    queued: usize,
    high: usize,
    low: usize,
    over: bool,
}

impl Backlog {
    /// An empty backlog that is over its mark above `high` bytes and back under it below `low`.
    pub fn new(high: usize, low: usize) -> Self {
        Backlog {
            queued: 0,
            high,
            low: low.min(high),
            over: false,
        }
    }

    /// Count `n` more bytes queued. True when this crosses the high mark.
    pub fn add(&mut self, n: usize) -> bool {
        self.queued = self.queued.saturating_add(n);
        if !self.over && self.queued >= self.high {
            self.over = true;
            return true;
        }
        false
    }

    /// Count `n` bytes written. True when this brings an over-full backlog below the low mark.
    pub fn sub(&mut self, n: usize) -> bool {
        self.queued = self.queued.saturating_sub(n);
        if self.over && self.queued <= self.low {
            self.over = false;
            return true;
        }
        false
    }

    /// Bytes handed to the writer and not yet reported written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Between crossing the high mark and falling below the low one.
    pub fn is_over(&self) -> bool {
        self.over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis() {
        let mut b = Backlog::new(100, 40);
        assert!(!b.add(60));
        assert!(b.add(60));
        assert!(!b.add(10));
        assert!(!b.sub(50));
        assert!(b.is_over());
        assert!(b.sub(50));
        assert!(!b.is_over());
        assert!(!b.sub(1000));
        assert_eq!(b.queued(), 0);
    }
}
