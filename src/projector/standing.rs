//! Values read from a projection's tables, kept in memory while that
//! projection's checkpoint stands — and only on the process that works the
//! projection: its checkpoint moves there at commit, before any write the
//! change came from is answered anywhere, so a kept value is never older
//! than what the tables would say.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use super::Progress;
use crate::store::LogPosition;

pub struct StandingCache<K, V> {
    projection: &'static str,
    capacity: usize,
    map: Mutex<HashMap<K, (LogPosition, V)>>,
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
    /// may keep what it reads.
    pub fn stand(&self, progress: &Progress) -> Option<LogPosition> {
        progress
            .works(self.projection)
            .then(|| progress.checkpoint(self.projection))
    }

    /// The value kept for `key` if it was read at the stand `at`.
    pub fn get(&self, key: &K, at: Option<LogPosition>) -> Option<V> {
        let at = at?;
        let map = self.map.lock().unwrap();
        map.get(key)
            .filter(|(read_at, _)| *read_at == at)
            .map(|(_, v)| v.clone())
    }

    /// Keeps a value read after `stand` returned `at`.
    pub fn put(&self, key: K, at: Option<LogPosition>, value: V) {
        let Some(at) = at else { return };
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, (at, value));
    }
}
