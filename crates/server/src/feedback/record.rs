//! The bounded record of recent predictions that labels are joined to:
//! by request id, oldest dropped first once the rows it holds pass its
//! capacity. Dropped ids are remembered (as hashes, as many as the record
//! holds requests) so a label that comes after its prediction left says
//! "late", not "unmatched".

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::truth::Truth;

/// A prediction's output values: up to four inline (one row of a binary
/// or small multiclass model, the usual online request), more on the heap.
pub(super) enum Values {
    Inline([f32; 4], u8),
    Heap(Box<[f32]>),
}

impl Values {
    /// The `n` values of `it`, inline when there are four or fewer.
    pub fn collect(n: usize, it: impl Iterator<Item = f32>) -> Values {
        if n > 4 {
            return Values::Heap(it.collect());
        }
        let mut a = [0.0; 4];
        a.iter_mut().zip(it).for_each(|(x, y)| *x = y);
        Values::Inline(a, n as u8)
    }

    pub fn as_slice(&self) -> &[f32] {
        match self {
            Values::Inline(a, n) => a.get(..usize::from(*n)).unwrap_or_default(),
            Values::Heap(b) => b,
        }
    }
}

/// One recorded prediction: the version that answered and its output rows.
pub(super) struct Entry {
    /// Index into the record's versions.
    pub version: u16,
    /// Row-major, `width` values per row.
    pub values: Values,
    pub width: usize,
    pub at_unix: f64,
    pub labelled: bool,
    /// Set by [`Record::insert`].
    pub seq: u64,
}

impl Entry {
    pub fn rows(&self) -> usize {
        self.values
            .as_slice()
            .len()
            .checked_div(self.width)
            .unwrap_or(0)
    }
}

/// What became of one request's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Matched,
    /// The prediction was recorded but has since left the record.
    Late,
    /// No prediction with that id was recorded.
    Unmatched,
    /// Labels for that id arrived before.
    Duplicate,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Matched,
        Outcome::Late,
        Outcome::Unmatched,
        Outcome::Duplicate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Late => "late",
            Outcome::Unmatched => "unmatched",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Entries are keyed by a 64-bit hash of the id under a key drawn per
/// process, so neither the id strings are kept nor can a client aim one
/// id at another's.
pub(super) struct Record {
    capacity: usize,
    rows: usize,
    seq: u64,
    ids: RandomState,
    entries: HashMap<u64, Entry>,
    order: VecDeque<(u64, u64)>,
    gone: HashSet<u64>,
    gone_order: VecDeque<u64>,
    /// The versions entries name, with their cards.
    versions: Vec<(String, Arc<Truth>)>,
}

impl Record {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            rows: 0,
            seq: 0,
            ids: RandomState::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            gone: HashSet::new(),
            gone_order: VecDeque::new(),
            versions: Vec::new(),
        }
    }

    /// Requests and rows held.
    pub fn held(&self) -> (usize, usize) {
        (self.entries.len(), self.rows)
    }

    /// The card of version index `i`.
    pub fn version_of(&self, i: u16) -> Option<Arc<Truth>> {
        self.versions.get(usize::from(i)).map(|(_, t)| t.clone())
    }

    /// The name and card of version index `i`.
    pub fn version_named(&self, i: u16) -> Option<(String, Arc<Truth>)> {
        self.versions.get(usize::from(i)).cloned()
    }

    /// The index of `version` (with its card), added on first sight.
    pub fn version_index(&mut self, version: &str, truth: &Arc<Truth>) -> Option<u16> {
        let at = match self.versions.iter().position(|(v, _)| v == version) {
            Some(i) => {
                // A reloaded version may come with a new card.
                if let Some(slot) = self.versions.get_mut(i)
                    && !Arc::ptr_eq(&slot.1, truth)
                {
                    slot.1 = truth.clone();
                }
                i
            }
            None => {
                self.versions.push((version.to_string(), truth.clone()));
                self.versions.len() - 1
            }
        };
        u16::try_from(at).ok()
    }

    /// Keeps a prediction; a request id seen before is replaced (the
    /// newest answer is the one a label refers to). A request larger than
    /// the whole record is not kept.
    pub fn insert(&mut self, id: &str, mut e: Entry) {
        let rows = e.rows();
        if rows == 0 || rows > self.capacity {
            return;
        }
        let key = self.ids.hash_one(id);
        if let Some(old) = self.entries.remove(&key) {
            self.rows -= old.rows();
            // A reused id leaves a stale place in the order; a client that
            // reuses one id forever must not grow it forever.
            if self.order.len() > 2 * self.entries.len() + 64 {
                let entries = &self.entries;
                self.order
                    .retain(|(seq, k)| entries.get(k).is_some_and(|e| e.seq == *seq));
            }
        }
        while self.rows + rows > self.capacity {
            let Some((seq, old)) = self.order.pop_front() else {
                break;
            };
            // Stale order entries (a replaced id) are skipped.
            if self.entries.get(&old).is_some_and(|e| e.seq == seq)
                && let Some(gone) = self.entries.remove(&old)
            {
                self.rows -= gone.rows();
                self.forget(old);
            }
        }
        self.seq += 1;
        e.seq = self.seq;
        self.order.push_back((self.seq, key));
        self.entries.insert(key, e);
        self.rows += rows;
    }

    fn forget(&mut self, key: u64) {
        if self.gone.insert(key) {
            self.gone_order.push_back(key);
        }
        // As many dropped ids as the record can hold requests.
        while self.gone_order.len() > self.capacity {
            if let Some(old) = self.gone_order.pop_front() {
                self.gone.remove(&old);
            }
        }
    }

    /// The prediction labels for `id` join, or why there is none.
    pub fn find(&mut self, id: &str) -> Result<&mut Entry, Outcome> {
        let key = self.ids.hash_one(id);
        let gone = self.gone.contains(&key);
        match self.entries.get_mut(&key) {
            Some(e) if e.labelled => Err(Outcome::Duplicate),
            Some(e) => Ok(e),
            None if gone => Err(Outcome::Late),
            None => Err(Outcome::Unmatched),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rows: usize) -> Entry {
        Entry {
            version: 0,
            values: Values::collect(rows, std::iter::repeat_n(0.5, rows)),
            width: 1,
            at_unix: 0.0,
            labelled: false,
            seq: 0,
        }
    }

    #[test]
    fn oldest_leave_first_and_come_back_late() {
        let mut r = Record::new(5);
        r.insert("a", entry(2));
        r.insert("b", entry(2));
        r.insert("c", entry(2));
        assert_eq!(r.held(), (2, 4));
        assert_eq!(r.find("a").err(), Some(Outcome::Late));
        assert_eq!(r.find("z").err(), Some(Outcome::Unmatched));
        r.find("b").unwrap().labelled = true;
        assert_eq!(r.find("b").err(), Some(Outcome::Duplicate));
        // Too big for the record: not kept, nothing dropped for it.
        r.insert("d", entry(6));
        assert_eq!(r.held(), (2, 4));
        // A reused id replaces the old answer, and its stale place in the
        // order does not evict the new one.
        r.insert("c", entry(1));
        r.insert("e", entry(2));
        assert_eq!(r.held(), (3, 5));
        r.insert("f", entry(2));
        assert_eq!(r.find("b").err(), Some(Outcome::Late));
        assert!(r.find("c").is_ok());
        r.insert("g", entry(1));
        assert_eq!(r.find("c").err(), Some(Outcome::Late));
        assert_eq!(r.held(), (3, 5));
    }
}
