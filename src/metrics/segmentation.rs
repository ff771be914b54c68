//! Segmentation metrics from counts: per image, the pixels of a predicted binary mask against a reference mask
//! (true positives, false positives, false negatives, true negatives, pixels skipped as "ignore"), and the BCE of
//! the logits where there are logits. Scores are derived when reported.
//!
//! Empty masks, stated once: an image whose reference mask is empty (a no-tumour image) has no Dice or IoU of its
//! own (0/0; MONAI's `ignore_empty` gives NaN). Such images are left out of the per-image means and counted apart
//! as "empty correct" (the prediction is empty too) or not. The pooled scores (counts summed over all images
//! first) include every image, so false positives on no-tumour images lower them.
//!
//! Surface distances (HD95, average surface distance; [`super::surface`]) follow the same rule: they are averaged
//! over tumour images whose prediction is not empty, in pixels of the grid the masks were scored on; tumour images
//! predicted empty (MONAI: an infinite distance) are counted apart.

use super::surface::{surface_distance, SurfaceDistance, SurfaceSums};
use serde::{Deserialize, Serialize};

/// One image's scores against its reference: the pixel counts and the surface distances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskScore {
    pub counts: MaskCounts,
    pub surface: SurfaceDistance,
}

impl MaskScore {
    /// `predicted` against `reference`, both `side`×`side` (unit pixel spacing).
    pub fn between(predicted: &[bool], reference: &[bool], side: usize) -> MaskScore {
        MaskScore {
            counts: MaskCounts::from_masks(predicted, reference, None),
            surface: surface_distance(predicted, reference, &[side, side], &[1.0, 1.0]),
        }
    }
}

/// Pixel counts of one prediction against one reference (or of many, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskCounts {
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
}

impl MaskCounts {
    /// Count `predicted` against `reference` (same length), skipping pixels where `ignore` is set.
    pub fn from_masks(
        predicted: &[bool],
        reference: &[bool],
        ignore: Option<&[bool]>,
    ) -> MaskCounts {
        let mut counts = MaskCounts::default();
        for (i, (&p, &r)) in predicted.iter().zip(reference).enumerate() {
            if ignore.is_some_and(|skip| skip.get(i).copied().unwrap_or(false)) {
                continue;
            }
            match (p, r) {
                (true, true) => counts.true_positive += 1,
                (true, false) => counts.false_positive += 1,
                (false, true) => counts.false_negative += 1,
                (false, false) => counts.true_negative += 1,
            }
        }
        counts
    }

    pub fn add(&mut self, other: &MaskCounts) {
        self.true_positive += other.true_positive;
        self.false_positive += other.false_positive;
        self.false_negative += other.false_negative;
        self.true_negative += other.true_negative;
    }

    pub fn pixels(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// 2TP / (2TP + FP + FN); `None` when both masks are empty.
    pub fn dice(&self) -> Option<f64> {
        let denominator = 2 * self.true_positive + self.false_positive + self.false_negative;
        (denominator > 0).then(|| 2.0 * self.true_positive as f64 / denominator as f64)
    }

    /// Dice where the reference holds a lesion (`None` for an empty reference): the per-image value that the
    /// mean Dice over tumour images, and its interval, are made of.
    pub fn lesion_dice(&self) -> Option<f64> {
        self.dice().filter(|_| !self.reference_empty())
    }

    /// TP / (TP + FP + FN); `None` when both masks are empty.
    pub fn iou(&self) -> Option<f64> {
        let denominator = self.true_positive + self.false_positive + self.false_negative;
        (denominator > 0).then(|| self.true_positive as f64 / denominator as f64)
    }

    /// (TP + TN) / pixels; `None` for no pixels.
    pub fn pixel_accuracy(&self) -> Option<f64> {
        let pixels = self.pixels();
        (pixels > 0).then(|| (self.true_positive + self.true_negative) as f64 / pixels as f64)
    }

    /// Whether the reference mask had any pixel.
    pub fn reference_empty(&self) -> bool {
        self.true_positive + self.false_negative == 0
    }

    /// Whether the prediction had any pixel.
    pub fn prediction_empty(&self) -> bool {
        self.true_positive + self.false_positive == 0
    }
}

/// Binary cross-entropy with logits of one pixel, computed stably: max(z, 0) − z·t + ln(1 + e^−|z|).
pub fn bce_with_logits(logit: f32, target: f32) -> f64 {
    let z = f64::from(logit);
    let t = f64::from(target);
    z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
}

/// Sums over a group of images (a class, or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentationSums {
    pub images: usize,
    /// Counts summed over every image.
    pub pooled: MaskCounts,
    /// Images whose reference is not empty, and the sums of their Dice and IoU.
    pub scored: usize,
    pub dice_sum: f64,
    pub iou_sum: f64,
    /// Images whose reference is empty, and how many of them got an empty prediction.
    pub empty_reference: usize,
    pub empty_correct: usize,
    /// Σ BCE and the pixels it was summed over (only for predictions with logits).
    pub bce_sum: f64,
    pub bce_pixels: u64,
    /// Surface distances of the tumour images (where they were measured).
    #[serde(default)]
    pub surface: SurfaceSums,
}

impl SegmentationSums {
    /// Add one image's scores, and its BCE sum over `bce_pixels` pixels when it has logits.
    pub fn add_image(&mut self, score: &MaskScore, bce: Option<(f64, u64)>) {
        self.add_counts(&score.counts, bce);
        if !score.counts.reference_empty() {
            self.surface.add(&score.surface);
        }
    }

    /// Add one image's counts without surface distances (for example against targets with ignored pixels).
    pub fn add_counts(&mut self, counts: &MaskCounts, bce: Option<(f64, u64)>) {
        self.images += 1;
        self.pooled.add(counts);
        if counts.reference_empty() {
            self.empty_reference += 1;
            if counts.prediction_empty() {
                self.empty_correct += 1;
            }
        } else {
            self.scored += 1;
            self.dice_sum += counts.dice().unwrap_or(0.0);
            self.iou_sum += counts.iou().unwrap_or(0.0);
        }
        if let Some((sum, pixels)) = bce {
            self.bce_sum += sum;
            self.bce_pixels += pixels;
        }
    }

    pub fn merge(&mut self, other: &SegmentationSums) {
        self.images += other.images;
        self.pooled.add(&other.pooled);
        self.scored += other.scored;
        self.dice_sum += other.dice_sum;
        self.iou_sum += other.iou_sum;
        self.empty_reference += other.empty_reference;
        self.empty_correct += other.empty_correct;
        self.bce_sum += other.bce_sum;
        self.bce_pixels += other.bce_pixels;
        self.surface.merge(&other.surface);
    }

    pub fn scores(&self) -> SegmentationScores {
        let mean = |sum: f64| (self.scored > 0).then(|| sum / self.scored as f64);
        let (hd95, asd) = self.surface.means();
        SegmentationScores {
            images: self.images,
            tumour_images: self.scored,
            dice: mean(self.dice_sum),
            iou: mean(self.iou_sum),
            pooled_dice: self.pooled.dice(),
            pooled_iou: self.pooled.iou(),
            pixel_accuracy: self.pooled.pixel_accuracy(),
            bce: (self.bce_pixels > 0).then(|| self.bce_sum / self.bce_pixels as f64),
            empty_images: self.empty_reference,
            empty_correct: (self.empty_reference > 0)
                .then(|| self.empty_correct as f64 / self.empty_reference as f64),
            hd95,
            asd,
            missed: (self.surface.measured + self.surface.one_empty > 0)
                .then_some(self.surface.one_empty),
        }
    }
}

/// A disc of `area` pixels (rounded to whole pixels by its radius) at the centre of a `side`×`side` mask: the
/// trivial segmentation that knows only the mean lesion size, which any useful model must beat.
pub fn centred_disc(side: usize, area: f64) -> Vec<bool> {
    let radius_squared = area.max(0.0) / std::f64::consts::PI;
    let centre = (side as f64 - 1.0) / 2.0;
    (0..side * side)
        .map(|i| {
            let (y, x) = ((i / side) as f64 - centre, (i % side) as f64 - centre);
            x * x + y * y <= radius_squared
        })
        .collect()
}

/// Scores of a group of images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentationScores {
    pub images: usize,
    /// Images with a non-empty reference: the ones the mean Dice and IoU are taken over.
    pub tumour_images: usize,
    /// Mean per-image Dice over images with a non-empty reference.
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    /// Dice and IoU of the counts summed over all images (empty references included).
    pub pooled_dice: Option<f64>,
    pub pooled_iou: Option<f64>,
    pub pixel_accuracy: Option<f64>,
    /// Mean BCE per pixel (predictions with logits only).
    pub bce: Option<f64>,
    /// Images with an empty reference, and the fraction of them predicted empty.
    pub empty_images: usize,
    pub empty_correct: Option<f64>,
    /// Mean symmetric 95th-percentile Hausdorff distance and average surface distance, in pixels of the scored
    /// grid, over the tumour images with a non-empty prediction (where surface distances were measured).
    #[serde(default)]
    pub hd95: Option<f64>,
    #[serde(default)]
    pub asd: Option<f64>,
    /// Tumour images predicted empty, left out of HD95 and ASD (their distance is infinite).
    #[serde(default)]
    pub missed: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_centred_disc_has_the_asked_area_and_is_centred() {
        let side = 128;
        let disc = centred_disc(side, 1000.0);
        let area = disc.iter().filter(|p| **p).count() as f64;
        assert!((area - 1000.0).abs() < 1000.0 * 0.03, "{area}");
        // Symmetric about the centre: a pixel and its point reflection agree.
        for i in 0..side * side {
            assert_eq!(disc[i], disc[side * side - 1 - i]);
        }
        assert!(disc[64 * side + 64] && !disc[0]);
        assert!(centred_disc(side, 0.0).iter().filter(|p| **p).count() <= 1);
    }

    fn mask(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|b| *b == 1).collect()
    }

    #[test]
    fn hand_counted_masks() {
        // predicted 1 1 0 0 1, reference 1 0 1 0 1: TP 2, FP 1, FN 1, TN 1.
        let counts = MaskCounts::from_masks(&mask(&[1, 1, 0, 0, 1]), &mask(&[1, 0, 1, 0, 1]), None);
        assert_eq!(
            counts,
            MaskCounts {
                true_positive: 2,
                false_positive: 1,
                false_negative: 1,
                true_negative: 1
            }
        );
        assert_eq!(counts.dice(), Some(4.0 / 6.0));
        assert_eq!(counts.iou(), Some(0.5));
        assert_eq!(counts.pixel_accuracy(), Some(0.6));
        // Ignoring the FP and FN pixels leaves a perfect prediction.
        let ignore = mask(&[0, 1, 1, 0, 0]);
        let counts = MaskCounts::from_masks(
            &mask(&[1, 1, 0, 0, 1]),
            &mask(&[1, 0, 1, 0, 1]),
            Some(&ignore),
        );
        assert_eq!((counts.dice(), counts.pixels()), (Some(1.0), 3));
    }

    #[test]
    fn empty_and_full_edge_cases() {
        let empty = mask(&[0, 0, 0, 0]);
        let full = mask(&[1, 1, 1, 1]);
        // empty/empty: no Dice of its own; counted as an empty reference predicted empty.
        let both_empty = MaskCounts::from_masks(&empty, &empty, None);
        assert_eq!((both_empty.dice(), both_empty.iou()), (None, None));
        assert_eq!(both_empty.pixel_accuracy(), Some(1.0));
        // empty prediction on a full reference, and a full prediction on an empty one: Dice 0.
        let missed = MaskCounts::from_masks(&empty, &full, None);
        assert_eq!((missed.dice(), missed.iou()), (Some(0.0), Some(0.0)));
        let false_alarm = MaskCounts::from_masks(&full, &empty, None);
        assert_eq!(false_alarm.dice(), Some(0.0));
        assert_eq!(false_alarm.pixel_accuracy(), Some(0.0));

        let mut sums = SegmentationSums::default();
        sums.add_counts(&both_empty, None);
        sums.add_counts(&false_alarm, None);
        sums.add_image(&MaskScore::between(&full, &full, 2), None);
        let scores = sums.scores();
        assert_eq!(
            (scores.images, scores.tumour_images, scores.empty_images),
            (3, 1, 2)
        );
        assert_eq!(scores.dice, Some(1.0));
        assert_eq!(scores.empty_correct, Some(0.5));
        // Pooled: TP 4, FP 4 → Dice 8/12.
        assert_eq!(scores.pooled_dice, Some(8.0 / 12.0));
        assert_eq!(scores.bce, None);
        // The one tumour image is predicted exactly: surface distance 0, nothing missed.
        assert_eq!(
            (scores.hd95, scores.asd, scores.missed),
            (Some(0.0), Some(0.0), Some(0))
        );
        sums.add_image(&MaskScore::between(&empty, &full, 2), None);
        let scores = sums.scores();
        assert_eq!((scores.hd95, scores.missed), (Some(0.0), Some(1)));
    }

    #[test]
    fn bce_with_logits_matches_the_textbook_formula() {
        for (z, t) in [(0.0f32, 1.0f32), (2.0, 0.0), (-3.0, 1.0), (0.5, 0.3)] {
            let p = 1.0 / (1.0 + (-f64::from(z)).exp());
            let t64 = f64::from(t);
            let expected = -(t64 * p.ln() + (1.0 - t64) * (1.0 - p).ln());
            assert!((bce_with_logits(z, t) - expected).abs() < 1e-12, "{z} {t}");
        }
        // Large logits stay finite.
        assert!((bce_with_logits(80.0, 0.0) - 80.0).abs() < 1e-9);
        assert!(bce_with_logits(-80.0, 0.0) < 1e-30);
    }

    proptest! {
        #[test]
        fn dice_and_iou_agree_and_stay_in_range(bits in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..64)) {
            let predicted: Vec<bool> = bits.iter().map(|b| b.0).collect();
            let reference: Vec<bool> = bits.iter().map(|b| b.1).collect();
            let counts = MaskCounts::from_masks(&predicted, &reference, None);
            prop_assert_eq!(counts.pixels(), bits.len() as u64);
            if let (Some(d), Some(j)) = (counts.dice(), counts.iou()) {
                prop_assert!((0.0..=1.0).contains(&d) && (0.0..=1.0).contains(&j));
                // Dice = 2J / (1 + J).
                prop_assert!((d - 2.0 * j / (1.0 + j)).abs() < 1e-12);
            } else {
                prop_assert!(predicted.iter().all(|p| !p) && reference.iter().all(|r| !r));
            }
        }
    }
}
