//! Appearance refinement of a class activation map: the map says roughly *where* the evidence lies, the image
//! says *which pixels* look alike. A two-class mixture (tumour / rest) over the pixels' grey levels, with the map
//! as each pixel's prior, is fitted by expectation–maximisation: the grey-level histograms of both classes are
//! re-estimated from the current posteriors, the posteriors from the histograms and the fixed prior. Grey levels
//! that are over-represented where the map is hot (the lesion's) gain; those common everywhere (the brain's) lose.
//! It is the colour-model half of GrabCut, without its graph cut, and what turns a CAM blob much larger than the
//! lesion into the lesion's outline.

/// Grey-level bins of the histograms (4 grey levels each).
pub const BINS: usize = 64;
/// Standard deviation, in bins, of the Gaussian that smooths each histogram.
const SMOOTHING: f32 = 1.0;
/// Pseudo-count added to every bin before smoothing (no grey level is impossible).
const PSEUDO_COUNT: f64 = 1e-3;

/// The posterior probability of "tumour" per pixel after `iterations` EM steps (`iterations = 0` returns the
/// prior). `map` (values ≥ 0, any scale) is divided by its maximum to make the prior; `gray` holds the pixels'
/// grey levels; only pixels inside `region` (the head) take part, the rest get 0. Inputs of unequal length give
/// an all-zero posterior.
pub fn appearance_posterior(
    map: &[f32],
    gray: &[u8],
    region: Option<&[bool]>,
    iterations: u32,
) -> Vec<f32> {
    if !sizes_agree(map.len(), gray, region) {
        return vec![0.0; map.len()];
    }
    em(prior(map, region), gray, region, iterations)
}

/// [`appearance_posterior`] from a prior that is already a probability per pixel (a segmentation network's), taken
/// as it is rather than scaled to its maximum: clamped to [0, 1], 0 outside `region`. Inputs of unequal length
/// give an all-zero posterior.
pub fn posterior_of_probabilities(
    probabilities: &[f32],
    gray: &[u8],
    region: Option<&[bool]>,
    iterations: u32,
) -> Vec<f32> {
    if !sizes_agree(probabilities.len(), gray, region) {
        return vec![0.0; probabilities.len()];
    }
    let prior = probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| match region.is_none_or(|r| r[i]) {
            true => p.clamp(0.0, 1.0),
            false => 0.0,
        })
        .collect();
    em(prior, gray, region, iterations)
}

/// Whether the grey levels and the region (if any) have `n` pixels, as the map does.
fn sizes_agree(n: usize, gray: &[u8], region: Option<&[bool]>) -> bool {
    gray.len() == n && region.is_none_or(|r| r.len() == n)
}

/// `iterations` EM steps from `prior` (of `gray`'s length, 0 outside `region`).
fn em(prior: Vec<f32>, gray: &[u8], region: Option<&[bool]>, iterations: u32) -> Vec<f32> {
    let inside = |i: usize| region.is_none_or(|r| r[i]);
    let bin = |g: u8| usize::from(g) * BINS / 256;
    let mut posterior = prior.clone();
    for _ in 0..iterations {
        let mut tumour = [PSEUDO_COUNT; BINS];
        let mut rest = [PSEUDO_COUNT; BINS];
        for (i, (q, g)) in posterior.iter().zip(gray).enumerate() {
            if inside(i) {
                tumour[bin(*g)] += f64::from(*q);
                rest[bin(*g)] += f64::from(1.0 - q);
            }
        }
        let tumour = normalised(&smoothed(&tumour));
        let rest = normalised(&smoothed(&rest));
        for (i, (q, (p, g))) in posterior.iter_mut().zip(prior.iter().zip(gray)).enumerate() {
            if !inside(i) {
                continue;
            }
            let (p, lf, lb) = (f64::from(*p), tumour[bin(*g)], rest[bin(*g)]);
            *q = (p * lf / (p * lf + (1.0 - p) * lb + 1e-12)) as f32;
        }
    }
    posterior
}

/// The prior of [`appearance_posterior`]: `map` divided by its maximum (clamped to [0, 1]), 0 outside `region`
/// (of `map`'s length) and everywhere for a map without a positive value.
pub fn prior(map: &[f32], region: Option<&[bool]>) -> Vec<f32> {
    let max = map.iter().copied().fold(0.0f32, f32::max);
    map.iter()
        .enumerate()
        .map(|(i, v)| {
            if region.is_none_or(|r| r[i]) && max > 0.0 {
                (v / max).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// A histogram convolved with a Gaussian of [`SMOOTHING`] bins (radius 4σ, mirrored edges as in
/// `scipy.ndimage.gaussian_filter1d`).
fn smoothed(histogram: &[f64; BINS]) -> [f64; BINS] {
    let radius = (4.0 * SMOOTHING).round() as isize;
    let sigma = f64::from(SMOOTHING);
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|k| (-0.5 * (k as f64 / sigma).powi(2)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let last = BINS as isize - 1;
    let mirror = |j: isize| -> usize {
        let j = if j < 0 { -j - 1 } else { j };
        (if j > last { 2 * last + 1 - j } else { j }) as usize
    };
    let mut out = [0.0; BINS];
    for (i, o) in out.iter_mut().enumerate() {
        *o = kernel
            .iter()
            .zip(-radius..=radius)
            .map(|(w, k)| w * histogram[mirror(i as isize + k)])
            .sum::<f64>()
            / total;
    }
    out
}

fn normalised(histogram: &[f64; BINS]) -> [f64; BINS] {
    let total: f64 = histogram.iter().sum();
    histogram.map(|v| v / total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 40×40: a textured head (grey 100 with stripes at 60 and 150) holding a bright lesion (220, radius 5) at
    /// (20, 18), and a Gaussian map (σ = 6) centred 2 pixels right of and below it — a CAM coarser than the
    /// lesion and a little off.
    pub(crate) fn scene() -> (Vec<f32>, Vec<u8>, Vec<bool>) {
        let side = 40usize;
        let (mut map, mut gray, mut lesion) = (
            vec![0f32; side * side],
            vec![100u8; side * side],
            vec![false; side * side],
        );
        for y in 0..side {
            for x in 0..side {
                let i = y * side + x;
                let (fx, fy) = (x as f32, y as f32);
                if ((fx - 20.0).powi(2) + (fy - 18.0).powi(2)).sqrt() <= 5.0 {
                    gray[i] = 220;
                    lesion[i] = true;
                } else if y % 6 == 0 {
                    gray[i] = 60;
                } else if x % 7 == 0 {
                    gray[i] = 150;
                }
                map[i] = (-((fx - 22.0).powi(2) + (fy - 20.0).powi(2)) / 72.0).exp();
            }
        }
        (map, gray, lesion)
    }

    pub(crate) fn dice(a: &[bool], b: &[bool]) -> f64 {
        let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
        let total = a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count();
        2.0 * both as f64 / total as f64
    }

    #[test]
    fn the_posterior_beats_every_fixed_threshold_of_the_map() {
        let (map, gray, lesion) = scene();
        let best_fixed = (1..20)
            .map(|k| {
                let level = k as f32 / 20.0;
                let mask: Vec<bool> = map.iter().map(|v| *v >= level).collect();
                dice(&mask, &lesion)
            })
            .fold(0.0, f64::max);
        let posterior = appearance_posterior(&map, &gray, None, 10);
        let refined: Vec<bool> = posterior.iter().map(|q| *q >= 0.5).collect();
        let after = dice(&refined, &lesion);
        // numpy prototype of the same scene: best fixed level 0.663, refined 0.798.
        assert!(best_fixed < 0.7, "fixed levels: {best_fixed}");
        assert!(
            after > best_fixed + 0.1,
            "refined {after} vs fixed {best_fixed}"
        );
    }

    #[test]
    fn zero_iterations_give_the_normalised_prior_and_pixels_outside_the_region_stay_zero() {
        let (map, gray, _) = scene();
        let mut head = vec![true; map.len()];
        let scaled: Vec<f32> = map.iter().map(|v| v * 7.0).collect();
        head[18 * 40 + 20] = false;
        let prior = appearance_posterior(&scaled, &gray, Some(&head), 0);
        for (i, (p, m)) in prior.iter().zip(&map).enumerate() {
            let expected = if head[i] { *m } else { 0.0 };
            assert!((p - expected).abs() < 1e-6, "pixel {i}: {p} vs {expected}");
        }
        let refined = appearance_posterior(&scaled, &gray, Some(&head), 5);
        assert_eq!(refined[18 * 40 + 20], 0.0);
        assert!(refined.iter().all(|q| (0.0..=1.0).contains(q)));
    }

    #[test]
    fn probabilities_are_a_prior_as_they_are_not_scaled_to_their_maximum() {
        let (map, gray, _) = scene();
        let weak: Vec<f32> = map.iter().map(|m| 0.6 * m).collect();
        let taken = posterior_of_probabilities(&weak, &gray, None, 0);
        assert!(taken.iter().zip(&weak).all(|(a, b)| (a - b).abs() < 1e-6));
        let scaled = appearance_posterior(&weak, &gray, None, 0);
        assert!(scaled.iter().zip(&map).all(|(a, b)| (a - b).abs() < 1e-6));
        // A weaker prior claims fewer pixels after the same EM steps.
        let area = |q: &[f32]| q.iter().filter(|v| **v >= 0.5).count();
        let (weak_area, full_area) = (
            area(&posterior_of_probabilities(&weak, &gray, None, 10)),
            area(&appearance_posterior(&weak, &gray, None, 10)),
        );
        assert!(weak_area < full_area, "{weak_area} vs {full_area}");
        assert!(posterior_of_probabilities(&weak, &gray[1..], None, 3)
            .iter()
            .all(|q| *q == 0.0));
    }

    #[test]
    fn degenerate_inputs_give_an_empty_posterior() {
        assert!(appearance_posterior(&[0.0; 9], &[10; 9], None, 5)
            .iter()
            .all(|q| *q == 0.0));
        assert_eq!(
            appearance_posterior(&[1.0; 9], &[10; 8], None, 5),
            vec![0.0; 9]
        );
    }

    #[test]
    fn smoothing_keeps_the_mass_and_mirrors_at_the_edges() {
        let mut h = [0.0; BINS];
        h[0] = 1.0;
        h[30] = 2.0;
        let s = smoothed(&h);
        assert!((s.iter().sum::<f64>() - 3.0).abs() < 1e-9);
        assert!((s[29] - s[31]).abs() < 1e-12 && s[30] > s[29]);
        // Bin 0's mass reflected at the edge: bins 0 and 1 see it at distances 0 and 1 plus their mirrors.
        assert!(s[0] > s[1] && s[1] > s[2]);
    }
}
