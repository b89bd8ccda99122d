//! Seeded train/held-out splits, stratified by class for classification so
//! small data sets keep their class balance on both sides.

use crate::rng::Rng;

/// Splits row indices into (kept, held out) with about `fraction` held out.
/// `classes` gives each row's class for stratification, or is `None`.
pub fn split(
    rows: usize,
    fraction: f64,
    classes: Option<&[f32]>,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut groups: Vec<Vec<usize>> = match classes {
        Some(y) => {
            let k = y.iter().map(|&v| v as usize).max().map_or(0, |m| m + 1);
            let mut g = vec![Vec::new(); k];
            for (r, &c) in y.iter().enumerate() {
                g[c as usize].push(r);
            }
            g
        }
        None => vec![(0..rows).collect()],
    };
    let mut kept = Vec::new();
    let mut held = Vec::new();
    for g in &mut groups {
        rng.shuffle(g);
        let mut h = (g.len() as f64 * fraction).round() as usize;
        // Keep at least one row of each class on both sides when possible.
        if g.len() >= 2 {
            h = h.clamp(1, g.len() - 1);
        }
        held.extend_from_slice(&g[..h]);
        kept.extend_from_slice(&g[h..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    (kept, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_and_deterministic() {
        let y: Vec<f32> = (0..100).map(|i| (i % 4 == 0) as u8 as f32).collect();
        let (a, b) = split(100, 0.2, Some(&y), 3);
        assert_eq!(a.len() + b.len(), 100);
        assert_eq!(b.len(), 20);
        assert_eq!(b.iter().filter(|&&r| y[r] == 1.0).count(), 5);
        assert_eq!(split(100, 0.2, Some(&y), 3), (a, b.clone()));
        assert_ne!(split(100, 0.2, Some(&y), 4).1, b);
    }
}
