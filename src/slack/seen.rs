//! Which envelopes were handled already, so a redelivery is acked without
//! being run twice: `RecentIds` across the connections of this process, and
//! the [`Seen`] port (the store's `seen_envelopes` / `seen_events`) across
//! restarts.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use crate::store::{self, Store, StoreError};

/// The record of handled envelopes that outlives the process, as the transport
/// uses it; the daemon's is the [`Store`].
pub trait Seen: Send + Sync + 'static {
    type Error: fmt::Display + Send;

    /// Whether the envelope id, or the event id when given, was recorded as handled.
    fn seen_before(
        &self,
        envelope_id: String,
        event_id: Option<String>,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Records the envelope id and, when given, the event id.
    fn mark_seen(
        &self,
        envelope_id: String,
        event_id: Option<String>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Runs `work` that is not urgent (what follows an ack) so that it queues
    /// behind the envelopes still to be handled; as it is by default.
    fn background<F>(work: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
        F::Output: Send,
    {
        work
    }
}

impl Seen for Store {
    type Error = StoreError;

    fn seen_before(
        &self,
        envelope_id: String,
        event_id: Option<String>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        Store::seen_before(self, envelope_id, event_id)
    }

    fn mark_seen(
        &self,
        envelope_id: String,
        event_id: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Store::mark_seen(self, envelope_id, event_id)
    }

    /// The store's background lane (see `store::background`).
    fn background<F>(work: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
        F::Output: Send,
    {
        store::background(work)
    }
}

/// Envelope and event ids being handled now or handled recently, so a copy that
/// arrives on another socket while the first is still in flight is not run twice.
/// SQLite (`seen_envelopes` / `seen_events`) covers restarts.
#[derive(Default)]
pub(super) struct RecentIds {
    inner: Mutex<RecentInner>,
}

#[derive(Default)]
struct RecentInner {
    set: HashSet<String>,
    order: VecDeque<String>,
}

const RECENT_CAPACITY: usize = 20_000;

impl RecentIds {
    /// Claims every key; false when any was already claimed.
    pub(super) fn claim(&self, keys: &[&str]) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if keys.iter().any(|k| inner.set.contains(*k)) {
            return false;
        }
        for key in keys {
            inner.set.insert(key.to_string());
            inner.order.push_back(key.to_string());
        }
        while inner.order.len() > RECENT_CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_refuse_a_second_claim_on_any_key() {
        let recent = RecentIds::default();
        assert!(recent.claim(&["envelope:a", "event:x"]));
        assert!(!recent.claim(&["envelope:a"]));
        assert!(!recent.claim(&["envelope:b", "event:x"]));
        assert!(recent.claim(&["envelope:b"]));
    }
}
