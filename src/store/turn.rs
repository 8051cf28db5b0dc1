//! A command's turn on its stream: the stream's lock, held while the
//! command decides and until its rows are queued for the append (not until
//! they are written: the stream's next command may decide on the state
//! this one left meanwhile, see `append`), what state the decision saw, and
//! where the rows landed. The event store and repository under cqrs-es
//! reach it through a task-local, since cqrs-es passes nothing of ours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use super::LogPosition;

tokio::task_local! {
    pub(super) static TURN: Arc<Turn>;
}

static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// A new epoch: the name of a stream's state as loaded from the store,
/// carried by every state decided on top of it in this process.
pub(super) fn new_epoch() -> u64 {
    NEXT_EPOCH.fetch_add(1, Ordering::Relaxed)
}

/// The state a command was decided on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Decided {
    pub epoch: u64,
    /// the stream's sequence in that state
    pub sequence: usize,
    /// from this process's cache (perhaps behind another process's appends)
    pub from_cache: bool,
    /// appends of the stream were queued or flushing when it was loaded
    pub open: bool,
}

pub(super) struct Turn {
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Mutex<Option<OwnedMutexGuard<()>>>,
    decided: Mutex<Decided>,
    at: Mutex<Option<LogPosition>>,
    /// the events the last attempt appended (a `Vec` of the aggregate's)
    events: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Turn {
    /// Waits for the stream's lock.
    pub async fn take(lock: Arc<tokio::sync::Mutex<()>>) -> Arc<Self> {
        let guard = lock.clone().lock_owned().await;
        Arc::new(Self {
            lock,
            guard: Mutex::new(Some(guard)),
            decided: Mutex::default(),
            at: Mutex::default(),
            events: Mutex::default(),
        })
    }

    /// Holds the lock again if the command let it go (it is decided again).
    pub async fn hold(&self) {
        if self.guard.lock().unwrap().is_some() {
            return;
        }
        let guard = self.lock.clone().lock_owned().await;
        *self.guard.lock().unwrap() = Some(guard);
    }

    /// Lets the stream's next command decide.
    pub fn release(&self) {
        self.guard.lock().unwrap().take();
    }

    pub fn decided_on(&self, decided: Decided) {
        *self.decided.lock().unwrap() = decided;
    }

    pub fn decided(&self) -> Decided {
        *self.decided.lock().unwrap()
    }

    pub fn landed(&self, at: LogPosition) {
        *self.at.lock().unwrap() = Some(at);
    }

    pub fn appended<E: Send + 'static>(&self, events: Vec<E>) {
        *self.events.lock().unwrap() = Some(Box::new(events));
    }

    /// Where the last attempt's rows landed, and its events (`None`: it
    /// appended nothing).
    pub fn take_landed<E: 'static>(&self) -> Option<(LogPosition, Vec<E>)> {
        let events = self.events.lock().unwrap().take();
        let at = self.at.lock().unwrap().take()?;
        let events = events
            .and_then(|e| e.downcast::<Vec<E>>().ok())
            .map_or_else(Vec::new, |e| *e);
        Some((at, events))
    }
}

/// The current command's turn, if any.
pub(super) fn current() -> Option<Arc<Turn>> {
    TURN.try_with(Arc::clone).ok()
}
