//! Metrics: integer counts accumulate per batch; every score is derived from the counts at the end.

pub mod calibration;
pub mod classification;
pub mod intervals;
pub mod predictions;
pub mod report;
pub mod segmentation;
pub mod surface;
pub mod volume;

pub use classification::{ClassScores, ConfusionMatrix};

/// Index and value of the largest entry (the first one on ties; index 0 for an empty row).
pub fn argmax(row: &[f32]) -> (usize, f32) {
    row.iter().copied().enumerate().fold(
        (0, f32::MIN),
        |best, (i, v)| if v > best.1 { (i, v) } else { best },
    )
}

/// A distance for a table: one decimal, or "–" where there is none.
pub fn one_place(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

/// A score for a table: three decimals, or "–" where there is none.
pub fn three_places(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}
