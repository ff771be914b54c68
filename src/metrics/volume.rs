//! Volumetric scores of a predicted tumour mask against a true one, in the volume's physical units: Dice over
//! voxels, HD95 and average surface distance in millimetres (MONAI's conventions, [`super::surface`]), and the
//! tumour volume in millilitres against the true volume. Per class, means with 95 % bootstrap intervals over
//! volumes.

use super::intervals::bootstrap_mean;
use super::surface::{surface_distance, SurfaceDistance};
use serde::{Deserialize, Serialize};

/// One volume's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeScore {
    /// Voxel Dice; `None` when the true mask is empty (a no-tumour volume).
    pub dice: Option<f64>,
    /// Symmetric 95th-percentile Hausdorff distance and average surface distance (mm); `None` when either mask
    /// is empty.
    pub hd95_mm: Option<f64>,
    pub asd_mm: Option<f64>,
    pub predicted_ml: f64,
    pub true_ml: f64,
    /// Predicted minus true volume (ml), and that as a percentage of the true volume (where it is not empty).
    pub error_ml: f64,
    pub error_percent: Option<f64>,
}

impl VolumeScore {
    /// Score `predicted` against `truth`, both flat over a grid of `dims` (row-major, the last axis fastest) with
    /// voxel sizes `spacing` (mm, along the same axes).
    ///
    /// # Panics
    /// When a mask's length differs from the grid's size: a caller's bug.
    pub fn between(
        predicted: &[bool],
        truth: &[bool],
        dims: &[usize; 3],
        spacing: &[f64; 3],
    ) -> VolumeScore {
        let (mut both, mut predicted_count, mut true_count) = (0u64, 0u64, 0u64);
        for (p, t) in predicted.iter().zip(truth) {
            both += u64::from(*p && *t);
            predicted_count += u64::from(*p);
            true_count += u64::from(*t);
        }
        let voxel_ml = spacing.iter().product::<f64>() / 1000.0;
        let (predicted_ml, true_ml) = (
            predicted_count as f64 * voxel_ml,
            true_count as f64 * voxel_ml,
        );
        let (hd95_mm, asd_mm) = match surface_distance(predicted, truth, dims, spacing) {
            SurfaceDistance::Measured { hd95, asd } => (Some(hd95), Some(asd)),
            SurfaceDistance::BothEmpty | SurfaceDistance::OneEmpty => (None, None),
        };
        VolumeScore {
            dice: (true_count > 0)
                .then(|| 2.0 * both as f64 / (predicted_count + true_count) as f64),
            hd95_mm,
            asd_mm,
            predicted_ml,
            true_ml,
            error_ml: predicted_ml - true_ml,
            error_percent: (true_count > 0).then(|| 100.0 * (predicted_ml - true_ml) / true_ml),
        }
    }
}

/// A mean with its 95 % percentile-bootstrap interval over volumes (2,000 resamples, seed 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// Volumes it is taken over.
    pub n: usize,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Option<Estimate> {
        let (low, high) = bootstrap_mean(values, 2000, 0)?;
        Some(Estimate {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            low,
            high,
            n: values.len(),
        })
    }

    /// `0.712 (0.650–0.770)` with `decimals` places.
    pub fn display(&self, decimals: usize) -> String {
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals, self.mean, decimals, self.low, decimals, self.high
        )
    }
}

/// The scores of a group of volumes (one class, or all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSummary {
    pub volumes: usize,
    /// Over volumes with a tumour.
    pub dice: Option<Estimate>,
    /// Over volumes where both masks have voxels.
    pub hd95_mm: Option<Estimate>,
    pub asd_mm: Option<Estimate>,
    /// Tumour volumes with an empty prediction (no surface distance: MONAI's infinite).
    pub missed: usize,
    pub true_ml: Option<Estimate>,
    pub predicted_ml: Option<Estimate>,
    /// Absolute volume error, over volumes with a tumour.
    pub abs_error_ml: Option<Estimate>,
    pub abs_error_percent: Option<Estimate>,
    /// Signed error (ml): the bias.
    pub error_ml: Option<Estimate>,
    /// No-tumour volumes, how many of them were predicted empty, and the tumour volume predicted in them (ml).
    pub empty_volumes: usize,
    pub empty_correct: usize,
    pub false_ml: Option<Estimate>,
}

impl VolumeSummary {
    pub fn of(scores: &[&VolumeScore]) -> VolumeSummary {
        let tumour: Vec<&&VolumeScore> = scores.iter().filter(|s| s.dice.is_some()).collect();
        let collect = |f: &dyn Fn(&VolumeScore) -> Option<f64>| -> Option<Estimate> {
            Estimate::of(&tumour.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
        };
        let empty: Vec<&&VolumeScore> = scores.iter().filter(|s| s.dice.is_none()).collect();
        VolumeSummary {
            volumes: scores.len(),
            dice: collect(&|s| s.dice),
            hd95_mm: collect(&|s| s.hd95_mm),
            asd_mm: collect(&|s| s.asd_mm),
            missed: tumour.iter().filter(|s| s.predicted_ml == 0.0).count(),
            true_ml: collect(&|s| Some(s.true_ml)),
            predicted_ml: collect(&|s| Some(s.predicted_ml)),
            abs_error_ml: collect(&|s| Some(s.error_ml.abs())),
            abs_error_percent: collect(&|s| s.error_percent.map(f64::abs)),
            error_ml: collect(&|s| Some(s.error_ml)),
            empty_volumes: empty.len(),
            empty_correct: empty.iter().filter(|s| s.predicted_ml == 0.0).count(),
            false_ml: Estimate::of(&empty.iter().map(|s| s.predicted_ml).collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box of voxels [lo, hi) on a grid.
    fn cube(dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
        let mut mask = vec![false; dims.iter().product()];
        for x in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                for z in lo[2]..hi[2] {
                    mask[(x * dims[1] + y) * dims[2] + z] = true;
                }
            }
        }
        mask
    }

    #[test]
    fn a_shifted_box_scores_by_hand() {
        let dims = [20, 20, 20];
        // 10×10×10 true box; the prediction is the same box shifted by 2 voxels along the last axis.
        let truth = cube(dims, [5, 5, 5], [15, 15, 15]);
        let predicted = cube(dims, [5, 5, 7], [15, 15, 17]);
        // Voxels 0.5 × 1 × 2 mm: 1 ml per 1,000 mm³.
        let spacing = [0.5, 1.0, 2.0];
        let score = VolumeScore::between(&predicted, &truth, &dims, &spacing);
        // Overlap 10×10×8 = 800 of 1,000 each: Dice 0.8.
        assert!((score.dice.unwrap() - 0.8).abs() < 1e-12);
        assert!((score.true_ml - 1.0).abs() < 1e-12, "{}", score.true_ml);
        assert_eq!(score.error_ml, 0.0);
        assert_eq!(score.error_percent, Some(0.0));
        // The far faces are 2 voxels = 4 mm apart along the last axis; HD95 is at most that and at least the
        // shift of the side faces' rims (> 0).
        let hd95 = score.hd95_mm.unwrap();
        assert!(hd95 > 0.0 && hd95 <= 4.0 + 1e-9, "{hd95}");
        // A prediction twice as thick along the first axis: +100 % volume.
        let thick = cube(dims, [0, 5, 5], [20, 15, 15]);
        let score = VolumeScore::between(&thick, &truth, &dims, &spacing);
        assert!((score.error_percent.unwrap() - 100.0).abs() < 1e-9);
        assert!((score.error_ml - 1.0).abs() < 1e-12);
    }

    #[test]
    fn empty_volumes_are_counted_apart() {
        let dims = [6, 6, 6];
        let none = vec![false; 216];
        let some = cube(dims, [1, 1, 1], [3, 3, 3]);
        let empty_right = VolumeScore::between(&none, &none, &dims, &[1.0; 3]);
        let empty_wrong = VolumeScore::between(&some, &none, &dims, &[1.0; 3]);
        let missed = VolumeScore::between(&none, &some, &dims, &[1.0; 3]);
        assert_eq!(empty_right.dice, None);
        assert_eq!(missed.dice, Some(0.0));
        assert_eq!(missed.hd95_mm, None);
        let summary = VolumeSummary::of(&[&empty_right, &empty_wrong, &missed]);
        assert_eq!(
            (
                summary.volumes,
                summary.empty_volumes,
                summary.empty_correct
            ),
            (3, 2, 1)
        );
        assert_eq!(summary.missed, 1);
        assert_eq!(summary.dice.unwrap().n, 1);
        assert!(summary.hd95_mm.is_none());
        assert!((summary.abs_error_percent.unwrap().mean - 100.0).abs() < 1e-9);
        // The wrongly predicted no-tumour volume: 8 voxels of 1 mm³, the right one 0: mean 0.004 ml.
        assert!((summary.false_ml.unwrap().mean - 0.004).abs() < 1e-12);
    }
}
