//! How good a CAM is. Against a true mask (the phantom's `masks/`): the pointing game (is the map's maximum inside
//! the lesion?), the energy-in-mask fraction (how much of the map's mass lies on the lesion), and the Dice and IoU
//! of the map thresholded at a stated level. Without a mask: a deletion score — how much the target's confidence
//! drops when the map's top pixels are removed, minus the drop when as many random pixels are removed.
//!
//! Scores accumulate per class as sums and counts; means are taken when reported. Images whose mask is empty
//! (no-tumour images) have no lesion to point at and are not scored against masks.

use serde::Serialize;

/// One map scored against one non-empty mask of the same size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MaskScores {
    /// The map's maximum lies inside the mask (the first maximum in row-major order; no tolerance margin).
    pub pointing_hit: bool,
    /// Σ map inside the mask / Σ map (0 when the map is all zero).
    pub energy_in_mask: f64,
    /// Dice of `map ≥ threshold` against the mask.
    pub dice: f64,
    /// IoU of `map ≥ threshold` against the mask.
    pub iou: f64,
    /// Fraction of the image the mask covers: the energy in mask of a uniform map (the chance level).
    pub mask_area: f64,
}

/// Score `map` (values in [0, 1], row-major) against `mask`; `None` when the sizes differ or the mask is empty.
pub fn score_against_mask(map: &[f32], mask: &[bool], threshold: f32) -> Option<MaskScores> {
    if map.len() != mask.len() || !mask.iter().any(|&m| m) {
        return None;
    }
    let (peak, _) = map
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        });
    let (mut inside, mut total) = (0f64, 0f64);
    let (mut both, mut predicted, mut truth) = (0usize, 0usize, 0usize);
    for (&v, &m) in map.iter().zip(mask) {
        let v64 = f64::from(v.max(0.0));
        total += v64;
        let on = v >= threshold;
        if m {
            inside += v64;
            truth += 1;
        }
        if on {
            predicted += 1;
            if m {
                both += 1;
            }
        }
    }
    let union = predicted + truth - both;
    Some(MaskScores {
        pointing_hit: mask[peak],
        energy_in_mask: if total > 0.0 { inside / total } else { 0.0 },
        dice: 2.0 * both as f64 / (predicted + truth) as f64,
        iou: both as f64 / union as f64,
        mask_area: truth as f64 / mask.len() as f64,
    })
}

/// Sums for one group of images (a class, or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QualitySums {
    /// Images scored against a mask.
    pub masked: usize,
    pub pointing_hits: usize,
    pub energy_in_mask: f64,
    pub dice: f64,
    pub iou: f64,
    pub mask_area: f64,
    /// Images with a deletion score.
    pub deletion_images: usize,
    /// Σ (confidence drop with the top pixels removed − drop with random pixels removed).
    pub deletion_gain: f64,
}

impl QualitySums {
    pub fn add_mask(&mut self, s: &MaskScores) {
        self.masked += 1;
        self.pointing_hits += usize::from(s.pointing_hit);
        self.energy_in_mask += s.energy_in_mask;
        self.dice += s.dice;
        self.iou += s.iou;
        self.mask_area += s.mask_area;
    }

    pub fn add_deletion(&mut self, cam_drop: f64, random_drop: f64) {
        self.deletion_images += 1;
        self.deletion_gain += cam_drop - random_drop;
    }

    pub fn merge(&mut self, other: &QualitySums) {
        self.masked += other.masked;
        self.pointing_hits += other.pointing_hits;
        self.energy_in_mask += other.energy_in_mask;
        self.dice += other.dice;
        self.iou += other.iou;
        self.mask_area += other.mask_area;
        self.deletion_images += other.deletion_images;
        self.deletion_gain += other.deletion_gain;
    }

    /// Means over the images that had each score (`None` where none had).
    pub fn means(&self) -> QualityMeans {
        let over = |sum: f64, n: usize| (n > 0).then(|| sum / n as f64);
        QualityMeans {
            masked: self.masked,
            pointing_game: over(self.pointing_hits as f64, self.masked),
            energy_in_mask: over(self.energy_in_mask, self.masked),
            dice: over(self.dice, self.masked),
            iou: over(self.iou, self.masked),
            mask_area: over(self.mask_area, self.masked),
            deletion_images: self.deletion_images,
            deletion_gain: over(self.deletion_gain, self.deletion_images),
        }
    }
}

/// Means of a group's scores, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityMeans {
    pub masked: usize,
    pub pointing_game: Option<f64>,
    pub energy_in_mask: Option<f64>,
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    /// Mean mask area: what a uniform map would score as energy in mask.
    pub mask_area: Option<f64>,
    pub deletion_images: usize,
    pub deletion_gain: Option<f64>,
}

/// Indices of the `fraction` of pixels with the highest map values (ties broken by position).
pub fn top_pixels(map: &[f32], fraction: f64) -> Vec<usize> {
    let k = ((map.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        // 2×3 map; mask = left column.
        let map = [0.9, 0.2, 0.0, 0.6, 0.1, 0.2];
        let mask = [true, false, false, true, false, false];
        let s = score_against_mask(&map, &mask, 0.5).expect("non-empty mask");
        assert!(s.pointing_hit);
        // Energy: (0.9 + 0.6) / 2.0.
        assert!((s.energy_in_mask - 0.75).abs() < 1e-6, "{s:?}");
        // Thresholded at 0.5: {0, 3} = the mask exactly.
        assert_eq!((s.dice, s.iou, s.mask_area), (1.0, 1.0, 2.0 / 6.0));
        let s = score_against_mask(&map, &mask, 0.15).expect("non-empty mask");
        // {0, 1, 3, 5} vs {0, 3}: Dice 2·2/(4+2), IoU 2/4.
        assert!((s.dice - 4.0 / 6.0).abs() < 1e-12 && (s.iou - 0.5).abs() < 1e-12);
    }

    #[test]
    fn miss_empty_mask_and_zero_map() {
        let mask = [false, true, false, false];
        let s = score_against_mask(&[1.0, 0.5, 0.0, 0.0], &mask, 0.5).expect("non-empty");
        assert!(!s.pointing_hit);
        assert_eq!(score_against_mask(&[1.0; 4], &[false; 4], 0.5), None);
        assert_eq!(score_against_mask(&[1.0; 3], &mask, 0.5), None);
        let s = score_against_mask(&[0.0; 4], &mask, 0.5).expect("non-empty");
        assert_eq!((s.energy_in_mask, s.dice, s.iou), (0.0, 0.0, 0.0));
    }

    #[test]
    fn sums_average_only_what_was_scored() {
        let mut sums = QualitySums::default();
        let mask = [true, false];
        sums.add_mask(&score_against_mask(&[1.0, 0.0], &mask, 0.5).expect("scored"));
        sums.add_mask(&score_against_mask(&[0.0, 1.0], &mask, 0.5).expect("scored"));
        sums.add_deletion(0.5, 0.1);
        let m = sums.means();
        assert_eq!(m.pointing_game, Some(0.5));
        assert_eq!(m.energy_in_mask, Some(0.5));
        assert!((m.deletion_gain.expect("one") - 0.4).abs() < 1e-12);
        assert_eq!(QualitySums::default().means().dice, None);
    }

    #[test]
    fn top_pixels_takes_the_largest_fraction() {
        let map = [0.1, 0.9, 0.5, 0.9, 0.0];
        assert_eq!(top_pixels(&map, 0.4), vec![1, 3]);
        assert_eq!(top_pixels(&map, 0.0), Vec::<usize>::new());
        assert_eq!(top_pixels(&map, 1.0).len(), 5);
    }
}
