//! Distances between a reference histogram and a current one, over the same
//! bins: the Population Stability Index (its bands, read above the level
//! sampling alone reaches, are in `verdict`) and the Jensen-Shannon
//! distance (base 2, in [0, 1]), which unlike PSI stays bounded and does not
//! grow with empty bins.

/// A proportion never taken as zero in PSI's logarithm: the common 1e-4
/// floor, so one value in a bin the reference never saw counts, but finitely.
const FLOOR: f64 = 1e-4;

fn proportions(counts: &[f64]) -> Vec<f64> {
    let n: f64 = counts.iter().sum();
    if n <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / n).collect()
}

/// PSI of `current` against `reference` (counts or proportions, same bins).
/// None when either side is empty.
pub fn psi(reference: &[f64], current: &[f64]) -> Option<f64> {
    if reference.iter().sum::<f64>() <= 0.0 || current.iter().sum::<f64>() <= 0.0 {
        return None;
    }
    let (r, c) = (proportions(reference), proportions(current));
    Some(
        r.iter()
            .zip(&c)
            .map(|(&e, &a)| {
                let (e, a) = (e.max(FLOOR), a.max(FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// The Jensen-Shannon distance (square root of the divergence, base 2).
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> Option<f64> {
    if reference.iter().sum::<f64>() <= 0.0 || current.iter().sum::<f64>() <= 0.0 {
        return None;
    }
    let (p, q) = (proportions(reference), proportions(current));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let d = (kl(&p, &m) + kl(&q, &m)) / 2.0;
    Some(d.clamp(0.0, 1.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_zero_and_disjoint_is_large() {
        let r = [10.0, 20.0, 30.0, 0.0];
        assert!(psi(&r, &[1.0, 2.0, 3.0, 0.0]).unwrap().abs() < 1e-12);
        assert!(jensen_shannon(&r, &r).unwrap() < 1e-9);
        let far = [0.0, 0.0, 0.0, 5.0];
        assert!(psi(&r, &far).unwrap() > 5.0);
        assert!((jensen_shannon(&r, &far).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(psi(&r, &[0.0; 4]), None);
    }
}
