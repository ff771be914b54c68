//! Per-epoch history, written as CSV.

use serde::{Deserialize, Serialize};

/// One epoch of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub stage: String,
    pub epoch: usize,
    pub learning_rate: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: f64,
    pub validation_accuracy: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// The CSV text of a history (header + one row per epoch).
pub fn to_csv(records: &[EpochRecord]) -> String {
    let mut csv = String::from(
        "stage,epoch,learning_rate,train_loss,train_accuracy,validation_loss,validation_accuracy,seconds,images_per_second\n",
    );
    for r in records {
        csv.push_str(&format!(
            "{},{},{:.6e},{:.6},{:.6},{:.6},{:.6},{:.3},{:.2}\n",
            r.stage,
            r.epoch,
            r.learning_rate,
            r.train_loss,
            r.train_accuracy,
            r.validation_loss,
            r.validation_accuracy,
            r.seconds,
            r.images_per_second
        ));
    }
    csv
}
