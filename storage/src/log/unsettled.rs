//! Objects whose fate this log has not settled: written or being written,
//! and either not yet committed or with a commit that may still apply (a
//! timed-out write or commit). Garbage collection must not delete them,
//! however old they look: a commit that applies after its object is gone
//! would leave index entries pointing at nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Uncertain objects remembered, at most; the oldest are forgotten first
/// (by then the GC grace period, counted from the key's time, protects them).
const UNCERTAIN_KEPT: usize = 10_000;

#[derive(Default)]
pub struct UnsettledObjects {
    inner: Mutex<Sets>,
}

#[derive(Default)]
struct Sets {
    in_flight: HashSet<String>,
    uncertain: VecDeque<String>,
}

impl UnsettledObjects {
    /// Whether garbage collection must leave `key` alone.
    pub fn contains(&self, key: &str) -> bool {
        let sets = self.inner.lock().expect("unsettled lock");
        sets.in_flight.contains(key) || sets.uncertain.iter().any(|k| k == key)
    }

    /// How many objects are unsettled (in flight plus uncertain).
    pub fn len(&self) -> usize {
        let sets = self.inner.lock().expect("unsettled lock");
        sets.in_flight.len() + sets.uncertain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A flush sealed its object under `key`.
    pub(crate) fn sealed(&self, key: &str) {
        let mut sets = self.inner.lock().expect("unsettled lock");
        sets.in_flight.insert(key.to_string());
    }

    /// The flush ended: committed, or failed with nothing committed
    /// (`certain`), or failed with a write or commit that may still land.
    pub(crate) fn settled(&self, key: &str, certain: bool) {
        let mut sets = self.inner.lock().expect("unsettled lock");
        sets.in_flight.remove(key);
        if !certain {
            if sets.uncertain.len() == UNCERTAIN_KEPT {
                sets.uncertain.pop_front();
            }
            sets.uncertain.push_back(key.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_and_uncertain_objects_are_kept_settled_ones_not() {
        let u = UnsettledObjects::default();
        for key in ["a", "b", "c"] {
            u.sealed(key);
        }
        u.settled("a", true);
        u.settled("b", false);
        assert!(!u.contains("a"));
        assert!(u.contains("b"), "uncertain: its commit may still apply");
        assert!(u.contains("c"), "in flight");
        for i in 0..UNCERTAIN_KEPT {
            u.settled(&format!("x{i}"), false);
        }
        assert!(!u.contains("b"), "the oldest uncertain key is forgotten");
        assert!(u.contains("x0"));
    }
}
