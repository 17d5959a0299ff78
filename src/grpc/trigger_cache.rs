//! Parsed triggers by their raw metadata. KEDA sends the same few metadata maps over and
//! over (every poll of every ScaledObject, several calls each), so a call that finds its map
//! here skips parsing, URL parsing and hashing the metric name. Bounded in entries and
//! bytes: when either bound would be passed the cache starts over, so that a flood of
//! distinct maps costs at most the bound.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use crate::error::Error;
use crate::metric_name::metric_name;
use crate::trigger::Trigger;

/// Most triggers kept: far more ScaledObjects than a cluster usually has.
const MAX_ENTRIES: usize = 4096;
/// Most metadata bytes kept, keys and values (a trigger holds at most 16 KiB).
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// A trigger as every call needs it.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The validated trigger.
    pub(crate) trigger: Trigger,
    /// Its metric's name, as `GetMetricSpec` gives it.
    pub(crate) metric_name: String,
}

/// One cached map: its pairs sorted by key, to compare without hashing.
struct Entry {
    pairs: Vec<(String, String)>,
    parsed: Arc<Parsed>,
}

impl Entry {
    fn holds(&self, metadata: &HashMap<String, String>) -> bool {
        self.pairs.len() == metadata.len()
            && metadata.iter().all(|(key, value)| {
                self.pairs
                    .binary_search_by(|(known, _)| known.as_str().cmp(key))
                    .is_ok_and(|at| self.pairs[at].1 == *value)
            })
    }
}

#[derive(Default)]
struct Entries {
    by_fingerprint: HashMap<u64, Vec<Entry>>,
    count: usize,
    bytes: usize,
}

/// The cache; one per server.
#[derive(Default)]
pub(crate) struct TriggerCache {
    entries: RwLock<Entries>,
    /// Seeded per process, so that nobody can prepare maps that share a fingerprint.
    hasher: foldhash::fast::RandomState,
}

impl TriggerCache {
    /// The parsed trigger for `metadata`, from the cache or parsed now (and kept if valid;
    /// errors are not kept, so a bad map costs what it did before).
    pub(crate) fn get(&self, metadata: &HashMap<String, String>) -> Result<Arc<Parsed>, Error> {
        let fingerprint = self.fingerprint(metadata);
        if let Some(parsed) = self.find(fingerprint, metadata) {
            return Ok(parsed);
        }
        let trigger = Trigger::parse(metadata)?;
        let parsed = Arc::new(Parsed {
            metric_name: metric_name(&trigger),
            trigger,
        });
        self.keep(fingerprint, metadata, parsed.clone());
        Ok(parsed)
    }

    /// A hash of the map that does not depend on its iteration order: the sum of its
    /// pairs' hashes. Collisions only cost a comparison; `Entry::holds` decides.
    fn fingerprint(&self, metadata: &HashMap<String, String>) -> u64 {
        metadata
            .iter()
            .map(|pair| self.hasher.hash_one(pair))
            .fold(0u64, u64::wrapping_add)
    }

    fn find(&self, fingerprint: u64, metadata: &HashMap<String, String>) -> Option<Arc<Parsed>> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .by_fingerprint
            .get(&fingerprint)?
            .iter()
            .find(|entry| entry.holds(metadata))
            .map(|entry| entry.parsed.clone())
    }

    fn keep(&self, fingerprint: u64, metadata: &HashMap<String, String>, parsed: Arc<Parsed>) {
        let mut pairs: Vec<(String, String)> = metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let bytes: usize = pairs
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.count >= MAX_ENTRIES || entries.bytes + bytes > MAX_BYTES {
            *entries = Entries::default();
        }
        let bucket = entries.by_fingerprint.entry(fingerprint).or_default();
        if bucket.iter().any(|entry| entry.holds(metadata)) {
            return;
        }
        bucket.push(Entry { pairs, parsed });
        entries.count += 1;
        entries.bytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_same_map_is_parsed_once_and_a_different_one_is_not_confused_with_it() {
        let cache = TriggerCache::default();
        let first = cache.get(&metadata(&[("queue", "a"), ("workerConcurrency", "2")]));
        let again = cache.get(&metadata(&[("workerConcurrency", "2"), ("queue", "a")]));
        assert!(Arc::ptr_eq(&first.unwrap(), &again.unwrap()));
        let other = cache
            .get(&metadata(&[("queue", "a"), ("workerConcurrency", "3")]))
            .unwrap();
        assert_eq!(other.trigger.worker_concurrency, Some(3));
        let fewer = cache.get(&metadata(&[("queue", "a")])).unwrap();
        assert_eq!(fewer.trigger.worker_concurrency, None);
        assert_eq!(fewer.metric_name, metric_name(&fewer.trigger));
    }

    #[test]
    fn errors_are_answered_every_time_and_not_kept() {
        let cache = TriggerCache::default();
        let bad = metadata(&[("queue", "a"), ("aggregate", "avg")]);
        assert!(cache.get(&bad).is_err());
        assert!(cache.get(&bad).is_err());
        assert_eq!(cache.entries.read().unwrap().count, 0);
    }

    #[test]
    fn the_cache_starts_over_instead_of_growing_past_its_bound() {
        let cache = TriggerCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            cache
                .get(&metadata(&[("queue", &format!("q{i}"))]))
                .unwrap();
        }
        let entries = cache.entries.read().unwrap();
        assert!(entries.count <= MAX_ENTRIES, "{}", entries.count);
        assert_eq!(entries.count, 10, "started over at the bound");
    }
}
