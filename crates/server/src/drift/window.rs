//! A sliding window of binned values: time buckets, the oldest dropped once
//! they are older than the window's duration or hold rows beyond its size.
//! Each bucket keeps, per feature, counts over the reference bins plus
//! below-range, above-range and non-finite.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Buckets per window: the granularity of expiry.
const BUCKETS: u32 = 12;

/// Per feature: `bins` counts, then below, above, non-finite.
pub type Counts = Vec<Vec<u64>>;

struct Bucket {
    start: Instant,
    rows: u64,
    counts: Counts,
}

pub struct Window {
    span: Duration,
    max_rows: u64,
    widths: Vec<usize>,
    buckets: VecDeque<Bucket>,
}

impl Window {
    /// `widths[f]`: the number of reference bins of feature `f`.
    pub fn new(span: Duration, max_rows: u64, widths: Vec<usize>) -> Window {
        Window {
            span,
            max_rows: max_rows.max(1),
            widths,
            buckets: VecDeque::new(),
        }
    }

    fn empty(&self) -> Counts {
        self.widths.iter().map(|w| vec![0; w + 3]).collect()
    }

    /// Adds `rows` rows whose counts `fill` writes into the bucket open now
    /// (a new one when the last is older than a bucket's share of the span).
    pub fn record(&mut self, now: Instant, rows: u64, fill: impl FnOnce(&mut Counts)) {
        self.expire(now);
        let step = self.span / BUCKETS;
        // A bucket also closes at its share of the row cap, so the cap is
        // kept to within one bucket whatever the traffic.
        let share = (self.max_rows / u64::from(BUCKETS)).max(1);
        let open = self
            .buckets
            .back()
            .is_some_and(|b| now.duration_since(b.start) < step && b.rows < share);
        if !open {
            let counts = self.empty();
            self.buckets.push_back(Bucket {
                start: now,
                rows: 0,
                counts,
            });
        }
        if let Some(b) = self.buckets.back_mut() {
            b.rows += rows;
            fill(&mut b.counts);
        }
    }

    /// Drops buckets past the window's duration, then the oldest while the
    /// rest still hold at least `max_rows` (the newest always stays).
    pub fn expire(&mut self, now: Instant) {
        while self.buckets.len() > 1
            && self
                .buckets
                .front()
                .is_some_and(|b| now.duration_since(b.start) > self.span)
        {
            self.buckets.pop_front();
        }
        // A newest bucket older than the span holds nothing current.
        if self
            .buckets
            .back()
            .is_some_and(|b| now.duration_since(b.start) > self.span)
        {
            self.buckets.clear();
        }
        loop {
            let newer: u64 = self.buckets.iter().skip(1).map(|b| b.rows).sum();
            if self.buckets.len() > 1 && newer >= self.max_rows {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// Rows and summed counts in the window now.
    pub fn totals(&mut self, now: Instant) -> (u64, Counts) {
        self.expire(now);
        let mut sum = self.empty();
        let mut rows = 0;
        for b in &self.buckets {
            rows += b.rows;
            for (s, c) in sum.iter_mut().zip(&b.counts) {
                for (x, y) in s.iter_mut().zip(c) {
                    *x += y;
                }
            }
        }
        (rows, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_buckets_and_excess_rows_leave() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(12), 100, vec![2]);
        w.record(t0, 5, |c| c[0][0] += 5);
        w.record(t0 + Duration::from_secs(2), 7, |c| c[0][1] += 7);
        let (rows, c) = w.totals(t0 + Duration::from_secs(3));
        assert_eq!((rows, c[0][0], c[0][1]), (12, 5, 7));
        // Past the span: everything has left.
        let (rows, _) = w.totals(t0 + Duration::from_secs(30));
        assert_eq!(rows, 0);
        // Over the row cap: the oldest bucket goes.
        let mut w = Window::new(Duration::from_secs(120), 10, vec![1]);
        for i in 0..3 {
            w.record(t0 + Duration::from_secs(20 * i), 10, |_| {});
        }
        assert_eq!(w.totals(t0 + Duration::from_secs(41)).0, 10);
        // Heavy traffic inside one bucket's time: the cap still holds.
        let mut w = Window::new(Duration::from_secs(3600), 120, vec![1]);
        for _ in 0..1000 {
            w.record(t0, 1, |_| {});
        }
        let rows = w.totals(t0).0;
        assert!((120..=130).contains(&rows), "{rows}");
    }
}
