//! 95 % confidence intervals: Wilson for proportions (accuracy), percentile bootstrap for derived scores.

use super::ConfusionMatrix;
use rand::Rng;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` out of `n` (0–1); (0, 1) when n = 0.
pub fn wilson(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Percentile bootstrap 95 % interval of `score` over resamples (with replacement) of the (truth, predicted)
/// pairs. Deterministic for a given `seed`.
pub fn bootstrap(
    classes: usize,
    truth: &[usize],
    predicted: &[usize],
    resamples: usize,
    seed: u64,
    score: impl Fn(&ConfusionMatrix) -> f64,
) -> (f64, f64) {
    let n = truth.len();
    if n == 0 || resamples == 0 {
        return (0.0, 1.0);
    }
    let mut rng = crate::rng::stream(seed, "bootstrap", &[n as u64]);
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut m = ConfusionMatrix::new(classes);
            for _ in 0..n {
                let i = rng.random_range(0..n);
                m.add(truth[i], predicted[i]);
            }
            score(&m)
        })
        .collect();
    central_95(&mut values)
}

/// The 2.5th and 97.5th percentiles of a non-empty sample (sorted in place).
fn central_95(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    let at = |q: f64| values[((q * last as f64).round() as usize).min(last)];
    (at(0.025), at(0.975))
}

/// Percentile bootstrap 95 % interval of the mean of `values` (e.g. per-image Dice) over `resamples` resamples
/// with replacement; `None` without values. Deterministic for a given `seed`.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    let n = values.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut rng = crate::rng::stream(seed, "bootstrap-mean", &[n as u64]);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    Some(central_95(&mut means))
}

/// The 95 % interval `segment` and `train-seg` give a mean Dice: [`bootstrap_mean`] of the per-image values
/// with 2,000 resamples, seed 0 — one function, so the two commands agree on the same masks.
pub fn mean_dice_interval(dice: &[f64]) -> Option<(f64, f64)> {
    bootstrap_mean(dice, 2000, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wilson_matches_a_textbook_value() {
        // 81 of 263 (Newcombe 1998, example): 0.2553 to 0.3662.
        let (lo, hi) = wilson(81, 263, Z95);
        assert!(
            (lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(10, 10, Z95);
        assert!(
            (hi - 1.0).abs() < 1e-9 && (lo - 0.7225).abs() < 5e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn bootstrap_brackets_the_observed_accuracy_and_is_reproducible() {
        let truth: Vec<usize> = (0..200).map(|i| i % 4).collect();
        let predicted: Vec<usize> = (0..200)
            .map(|i| if i % 5 == 0 { (i + 1) % 4 } else { i % 4 })
            .collect();
        let observed = ConfusionMatrix::from_pairs(4, &truth, &predicted).accuracy();
        let a = bootstrap(4, &truth, &predicted, 300, 1, ConfusionMatrix::accuracy);
        let b = bootstrap(4, &truth, &predicted, 300, 1, ConfusionMatrix::accuracy);
        assert_eq!(a, b);
        assert!(a.0 < observed && observed < a.1, "{a:?} {observed}");
    }

    proptest! {
        #[test]
        fn wilson_contains_the_observed_proportion(successes in 0u64..500, extra in 0u64..500) {
            let n = successes + extra;
            let (lo, hi) = wilson(successes, n, Z95);
            prop_assert!(0.0 <= lo && lo <= hi && hi <= 1.0);
            if n > 0 {
                let p = successes as f64 / n as f64;
                prop_assert!(lo <= p + 1e-12 && p <= hi + 1e-12);
            }
        }
    }

    #[test]
    fn bootstrap_mean_brackets_the_mean_and_narrows_with_more_values() {
        assert_eq!(bootstrap_mean(&[], 100, 0), None);
        // No spread, no interval.
        assert_eq!(bootstrap_mean(&[0.7; 5], 200, 0), Some((0.7, 0.7)));
        // Half zeros, half ones: the mean 0.5, its standard error sqrt(0.25 / n).
        let values: Vec<f64> = (0..400).map(|i| f64::from(i % 2)).collect();
        let (lo, hi) = bootstrap_mean(&values, 2000, 3).expect("interval");
        assert!(lo < 0.5 && 0.5 < hi, "{lo} {hi}");
        // ≈ ±1.96 · 0.025 = ±0.049.
        assert!(((hi - lo) - 0.098).abs() < 0.02, "{lo} {hi}");
        let (lo4, hi4) = bootstrap_mean(&values[..100], 2000, 3).expect("interval");
        assert!(hi4 - lo4 > 1.5 * (hi - lo), "{lo4} {hi4}");
        assert_eq!(bootstrap_mean(&values, 2000, 3), Some((lo, hi)));
    }
}
