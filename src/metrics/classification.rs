//! Confusion counts → accuracy, per-class precision/recall/F1, macro and weighted averages (sklearn's
//! conventions: a class never predicted has precision 0, a class never present has recall 0).

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class) pairs. Row = true class, column = predicted class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// Precision, recall and F1 of one class (or an average), with the support it was computed on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of samples whose true class this is (for averages: all samples).
    pub support: u64,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> ConfusionMatrix {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Build from parallel slices of true and predicted class indices.
    pub fn from_pairs(classes: usize, truth: &[usize], predicted: &[usize]) -> ConfusionMatrix {
        let mut matrix = ConfusionMatrix::new(classes);
        for (t, p) in truth.iter().zip(predicted) {
            matrix.add(*t, *p);
        }
        matrix
    }

    /// Count one sample. Indices outside the class range are ignored (they cannot be scored).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted] += 1;
        }
    }

    /// Add another matrix's counts (e.g. from another batch).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Count of samples of class `truth` predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Rows of counts (true class by predicted class).
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.get(c, c)).sum()
    }

    /// Fraction correct; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Scores of each class, in class order.
    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.classes)
            .map(|c| {
                let true_positive = self.get(c, c);
                let support: u64 = (0..self.classes).map(|p| self.get(c, p)).sum();
                let predicted: u64 = (0..self.classes).map(|t| self.get(t, c)).sum();
                let precision = ratio(true_positive, predicted);
                let recall = ratio(true_positive, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Unweighted mean over classes.
    pub fn macro_average(&self) -> ClassScores {
        let scores = self.per_class();
        let n = scores.len().max(1) as f64;
        ClassScores {
            precision: scores.iter().map(|s| s.precision).sum::<f64>() / n,
            recall: scores.iter().map(|s| s.recall).sum::<f64>() / n,
            f1: scores.iter().map(|s| s.f1).sum::<f64>() / n,
            support: self.total(),
        }
    }

    /// Mean over classes weighted by support (sklearn's `average="weighted"`; its recall equals accuracy).
    pub fn weighted_average(&self) -> ClassScores {
        let scores = self.per_class();
        let total = self.total();
        let weighted = |f: fn(&ClassScores) -> f64| {
            scores.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / (total.max(1) as f64)
        };
        ClassScores {
            precision: weighted(|s| s.precision),
            recall: weighted(|s| s.recall),
            f1: weighted(|s| s.f1),
            support: total,
        }
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_computed_example() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let m = ConfusionMatrix::from_pairs(3, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(m.rows(), vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let s = m.per_class();
        // class 0: P = 2/2, R = 2/3, F1 = 0.8; class 1: P = 1/2, R = 1/2, F1 = 0.5; class 2: P = 1/2, R = 1, F1 = 2/3
        let want = [
            (1.0, 2.0 / 3.0, 0.8, 3),
            (0.5, 0.5, 0.5, 2),
            (0.5, 1.0, 2.0 / 3.0, 1),
        ];
        for (got, (p, r, f, n)) in s.iter().zip(want) {
            assert!((got.precision - p).abs() < 1e-12 && (got.recall - r).abs() < 1e-12);
            assert!((got.f1 - f).abs() < 1e-12 && got.support == n);
        }
        let macro_f1 = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((m.macro_average().f1 - macro_f1).abs() < 1e-12);
        let weighted_f1 = (0.8 * 3.0 + 0.5 * 2.0 + 2.0 / 3.0) / 6.0;
        assert!((m.weighted_average().f1 - weighted_f1).abs() < 1e-12);
    }

    #[test]
    fn never_predicted_and_absent_classes_score_zero() {
        let m = ConfusionMatrix::from_pairs(3, &[0, 0, 1], &[0, 0, 0]);
        let s = m.per_class();
        assert_eq!(s[1].precision, 0.0); // never predicted
        assert_eq!(s[2].recall, 0.0); // never present
        assert_eq!(s[2].support, 0);
        assert_eq!(ConfusionMatrix::new(4).accuracy(), 0.0);
    }

    proptest! {
        #[test]
        fn weighted_recall_equals_accuracy_and_scores_are_bounded(
            pairs in proptest::collection::vec((0usize..4, 0usize..4), 1..200)
        ) {
            let (truth, predicted): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
            let m = ConfusionMatrix::from_pairs(4, &truth, &predicted);
            prop_assert_eq!(m.total(), truth.len() as u64);
            prop_assert!((m.weighted_average().recall - m.accuracy()).abs() < 1e-12);
            for s in m.per_class().into_iter().chain([m.macro_average(), m.weighted_average()]) {
                for v in [s.precision, s.recall, s.f1] {
                    prop_assert!((0.0..=1.0).contains(&v));
                }
                prop_assert!(s.f1 <= s.precision.max(s.recall) + 1e-12);
            }
        }

        #[test]
        fn merging_batches_equals_counting_at_once(
            pairs in proptest::collection::vec((0usize..4, 0usize..4), 0..100),
            split in 0usize..100
        ) {
            let split = split.min(pairs.len());
            let (truth, predicted): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
            let mut merged = ConfusionMatrix::from_pairs(4, &truth[..split], &predicted[..split]);
            merged.merge(&ConfusionMatrix::from_pairs(4, &truth[split..], &predicted[split..]));
            prop_assert_eq!(merged, ConfusionMatrix::from_pairs(4, &truth, &predicted));
        }
    }
}
