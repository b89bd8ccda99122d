//! The bounded record of recent predictions that labels are joined to:
//! by request id, oldest dropped first once the rows it holds pass its
//! capacity. Dropped ids are remembered (as hashes, as many as the record
//! holds requests) so a label that comes after its prediction left says
//! "late", not "unmatched".

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::truth::Truth;

/// One recorded prediction: the version that answered and its output rows.
pub(super) struct Entry {
    pub version: String,
    pub truth: Arc<Truth>,
    /// Row-major, `width` values per row.
    pub values: Vec<f32>,
    pub width: usize,
    pub at_unix: f64,
    pub labelled: bool,
    /// Set by [`Record::insert`].
    pub seq: u64,
}

impl Entry {
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
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

pub(super) struct Record {
    capacity: usize,
    rows: usize,
    seq: u64,
    entries: HashMap<Arc<str>, Entry>,
    order: VecDeque<(u64, Arc<str>)>,
    gone: HashSet<u64>,
    gone_order: VecDeque<u64>,
}

fn hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Record {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            rows: 0,
            seq: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            gone: HashSet::new(),
            gone_order: VecDeque::new(),
        }
    }

    /// Requests and rows held.
    pub fn held(&self) -> (usize, usize) {
        (self.entries.len(), self.rows)
    }

    /// Keeps a prediction; a request id seen before is replaced (the
    /// newest answer is the one a label refers to). A request larger than
    /// the whole record is not kept.
    pub fn insert(&mut self, id: &str, mut e: Entry) {
        let rows = e.rows();
        if rows == 0 || rows > self.capacity {
            return;
        }
        if let Some(old) = self.entries.remove(id) {
            self.rows -= old.rows();
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
                self.forget(&old);
            }
        }
        self.seq += 1;
        e.seq = self.seq;
        let key: Arc<str> = Arc::from(id);
        self.order.push_back((self.seq, key.clone()));
        self.entries.insert(key, e);
        self.rows += rows;
    }

    fn forget(&mut self, id: &str) {
        let h = hash(id);
        if self.gone.insert(h) {
            self.gone_order.push_back(h);
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
        let gone = self.gone.contains(&hash(id));
        match self.entries.get_mut(id) {
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
    use hone_data::Task;

    fn entry(rows: usize) -> Entry {
        Entry {
            version: "1".into(),
            truth: Arc::new(Truth {
                task: Task::Binary,
                labels: vec!["a".into(), "b".into()],
                output: 0,
                card: vec![],
            }),
            values: vec![0.5; rows],
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
