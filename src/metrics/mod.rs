//! Metrics: integer counts accumulate per batch; every score is derived from the counts at the end.

pub mod calibration;
pub mod classification;
pub mod intervals;
pub mod report;

pub use classification::{ClassScores, ConfusionMatrix};
