//! Ranking a row of scores: what top-k answers share.

/// The indices of `row`'s `k` highest values, highest first; ties keep the
/// lower index first (as argmax does) and NaN ranks last, so the order is
/// total, as sorting needs.
pub fn top_k<T: Copy + Into<f64>>(row: &[T], k: usize) -> Vec<usize> {
    let key = |i: usize| {
        row.get(i)
            .map(|&x| x.into())
            .filter(|x: &f64| !x.is_nan())
            .unwrap_or(f64::NEG_INFINITY)
    };
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k);
    order
}
