//! Surface distances between a predicted and a reference binary mask, 2-D or 3-D, with MONAI's conventions
//! (`compute_hausdorff_distance(percentile=95)` and `compute_average_surface_distance(symmetric=True)`):
//! - a mask's surface is its set pixels with at least one face neighbour unset or outside the grid (the mask minus
//!   its binary erosion by the cross-shaped element, the grid padded with empty pixels);
//! - each surface pixel of one mask gets the Euclidean distance, in the units of the spacing, to the nearest surface
//!   pixel of the other, in both directions;
//! - HD95 is the larger of the two directions' 95th percentiles (linear interpolation, as `torch.quantile`); the
//!   average surface distance (ASD) is the mean of both directions' distances together.
//!
//! Empty masks: with both empty there is no surface (MONAI: NaN); with exactly one empty every distance is infinite
//! (MONAI: an infinite Hausdorff distance). [`SurfaceDistance`] names the two cases instead of carrying NaN or ∞,
//! which JSON cannot hold; the group sums count them apart.
//!
//! Masks are flat, row-major (the last axis fastest): `dims` is `[height, width]` or `[depth, height, width]` and
//! `spacing` gives the pixel size along the same axes.

use serde::{Deserialize, Serialize};

/// The surface distances of one mask pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SurfaceDistance {
    /// Neither mask has a pixel (MONAI: NaN).
    BothEmpty,
    /// Exactly one mask is empty (MONAI: infinite).
    OneEmpty,
    Measured {
        /// Symmetric 95th-percentile Hausdorff distance.
        hd95: f64,
        /// Symmetric average surface distance.
        asd: f64,
    },
}

/// The pixels of `mask` on its surface (see the module notes).
pub fn surface(mask: &[bool], dims: &[usize]) -> Vec<bool> {
    let strides = strides(dims);
    (0..mask.len())
        .map(|index| {
            mask[index]
                && dims.iter().zip(&strides).any(|(&size, &stride)| {
                    let coordinate = (index / stride) % size;
                    coordinate == 0
                        || coordinate + 1 == size
                        || !mask[index - stride]
                        || !mask[index + stride]
                })
        })
        .collect()
}

/// Surface distances between `predicted` and `reference` on a grid of `dims` with pixel size `spacing`.
///
/// # Panics
/// When the masks' lengths differ from the grid's size or `spacing` has another rank than `dims`: a caller's bug.
pub fn surface_distance(
    predicted: &[bool],
    reference: &[bool],
    dims: &[usize],
    spacing: &[f64],
) -> SurfaceDistance {
    let size: usize = dims.iter().product();
    assert!(
        predicted.len() == size && reference.len() == size && spacing.len() == dims.len(),
        "mask and grid shapes differ"
    );
    let predicted_surface = surface(predicted, dims);
    let reference_surface = surface(reference, dims);
    let (any_predicted, any_reference) = (
        predicted_surface.iter().any(|p| *p),
        reference_surface.iter().any(|p| *p),
    );
    match (any_predicted, any_reference) {
        (false, false) => return SurfaceDistance::BothEmpty,
        (true, false) | (false, true) => return SurfaceDistance::OneEmpty,
        (true, true) => {}
    }
    let to_reference = distances_at(&predicted_surface, &reference_surface, dims, spacing);
    let to_predicted = distances_at(&reference_surface, &predicted_surface, dims, spacing);
    let hd95 = percentile(&to_reference, 95.0).max(percentile(&to_predicted, 95.0));
    let count = (to_reference.len() + to_predicted.len()) as f64;
    let asd = to_reference.iter().chain(&to_predicted).sum::<f64>() / count;
    SurfaceDistance::Measured { hd95, asd }
}

/// The distance from each pixel set in `from` to the nearest pixel set in `to` (which has at least one).
fn distances_at(from: &[bool], to: &[bool], dims: &[usize], spacing: &[f64]) -> Vec<f64> {
    let squared = squared_distance_transform(to, dims, spacing);
    from.iter()
        .zip(&squared)
        .filter(|(set, _)| **set)
        .map(|(_, d)| d.sqrt())
        .collect()
}

/// The `p`-th percentile of `values` (not empty) with linear interpolation between order statistics, as
/// `torch.quantile` and `numpy.percentile` compute it.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for axis in (0..dims.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * dims[axis + 1];
    }
    strides
}

/// The exact squared Euclidean distance from every pixel to the nearest set pixel of `targets` (∞ where there
/// is none), with anisotropic spacing: the separable lower-envelope transform of Felzenszwalb and Huttenlocher,
/// one pass per axis.
pub fn squared_distance_transform(targets: &[bool], dims: &[usize], spacing: &[f64]) -> Vec<f64> {
    let mut field: Vec<f64> = targets
        .iter()
        .map(|&t| if t { 0.0 } else { f64::INFINITY })
        .collect();
    let strides = strides(dims);
    for axis in 0..dims.len() {
        let (size, stride) = (dims[axis], strides[axis]);
        let mut line = vec![0.0; size];
        let mut out = vec![0.0; size];
        for start in (0..field.len()).filter(|i| (i / stride) % size == 0) {
            for (k, value) in line.iter_mut().enumerate() {
                *value = field[start + k * stride];
            }
            envelope_1d(&line, spacing[axis], &mut out);
            for (k, value) in out.iter().enumerate() {
                field[start + k * stride] = *value;
            }
        }
    }
    field
}

/// One line of the transform: out[p] = min_q ((p − q)·step)² + f[q] over the q where f is finite.
fn envelope_1d(f: &[f64], step: f64, out: &mut [f64]) {
    let position = |q: usize| q as f64 * step;
    // Parabola apexes (indices) of the lower envelope and where each starts to be the lowest.
    let mut apexes: Vec<usize> = Vec::with_capacity(f.len());
    let mut starts: Vec<f64> = Vec::with_capacity(f.len());
    for q in (0..f.len()).filter(|&q| f[q].is_finite()) {
        let mut start = f64::NEG_INFINITY;
        while let Some(&v) = apexes.last() {
            start = ((f[q] + position(q).powi(2)) - (f[v] + position(v).powi(2)))
                / (2.0 * (position(q) - position(v)));
            if start <= starts[starts.len() - 1] {
                apexes.pop();
                starts.pop();
                start = f64::NEG_INFINITY;
            } else {
                break;
            }
        }
        apexes.push(q);
        starts.push(start);
    }
    if apexes.is_empty() {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    }
    let mut k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        while k + 1 < apexes.len() && starts[k + 1] < position(p) {
            k += 1;
        }
        let apex = apexes[k];
        *o = (position(p) - position(apex)).powi(2) + f[apex];
    }
}

/// Sums of surface distances over a group of images: the images both of whose masks have pixels, and the ones
/// with exactly one empty (an infinite distance, counted apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SurfaceSums {
    pub measured: usize,
    pub hd95_sum: f64,
    pub asd_sum: f64,
    pub one_empty: usize,
}

impl SurfaceSums {
    pub fn add(&mut self, distance: &SurfaceDistance) {
        match *distance {
            SurfaceDistance::Measured { hd95, asd } => {
                self.measured += 1;
                self.hd95_sum += hd95;
                self.asd_sum += asd;
            }
            SurfaceDistance::OneEmpty => self.one_empty += 1,
            SurfaceDistance::BothEmpty => {}
        }
    }

    pub fn merge(&mut self, other: &SurfaceSums) {
        self.measured += other.measured;
        self.hd95_sum += other.hd95_sum;
        self.asd_sum += other.asd_sum;
        self.one_empty += other.one_empty;
    }

    /// Mean HD95 and ASD over the measured images.
    pub fn means(&self) -> (Option<f64>, Option<f64>) {
        let mean = |sum: f64| (self.measured > 0).then(|| sum / self.measured as f64);
        (mean(self.hd95_sum), mean(self.asd_sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The squared distance to the nearest target by trying every target.
    fn brute_force(targets: &[bool], dims: &[usize], spacing: &[f64]) -> Vec<f64> {
        let strides = strides(dims);
        let coordinates = |i: usize| -> Vec<f64> {
            (0..dims.len())
                .map(|a| ((i / strides[a]) % dims[a]) as f64 * spacing[a])
                .collect()
        };
        (0..targets.len())
            .map(|i| {
                let here = coordinates(i);
                (0..targets.len())
                    .filter(|&j| targets[j])
                    .map(|j| {
                        let there = coordinates(j);
                        here.iter().zip(&there).map(|(a, b)| (a - b).powi(2)).sum()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn the_surface_of_a_filled_rectangle_is_its_rim_and_the_grid_edge_counts() {
        // A 3×4 block inside a 5×6 grid: its 10 rim pixels, not its 2 inner ones.
        let dims = [5, 6];
        let mask: Vec<bool> = (0..30)
            .map(|i| (1..4).contains(&(i / 6)) && (1..5).contains(&(i % 6)))
            .collect();
        let rim = surface(&mask, &dims);
        assert_eq!(rim.iter().filter(|p| **p).count(), 10);
        assert!(!rim[2 * 6 + 2] && !rim[2 * 6 + 3] && rim[6 + 1]);
        // A full grid: only the pixels on the grid's border are surface (the outside is empty).
        let full = surface(&[true; 30], &dims);
        assert_eq!(full.iter().filter(|p| **p).count(), 30 - 3 * 4);
    }

    #[test]
    fn percentile_interpolates_like_torch_quantile() {
        // torch.quantile(torch.tensor([1., 2., 3., 4., 10.]), 0.95) = 8.8
        assert!((percentile(&[10.0, 1.0, 3.0, 2.0, 4.0], 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }

    #[test]
    fn a_shifted_square_is_as_far_as_the_shift() {
        let dims = [12, 12];
        let square = |dx: usize| -> Vec<bool> {
            (0..144)
                .map(|i| (3..8).contains(&(i / 12)) && (2 + dx..7 + dx).contains(&(i % 12)))
                .collect()
        };
        match surface_distance(&square(2), &square(0), &dims, &[1.0, 0.5]) {
            SurfaceDistance::Measured { hd95, .. } => assert!((hd95 - 1.0).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
        let empty = vec![false; 144];
        assert_eq!(
            surface_distance(&empty, &empty, &dims, &[1.0, 1.0]),
            SurfaceDistance::BothEmpty
        );
        assert_eq!(
            surface_distance(&square(0), &empty, &dims, &[1.0, 1.0]),
            SurfaceDistance::OneEmpty
        );
    }

    proptest! {
        #[test]
        fn the_distance_transform_is_exact(
            bits in proptest::collection::vec(proptest::bool::weighted(0.08), 4 * 5 * 6),
            spacing in proptest::collection::vec(0.3f64..3.0, 3),
        ) {
            let dims = [4, 5, 6];
            let fast = squared_distance_transform(&bits, &dims, &spacing);
            let slow = brute_force(&bits, &dims, &spacing);
            for (a, b) in fast.iter().zip(&slow) {
                prop_assert!(a == b || (a - b).abs() < 1e-9, "{} vs {}", a, b);
            }
        }
    }
}
