//! Occlusion maps (Zeiler & Fergus 2014): slide a black square over the image and record how much the target
//! class's probability drops while each pixel is covered. Unlike a gradient map, this asks the classifier what
//! it decides without a region, so it finds evidence that a gradient at one point misses — on the phantom, the
//! pituitary lesion (BENCHMARKS.md). Black (pixel value 0, the MRI's background) is the fill because it is what
//! the classifier reads as "nothing here"; a blurred or mean-filled patch leaves a blob it reads as a lesion.
//!
//! Cost: one forward pass per window — `origins(side).len()²` of them, 144 for 48:16 at 224 px.

use crate::cam::refine::prior;
use crate::data::preprocess::black_out;
use crate::model::folded::Rect;
use crate::model::inference::{InferenceError, Predictor};
use burn::tensor::Device;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Window side and step, in pixels of the classifier's input, and the occlusion map's weight when combined with
/// a CAM ([`combine`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Occlusion {
    pub patch: u32,
    pub stride: u32,
    pub weight: f32,
}

impl Occlusion {
    /// The weight when none is given: an equal geometric mean.
    pub const DEFAULT_WEIGHT: f32 = 0.5;
}

impl fmt::Display for Occlusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.patch, self.stride, self.weight)
    }
}

impl FromStr for Occlusion {
    type Err = String;

    /// `PATCH:STRIDE[:WEIGHT]`, e.g. `48:16` or `48:24:0.25`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').map(str::trim).collect();
        let parsed = match parts.as_slice() {
            [p, s] | [p, s, _] => (|| {
                Some(Occlusion {
                    patch: p.parse().ok()?,
                    stride: s.parse().ok()?,
                    weight: match parts.get(2) {
                        Some(w) => w.parse().ok()?,
                        None => Occlusion::DEFAULT_WEIGHT,
                    },
                })
            })(),
            _ => None,
        };
        match parsed {
            Some(o)
                if o.patch >= 1
                    && o.stride >= 1
                    && o.stride <= o.patch
                    && (0.0..=1.0).contains(&o.weight) =>
            {
                Ok(o)
            }
            _ => Err(format!(
                "`{text}`: expected PATCH:STRIDE[:WEIGHT], pixels with 1 ≤ STRIDE ≤ PATCH and a weight in [0, 1] \
                 (e.g. 48:16 or 48:24:0.25)"
            )),
        }
    }
}

impl Occlusion {
    /// Window origins along a side of `side` pixels: every `stride` while the window fits, and one flush with
    /// the far edge when the steps leave pixels uncovered. A patch wider than the side gives one window at 0.
    pub fn origins(self, side: u32) -> Vec<u32> {
        if self.patch >= side {
            return vec![0];
        }
        let last = side - self.patch;
        let mut origins: Vec<u32> = (0..=last).step_by(self.stride as usize).collect();
        if origins.last() != Some(&last) {
            origins.push(last);
        }
        origins
    }
}

/// A copy of `image` with every pixel where `covered(x, y)` black (0, the MRI's background).
fn blacked_out(image: &RgbImage, covered: impl Fn(usize, usize) -> bool) -> RgbImage {
    let mut copy = image.clone();
    black_out(&mut copy, covered);
    copy
}

/// The occlusion map of `image` (already at the classifier's input size, square) for class `target`: per pixel,
/// the mean over the windows that cover it of `p(target | image) − p(target | image with the window black)`,
/// floored at 0 (a window that makes the class more likely is not evidence for it); `base` is
/// `p(target | image)`, which the caller has from its CAM pass. Row-major, `side × side`. `batch` windows go
/// through the model at a time (on a device without autodiff).
pub fn occlusion_map(
    model: &Predictor,
    image: &RgbImage,
    target: usize,
    base: f32,
    occlusion: Occlusion,
    batch: usize,
    device: &Device,
) -> Result<Vec<f32>, InferenceError> {
    let side = image.width();
    let n = side as usize;
    let origins = occlusion.origins(side);
    let windows: Vec<(u32, u32)> = origins
        .iter()
        .flat_map(|&y| origins.iter().map(move |&x| (y, x)))
        .collect();
    let mut sum = vec![0f32; n * n];
    let mut covered = vec![0u32; n * n];
    let patch = occlusion.patch.min(side);
    let regions: Vec<Rect> = windows
        .iter()
        .map(|&(y0, x0)| Rect {
            y: [y0 as usize, (y0 + patch) as usize],
            x: [x0 as usize, (x0 + patch) as usize],
        })
        .collect();
    let occluded: Vec<RgbImage> = regions
        .iter()
        .map(|r| blacked_out(image, |x, y| r.contains(y, x)))
        .collect();
    let probs = model.probabilities_of_edits(image, &occluded, &regions, batch, device)?;
    for (r, p) in regions.iter().zip(&probs) {
        let drop = base - p.get(target).copied().unwrap_or(0.0);
        for y in r.y[0]..r.y[1] {
            for x in r.x[0]..r.x[1] {
                sum[y * n + x] += drop;
                covered[y * n + x] += 1;
            }
        }
    }
    Ok(sum
        .iter()
        .zip(&covered)
        .map(|(s, c)| {
            if *c == 0 {
                0.0
            } else {
                (s / *c as f32).max(0.0)
            }
        })
        .collect())
}

/// A CAM (values in [0, 1]) combined with an occlusion map of the same size: their weighted geometric mean
/// `cam^(1−w) · (occlusion / max)^w`, scaled to a maximum of 1 — a pixel must be evidence by both the gradient
/// and the occlusion. An occlusion map with no positive value (no window lowered the probability) carries no
/// location; the CAM is kept as it is then.
pub fn combine(cam: &[f32], occlusion: &[f32], weight: f32) -> Vec<f32> {
    let occlusion = prior(occlusion, None);
    if occlusion.iter().all(|o| *o <= 0.0) {
        return cam.to_vec();
    }
    let out: Vec<f32> = cam
        .iter()
        .zip(&occlusion)
        .map(|(c, o)| c.max(0.0).powf(1.0 - weight) * o.powf(weight))
        .collect();
    prior(&out, None)
}

/// A map (values ≥ 0, any scale) raised to `exponent` and scaled to a maximum of 1: the hottest pixels keep
/// their rank while the rest fall towards 0, so the same threshold cuts a tighter mask around the peak (a blob
/// much larger than the lesion shrinks onto it). A map with no positive value comes back as zeros.
pub fn sharpened(map: &[f32], exponent: f32) -> Vec<f32> {
    prior(map, None)
        .into_iter()
        .map(|v| v.powf(exponent))
        .collect()
}

/// Of several candidate masks for one image (`side`×`side`, row-major, any side), the one the classifier
/// confirms: each is blacked out of `image` (at the classifier's input size) and the class probability read
/// again. Among the candidates whose removal at least halves `base` (the probability of `target` without
/// removal) the smallest wins — it holds the evidence with the fewest pixels; when none does, the one whose
/// removal lowers the probability most. Empty candidates never win against a non-empty one. Returns the index
/// and the probability after each removal.
pub fn confirmed_by_deletion(
    model: &Predictor,
    image: &RgbImage,
    target: usize,
    base: f32,
    candidates: &[&[bool]],
    side: usize,
    device: &Device,
) -> Result<(usize, Vec<f32>), InferenceError> {
    let n = image.width() as usize;
    // Nearest neighbour as PIL resizes: output pixel x samples source ⌊(x + ½) · side / n⌋.
    let source: Vec<usize> = (0..n)
        .map(|x| ((2 * x + 1) * side / (2 * n)).min(side - 1))
        .collect();
    let removed: Vec<RgbImage> = candidates
        .iter()
        .map(|mask| blacked_out(image, |x, y| mask[source[y] * side + source[x]]))
        .collect();
    let after: Vec<f32> = model
        .probabilities(&removed, device)?
        .iter()
        .map(|p| p.get(target).copied().unwrap_or(0.0))
        .collect();
    let areas: Vec<usize> = candidates
        .iter()
        .map(|m| m.iter().filter(|v| **v).count())
        .collect();
    Ok((confirmed(base, &after, &areas), after))
}

/// The rule of [`confirmed_by_deletion`] on its numbers: `after[i]` the probability once candidate `i` (of
/// `areas[i]` pixels) is removed, `base` before.
pub fn confirmed(base: f32, after: &[f32], areas: &[usize]) -> usize {
    let usable: Vec<usize> = (0..after.len().min(areas.len()))
        .filter(|&i| areas[i] > 0)
        .collect();
    let halving = usable
        .iter()
        .copied()
        .filter(|&i| after[i] <= base / 2.0)
        .min_by_key(|&i| areas[i]);
    let lowest = usable
        .iter()
        .copied()
        .min_by(|&a, &b| after[a].total_cmp(&after[b]));
    halving.or(lowest).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_patch_and_stride() {
        let o: Occlusion = "48:16".parse().unwrap();
        assert_eq!(
            o,
            Occlusion {
                patch: 48,
                stride: 16,
                weight: 0.5
            }
        );
        assert_eq!(o.to_string(), "48:16:0.5");
        assert_eq!(o.to_string().parse::<Occlusion>(), Ok(o));
        let weighted: Occlusion = "48:24:0.25".parse().unwrap();
        assert_eq!((weighted.stride, weighted.weight), (24, 0.25));
        for bad in [
            "48",
            "0:1",
            "16:32",
            "a:b",
            "48:0",
            "",
            "48:16:1.5",
            "48:16:0.5:1",
        ] {
            assert!(bad.parse::<Occlusion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_cover_every_pixel_and_end_flush() {
        let exact: Occlusion = "48:16".parse().unwrap();
        assert_eq!(exact.origins(224).len(), 12);
        // Every pixel of the side lies in some window, for strides that divide evenly and those that do not.
        for spec in ["48:16", "48:24", "112:112", "30:7"] {
            let o: Occlusion = spec.parse().unwrap();
            let covered = |p: u32| {
                o.origins(224)
                    .iter()
                    .any(|s| (*s..s + o.patch).contains(&p))
            };
            assert!((0..224).all(covered), "{spec}");
            assert!(o.origins(224).iter().all(|s| s + o.patch <= 224), "{spec}");
        }
        let ragged: Occlusion = "48:24".parse().unwrap();
        // 0, 24, …, 168 leaves 216..224 uncovered: one more window at 176.
        assert_eq!(
            ragged.origins(224),
            vec![0, 24, 48, 72, 96, 120, 144, 168, 176]
        );
        let wide: Occlusion = "300:10".parse().unwrap();
        assert_eq!(wide.origins(224), vec![0]);
    }

    #[test]
    fn deletion_keeps_the_smallest_halving_mask_else_the_strongest_and_never_an_empty_one() {
        // Both halve 0.8: the smaller (index 1) wins although the larger removes more.
        assert_eq!(confirmed(0.8, &[0.1, 0.4], &[500, 200]), 1);
        // Only the larger halves it.
        assert_eq!(confirmed(0.8, &[0.3, 0.5], &[500, 200]), 0);
        // Neither halves it: the lower probability wins.
        assert_eq!(confirmed(0.8, &[0.7, 0.6], &[100, 900]), 1);
        // An empty mask "removes" nothing, whatever the probability says.
        assert_eq!(confirmed(0.8, &[0.1, 0.7], &[0, 300]), 1);
        assert_eq!(confirmed(0.8, &[0.1, 0.1], &[0, 0]), 0);
    }

    #[test]
    fn sharpening_keeps_the_order_and_the_peak_and_shrinks_the_rest() {
        let map = [0.5, 2.0, 1.0, 0.0, -1.0];
        let out = sharpened(&map, 2.0);
        // (v / 2)² : 0.0625, 1, 0.25, 0, 0 (negative values count as 0).
        for (o, e) in out.iter().zip([0.0625, 1.0, 0.25, 0.0, 0.0]) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
        // The fraction of pixels at ≥ half the maximum shrinks: 2 of 5 before (scaled: 1, 0.5), 1 after.
        let above = |m: &[f32]| m.iter().filter(|v| **v >= 0.5).count();
        assert_eq!((above(&[0.25, 1.0, 0.5, 0.0, 0.0]), above(&out)), (2, 1));
        assert_eq!(sharpened(&map, 1.0), vec![0.25, 1.0, 0.5, 0.0, 0.0]);
        assert_eq!(sharpened(&[0.0, -2.0], 2.0), vec![0.0, 0.0]);
    }

    #[test]
    fn combine_is_the_scaled_geometric_mean_and_keeps_the_cam_without_occlusion_evidence() {
        let cam = [1.0, 0.25, 0.0, 0.5];
        let occ = [0.2, 0.4, 0.4, 0.0];
        let out = combine(&cam, &occ, 0.5);
        // sqrt(cam · occ/0.4) = [0.707, 0.5, 0, 0], scaled by 1/0.707.
        let expect = [1.0, 0.5 / 0.5f32.sqrt(), 0.0, 0.0];
        for (o, e) in out.iter().zip(expect) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
        // Weight 0 keeps the CAM (where the occlusion is not zero), weight 1 the scaled occlusion.
        assert_eq!(combine(&cam, &[1.0; 4], 0.0), cam.to_vec());
        let only = combine(&[1.0; 4], &occ, 1.0);
        assert!(only
            .iter()
            .zip([0.5, 1.0, 1.0, 0.0])
            .all(|(o, e)| (o - e).abs() < 1e-6));
        assert_eq!(combine(&cam, &[0.0; 4], 0.5), cam.to_vec());
        assert_eq!(combine(&cam, &[-0.1; 4], 0.5), cam.to_vec());
    }
}
