//! Probability quality: expected calibration error and one-vs-rest ROC AUC.

use super::argmax;

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityBin {
    /// Lower and upper edge of the bin's confidence range.
    pub from: f64,
    pub to: f64,
    pub count: u64,
    /// Mean top probability of the bin's predictions (`None` for an empty bin).
    pub confidence: Option<f64>,
    /// Fraction of them that were right.
    pub accuracy: Option<f64>,
}

/// Reliability diagram with `bins` equal-width bins of the top probability.
pub fn reliability_bins(
    probabilities: &[Vec<f32>],
    truth: &[usize],
    bins: usize,
) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut count = vec![0u64; bins];
    let mut confidence = vec![0f64; bins];
    let mut correct = vec![0f64; bins];
    for (row, t) in probabilities.iter().zip(truth) {
        let (best, p) = argmax(row);
        let bin = ((f64::from(p) * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence[bin] += f64::from(p);
        correct[bin] += if best == *t { 1.0 } else { 0.0 };
    }
    (0..bins)
        .map(|b| {
            let n = count[b];
            ReliabilityBin {
                from: b as f64 / bins as f64,
                to: (b + 1) as f64 / bins as f64,
                count: n,
                confidence: (n > 0).then(|| confidence[b] / n as f64),
                accuracy: (n > 0).then(|| correct[b] / n as f64),
            }
        })
        .collect()
}

/// Expected calibration error with `bins` equal-width confidence bins: Σ_b (n_b / N) · |accuracy_b − confidence_b|,
/// where confidence is the top probability and accuracy whether its class is the true one.
pub fn expected_calibration_error(probabilities: &[Vec<f32>], truth: &[usize], bins: usize) -> f64 {
    let reliability = reliability_bins(probabilities, truth, bins);
    let total: u64 = reliability.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    reliability
        .iter()
        .filter_map(|b| Some(b.count as f64 * (b.accuracy? - b.confidence?).abs()))
        .sum::<f64>()
        / total as f64
}

/// One-vs-rest ROC AUC of `class`: the probability that a random positive scores above a random negative
/// (ties count half). `None` when the class has no positives or no negatives.
pub fn roc_auc_one_vs_rest(
    probabilities: &[Vec<f32>],
    truth: &[usize],
    class: usize,
) -> Option<f64> {
    let mut scored: Vec<(f32, bool)> = probabilities
        .iter()
        .zip(truth)
        .map(|(row, t)| (row.get(class).copied().unwrap_or(0.0), *t == class))
        .collect();
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Mann–Whitney U with average ranks for ties.
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j + 1 < scored.len() && scored[j + 1].0 == scored[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * scored[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_of_hand_made_cases() {
        // Two samples at confidence 0.9: one right, one wrong → |0.5 − 0.9| = 0.4.
        let p = vec![vec![0.9, 0.1], vec![0.9, 0.1]];
        assert!((expected_calibration_error(&p, &[0, 1], 10) - 0.4).abs() < 1e-6);
        // Confident and right: |1 − 1| = 0.
        let p = vec![vec![1.0, 0.0]; 3];
        assert!(expected_calibration_error(&p, &[0, 0, 0], 15).abs() < 1e-12);
    }

    #[test]
    fn auc_of_perfect_reversed_and_tied_scores() {
        let truth = [0, 0, 1, 1];
        let perfect = vec![
            vec![0.9, 0.1],
            vec![0.8, 0.2],
            vec![0.3, 0.7],
            vec![0.1, 0.9],
        ];
        assert_eq!(roc_auc_one_vs_rest(&perfect, &truth, 1), Some(1.0));
        assert_eq!(roc_auc_one_vs_rest(&perfect, &truth, 0), Some(1.0));
        let reversed: Vec<Vec<f32>> = perfect.iter().map(|r| vec![r[1], r[0]]).collect();
        assert_eq!(roc_auc_one_vs_rest(&reversed, &truth, 1), Some(0.0));
        let tied = vec![vec![0.5, 0.5]; 4];
        assert_eq!(roc_auc_one_vs_rest(&tied, &truth, 1), Some(0.5));
        assert_eq!(roc_auc_one_vs_rest(&perfect, &[0, 0, 0, 0], 1), None);
        // One inversion among 2×2 pairs: 3/4.
        let one_swap = vec![
            vec![0.0, 0.1],
            vec![0.0, 0.6],
            vec![0.0, 0.5],
            vec![0.0, 0.9],
        ];
        assert_eq!(roc_auc_one_vs_rest(&one_swap, &truth, 1), Some(0.75));
    }
}
