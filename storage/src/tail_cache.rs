//! The tail cache: the most recently flushed objects, kept whole in memory so
//! that consumers reading near the end of the log never touch the object store.
//!
//! Bounded by bytes; the oldest object is evicted first (the tail moves
//! forward, so first-in is also least-likely-needed).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

pub(crate) struct TailCache {
    max_bytes: usize,
    used_bytes: usize,
    objects: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl TailCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        TailCache {
            max_bytes,
            used_bytes: 0,
            objects: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `object`, evicting older objects to stay under the bound. An object
    /// larger than the whole cache is not kept.
    pub(crate) fn insert(&mut self, key: String, object: Bytes) {
        if object.len() > self.max_bytes || self.objects.contains_key(&key) {
            return;
        }
        while self.used_bytes + object.len() > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.objects.remove(&oldest) {
                self.used_bytes -= evicted.len();
            }
        }
        self.used_bytes += object.len();
        self.order.push_back(key.clone());
        self.objects.insert(key, object);
    }

    /// A zero-copy slice of a cached object.
    pub(crate) fn get_range(&self, key: &str, start: u64, end: u64) -> Option<Bytes> {
        let object = self.objects.get(key)?;
        (end as usize <= object.len() && start <= end)
            .then(|| object.slice(start as usize..end as usize))
    }

    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_to_stay_bounded() {
        let mut cache = TailCache::new(10);
        cache.insert("a".into(), Bytes::from_static(b"aaaa"));
        cache.insert("b".into(), Bytes::from_static(b"bbbb"));
        cache.insert("c".into(), Bytes::from_static(b"cccc"));
        assert!(cache.used_bytes() <= 10);
        assert!(cache.get_range("a", 0, 1).is_none());
        assert_eq!(cache.get_range("c", 1, 3).unwrap(), &b"cc"[..]);
    }

    #[test]
    fn oversized_object_is_not_kept() {
        let mut cache = TailCache::new(3);
        cache.insert("a".into(), Bytes::from_static(b"aaaa"));
        assert_eq!(cache.used_bytes(), 0);
    }
}
