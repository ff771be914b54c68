//! Every classification score of one evaluation, as written to `metrics.json`.

use super::calibration::{
    expected_calibration_error, reliability_bins, roc_auc_one_vs_rest, ReliabilityBin,
};
use super::intervals::{bootstrap, wilson, Z95};
use super::{ClassScores, ConfusionMatrix};
use crate::data::Class;
use serde::Serialize;
use std::collections::BTreeMap;

/// Bootstrap resamples for the F1 interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct ClassificationReport {
    pub images: u64,
    pub accuracy: f64,
    /// Wilson 95 % interval.
    pub accuracy_ci95: (f64, f64),
    pub macro_average: ClassScores,
    pub weighted_average: ClassScores,
    /// Percentile bootstrap 95 % interval of macro F1 (1000 resamples).
    pub macro_f1_ci95: (f64, f64),
    pub per_class: BTreeMap<Class, ClassScores>,
    /// One-vs-rest ROC AUC per class (absent when the test set lacks the class or its complement).
    pub roc_auc: BTreeMap<Class, Option<f64>>,
    /// Expected calibration error, 15 bins.
    pub expected_calibration_error: f64,
    /// The reliability diagram behind it (15 bins).
    pub reliability: Vec<ReliabilityBin>,
    /// Rows: true class; columns: predicted class; in `classes` order.
    pub confusion: Vec<Vec<u64>>,
    pub classes: Vec<Class>,
}

/// Score predictions (`probabilities` rows in class order) against `labels`.
pub fn classification_report(
    classes: &[Class],
    labels: &[usize],
    probabilities: &[Vec<f32>],
    seed: u64,
) -> ClassificationReport {
    let predicted: Vec<usize> = probabilities
        .iter()
        .map(|row| super::argmax(row).0)
        .collect();
    let confusion = ConfusionMatrix::from_pairs(classes.len(), labels, &predicted);
    let per_class = classes.iter().copied().zip(confusion.per_class()).collect();
    let roc_auc = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, roc_auc_one_vs_rest(probabilities, labels, i)))
        .collect();
    ClassificationReport {
        images: confusion.total(),
        accuracy: confusion.accuracy(),
        accuracy_ci95: wilson(confusion.correct(), confusion.total(), Z95),
        macro_average: confusion.macro_average(),
        weighted_average: confusion.weighted_average(),
        macro_f1_ci95: bootstrap(
            classes.len(),
            labels,
            &predicted,
            BOOTSTRAP_RESAMPLES,
            seed,
            |m| m.macro_average().f1,
        ),
        per_class,
        roc_auc,
        expected_calibration_error: expected_calibration_error(probabilities, labels, 15),
        reliability: reliability_bins(probabilities, labels, 15),
        confusion: confusion.rows(),
        classes: classes.to_vec(),
    }
}
