//! Values read from a projection's tables, kept in memory — only on the
//! process that works the projection: a batch's streams are noted before
//! its commit, and a value kept while the checkpoint stands is not served
//! from the commit until the checkpoint has moved here, so a kept value is
//! never older than what the tables would say (another process, told of
//! the batch at its commit, may answer the write it came from at once).
//!
//! `StandingCache` keeps a value while the projection's checkpoint stands
//! (values that depend on much of the projection: a month's summary, a
//! session table read). `StreamCache` keeps it while no batch touched the
//! one stream it was read from (a room's messages, a wallet's history),
//! however much else the projection applies meanwhile.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use super::{Progress, Stand};

pub struct StandingCache<K, V> {
    projection: &'static str,
    capacity: usize,
    map: Mutex<HashMap<K, (Stand, V)>>,
}

impl<K: Eq + Hash, V: Clone> StandingCache<K, V> {
    /// Past `capacity` entries the cache starts again.
    pub fn new(projection: &'static str, capacity: usize) -> Self {
        Self {
            projection,
            capacity,
            map: Mutex::default(),
        }
    }

    /// Where the projection stands before a read begins, if this process
    /// may keep what it reads (and serve what it kept).
    pub fn stand(&self, progress: &Progress) -> Option<Stand> {
        progress.standing(self.projection)
    }

    /// The value kept for `key` if it was read at the stand `at`.
    pub fn get(&self, key: &K, at: Option<Stand>) -> Option<V> {
        let at = at?;
        let map = self.map.lock().unwrap();
        map.get(key)
            .filter(|(read_at, _)| *read_at == at)
            .map(|(_, v)| v.clone())
    }

    /// Keeps a value read after `stand` returned `at`.
    pub fn put(&self, key: K, at: Option<Stand>, value: V) {
        let Some(at) = at else { return };
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, (at, value));
    }
}

pub struct StreamCache<K, V> {
    projection: &'static str,
    capacity: usize,
    map: Mutex<HashMap<K, Kept<V>>>,
}

struct Kept<V> {
    stream: String,
    since: Stand,
    value: V,
}

impl<K: Eq + Hash, V: Clone> StreamCache<K, V> {
    /// Past `capacity` entries the cache starts again.
    pub fn new(projection: &'static str, capacity: usize) -> Self {
        Self {
            projection,
            capacity,
            map: Mutex::default(),
        }
    }

    /// Where the projection stands before a read begins, if this process
    /// may keep what it reads.
    pub fn stand(&self, progress: &Progress) -> Option<Stand> {
        progress.stand(self.projection)
    }

    /// The value kept for `key`, if its stream is unchanged since it was read.
    pub fn get(&self, progress: &Progress, key: &K) -> Option<V> {
        let map = self.map.lock().unwrap();
        let kept = map.get(key)?;
        progress
            .unchanged(self.projection, &kept.stream, kept.since)
            .then(|| kept.value.clone())
    }

    /// Keeps a value read from `stream`'s rows after `stand` returned `since`.
    pub fn put(&self, key: K, stream: String, since: Option<Stand>, value: V) {
        let Some(since) = since else { return };
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(
            key,
            Kept {
                stream,
                since,
                value,
            },
        );
    }
}
