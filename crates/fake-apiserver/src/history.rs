//! The event history behind watch: every write the store commits, in revision order, kept for
//! a bounded window as the API server's watch cache keeps its recent events. A watch resumes
//! from it; a resourceVersion from before the window is expired.

use std::collections::VecDeque;

use serde_json::Value;

use super::resource::Resource;
use super::status::ApiError;

/// How many events are kept unless a test sets another limit.
pub(super) const DEFAULT_LIMIT: usize = 1000;

/// One committed write: the object before and after it, at the revision it was given.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Entry {
    /// The revision the write was given, the `resourceVersion` of `new`.
    pub(super) revision: u64,
    pub(super) resource: Resource,
    /// Empty for cluster-scoped resources.
    pub(super) namespace: String,
    /// The object as stored before the write; `None` for a create.
    pub(super) old: Option<Value>,
    /// The object as stored after the write; `None` for a removal.
    pub(super) new: Option<Value>,
}

/// The last [`History::limit`] entries and the revision below which events are gone.
#[derive(Debug)]
pub(super) struct History {
    entries: VecDeque<Entry>,
    limit: usize,
    /// Every event up to this revision has been dropped; a watch may resume from it, not
    /// from before it.
    compacted: u64,
}

impl Default for History {
    fn default() -> History {
        History {
            entries: VecDeque::new(),
            limit: DEFAULT_LIMIT,
            compacted: 0,
        }
    }
}

impl History {
    /// Appends an entry, dropping the oldest beyond the limit. Entries come in revision order.
    pub(super) fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > self.limit {
            if let Some(dropped) = self.entries.pop_front() {
                self.compacted = self.compacted.max(dropped.revision);
            }
        }
    }

    /// Keeps at most `limit` entries from now on (dropping the oldest at once).
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.trim();
    }

    /// Drops every entry: a watch may then resume from `revision` (the current one) only.
    pub(super) fn compact(&mut self, revision: u64) {
        self.entries.clear();
        self.compacted = self.compacted.max(revision);
    }

    /// The revision up to which events are gone.
    pub(super) fn compacted(&self) -> u64 {
        self.compacted
    }

    /// The entries after `revision`, oldest first, or the watch cache's `Expired` error when
    /// some of them are gone: `too old resource version: 5 (7)`, 7 being the last revision
    /// dropped (the oldest kept minus one).
    pub(super) fn since(&self, revision: u64) -> Result<impl Iterator<Item = &Entry>, ApiError> {
        if revision < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {revision} ({})",
                self.compacted
            )));
        }
        let first = self.entries.partition_point(|e| e.revision <= revision);
        Ok(self.entries.range(first..))
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn entry(revision: u64) -> Entry {
        Entry {
            revision,
            resource: Resource::Pods,
            namespace: "ns".into(),
            old: None,
            new: None,
        }
    }

    fn revisions(history: &History, since: u64) -> Vec<u64> {
        history.since(since).unwrap().map(|e| e.revision).collect()
    }

    #[test]
    fn entries_after_a_revision_come_in_order() {
        let mut history = History::default();
        for r in 1..=5 {
            history.push(entry(r));
        }
        assert_eq!(revisions(&history, 0), [1, 2, 3, 4, 5]);
        assert_eq!(revisions(&history, 3), [4, 5]);
        assert!(revisions(&history, 5).is_empty());
        assert!(revisions(&history, 9).is_empty());
    }

    #[test]
    fn revisions_before_the_window_are_expired_as_the_watch_cache_words_it() {
        let mut history = History::default();
        history.set_limit(2);
        for r in 1..=5 {
            history.push(entry(r));
        }
        assert_eq!(history.compacted(), 3);
        assert_eq!(revisions(&history, 3), [4, 5]);
        let err = history.since(2).err().unwrap();
        assert_eq!(err.code(), StatusCode::GONE);
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["reason"], "Expired");
        assert_eq!(body["message"], "too old resource version: 2 (3)");
    }

    #[test]
    fn compaction_keeps_only_the_current_revision_resumable() {
        let mut history = History::default();
        for r in 1..=3 {
            history.push(entry(r));
        }
        history.compact(3);
        assert!(revisions(&history, 3).is_empty());
        assert!(history.since(2).is_err());
        history.push(entry(4));
        assert_eq!(revisions(&history, 3), [4]);
    }
}
