//! Deadlines of a machine, earliest first. Each key has at most one deadline; setting it again
//! moves it. Everything is O(log n) and allocation-free in steady state.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

/// Deadlines by key (at most one per key), earliest first.
#[derive(Debug)]
pub struct TimerQueue<K: Ord + Copy> {
    order: BTreeSet<(Instant, K)>,
    due: BTreeMap<K, Instant>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            order: BTreeSet::new(),
            due: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// Arm `key` to fire at `at`, replacing any earlier setting.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.due.insert(key, at) {
            self.order.remove(&(old, key));
        }
        self.order.insert((at, key));
    }

    /// Arm `key` unless it is already armed for an earlier instant.
    pub fn set_if_earlier(&mut self, key: K, at: Instant) {
        match self.due.get(&key) {
            Some(old) if *old <= at => {}
            _ => self.set(key, at),
        }
    }

    /// Disarm `key` (nothing happens if it is not armed).
    pub fn cancel(&mut self, key: K) {
        if let Some(old) = self.due.remove(&key) {
            self.order.remove(&(old, key));
        }
    }

    /// When `key` fires; `None` if it is not armed.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn get(&self, key: K) -> Option<Instant> {
        self.due.get(&key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Take one key due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, key) = *self.order.first()?;
        if at > now {
            return None;
        }
        self.order.pop_first();
        self.due.remove(&key);
        Some(key)
    }

    /// Keys armed.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether no key is armed.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_and_moves() {
        let mut q = TimerQueue::default();
        let t = |n| Instant::from_nanos(n);
        q.set(1u32, t(30));
        q.set(2, t(10));
        q.set(1, t(5));
        q.set_if_earlier(2, t(20));
        assert_eq!(q.next(), Some(t(5)));
        assert_eq!(q.pop_due(t(7)), Some(1));
        assert_eq!(q.pop_due(t(7)), None);
        q.cancel(2);
        assert!(q.is_empty());
        assert_eq!(q.next(), None);
    }
}
