//! Whether a feature drifted, with a verdict that holds up for the window's
//! size: a chi-square test of the window's binned counts against the
//! reference's (so small windows need larger differences), Holm's
//! correction over every feature tested at once (so 30 features do not
//! raise a false alarm in most windows by chance alone), and PSI above the
//! level sampling alone reaches, in bands, for how much the drift matters.

use serde::Serialize;

/// Fewer window rows than this: "not enough data", not a band.
pub const MIN_ROWS: u64 = 100;

/// The family-wise false-alarm rate per snapshot.
pub const ALPHA: f64 = 0.01;

/// A feature's drift, in the words the docs, JSON, metrics and dashboard use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The window is too small to tell.
    NotEnoughData,
    /// No significant difference, or one too small to matter.
    Stable,
    /// Significant, and PSI above sampling noise by 0.1 to 0.25.
    Moderate,
    /// Significant, and PSI above sampling noise by more than 0.25.
    Major,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::NotEnoughData,
        Verdict::Stable,
        Verdict::Moderate,
        Verdict::Major,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotEnoughData => "not_enough_data",
            Verdict::Stable => "stable",
            Verdict::Moderate => "moderate",
            Verdict::Major => "major",
        }
    }
}

/// PSI that sampling alone gives two samples of one distribution over `bins`
/// bins, of `n_ref` and `n_cur` rows: about (bins - 1)(1/n_ref + 1/n_cur).
pub fn expected_psi(bins: usize, n_ref: f64, n_cur: f64) -> f64 {
    if n_ref <= 0.0 || n_cur <= 0.0 {
        return f64::INFINITY;
    }
    bins.saturating_sub(1) as f64 * (1.0 / n_ref + 1.0 / n_cur)
}

/// The p-value of a chi-square test of homogeneity between two count
/// vectors over the same bins (bins empty on both sides are left out).
pub fn chi_square_p(reference: &[f64], current: &[f64]) -> Option<f64> {
    let (nr, nc): (f64, f64) = (reference.iter().sum(), current.iter().sum());
    if nr <= 0.0 || nc <= 0.0 {
        return None;
    }
    let n = nr + nc;
    let mut stat = 0.0;
    let mut used = 0usize;
    for (&r, &c) in reference.iter().zip(current) {
        let total = r + c;
        if total <= 0.0 {
            continue;
        }
        used += 1;
        let (er, ec) = (total * nr / n, total * nc / n);
        stat += (r - er).powi(2) / er + (c - ec).powi(2) / ec;
    }
    if used < 2 {
        return Some(1.0);
    }
    Some(upper_gamma_q((used - 1) as f64 / 2.0, stat / 2.0))
}

/// Holm's step-down correction: which of `p` are significant at family-wise
/// level `alpha`.
pub fn holm(p: &[Option<f64>], alpha: f64) -> Vec<bool> {
    let mut order: Vec<(usize, f64)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = order.len();
    let mut out = vec![false; p.len()];
    for (rank, (i, p)) in order.into_iter().enumerate() {
        if p > alpha / (m - rank) as f64 {
            break;
        }
        if let Some(o) = out.get_mut(i) {
            *o = true;
        }
    }
    out
}

/// The verdict for a feature tested `significant` (after Holm) with `psi`
/// against sampling's `expected` PSI over a window of `rows`.
pub fn verdict(rows: u64, significant: bool, psi: Option<f64>, expected: f64) -> Verdict {
    if rows < MIN_ROWS {
        return Verdict::NotEnoughData;
    }
    let excess = psi.map_or(0.0, |p| p - expected);
    match (significant, excess) {
        (true, e) if e > 0.25 => Verdict::Major,
        (true, e) if e >= 0.1 => Verdict::Moderate,
        _ => Verdict::Stable,
    }
}

/// Q(a, x) = Γ(a, x) / Γ(a), the chi-square survival function at 2x with
/// 2a degrees of freedom (series below a + 1, continued fraction above).
fn upper_gamma_q(a: f64, x: f64) -> f64 {
    // NaN and non-positive x: no evidence against the null.
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        let mut sum = 1.0 / a;
        let mut term = sum;
        let mut ap = a;
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        let p = sum * (-x + a * x.ln() - ln_gamma(a)).exp();
        (1.0 - p).clamp(0.0, 1.0)
    } else {
        // Lentz's continued fraction.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ((-x + a * x.ln() - ln_gamma(a)).exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_matches_known_values() {
        // 1 degree of freedom at 3.841: p = 0.05; 9 at 21.666: p = 0.01.
        assert!((upper_gamma_q(0.5, 3.841_459 / 2.0) - 0.05).abs() < 1e-5);
        assert!((upper_gamma_q(4.5, 21.665_994 / 2.0) - 0.01).abs() < 1e-5);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        let same = chi_square_p(&[50.0, 50.0], &[50.0, 50.0]).unwrap();
        assert!((same - 1.0).abs() < 1e-12);
        let far = chi_square_p(&[90.0, 10.0], &[10.0, 90.0]).unwrap();
        assert!(far < 1e-20, "{far}");
    }

    #[test]
    fn holm_and_verdicts() {
        let sig = holm(&[Some(0.001), Some(0.02), None, Some(0.0001)], 0.01);
        assert_eq!(sig, [true, false, false, true]);
        assert_eq!(verdict(33, true, Some(2.0), 0.1), Verdict::NotEnoughData);
        assert_eq!(verdict(500, false, Some(2.0), 0.1), Verdict::Stable);
        assert_eq!(verdict(500, true, Some(0.15), 0.1), Verdict::Stable);
        assert_eq!(verdict(500, true, Some(0.3), 0.1), Verdict::Moderate);
        assert_eq!(verdict(500, true, Some(0.5), 0.1), Verdict::Major);
        assert!((expected_psi(10, 100.0, 100.0) - 0.18).abs() < 1e-12);
    }
}
