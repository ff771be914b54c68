//! Pseudo-masks: a class activation map (values in [0, 1]) thresholded into a binary mask, with the usual
//! weak-supervision refinements — a class gate (a predicted no-tumour image gets an empty mask), restriction to
//! the head (the MRI's foreground), cleanup (keep the largest component, fill its holes), and an optional
//! IRNet-style "ignore" band between a background and a foreground level that training skips. Besides fixed
//! levels on the map, [`Threshold::Appearance`] thresholds the map refined by the image's grey levels
//! ([`super::refine`]).
//!
//! Masks are stored as 8-bit PNGs: 0 background, 255 foreground, [`IGNORE`] ignore.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// The stored value of an "ignore" pixel.
pub const IGNORE: u8 = 128;

/// How a map becomes foreground.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Threshold {
    /// Foreground where the map ≥ this fraction of its maximum.
    Fraction(f32),
    /// Otsu's threshold of the map's histogram (256 bins over [0, 1]).
    Otsu,
    /// The top `p` percent of the map's pixels.
    TopPercent(f32),
    /// Foreground where the appearance posterior ≥ 0.5: the map as prior, the image's grey levels as evidence,
    /// this many EM iterations ([`crate::cam::refine`]).
    Appearance(u32),
}

impl Threshold {
    /// The default of `pseudo-masks`: half the maximum.
    pub const DEFAULT: Threshold = Threshold::Fraction(0.5);

    /// Every method at its common setting, for comparison tables.
    pub const COMPARED: [Threshold; 6] = [
        Threshold::Fraction(0.3),
        Threshold::Fraction(0.5),
        Threshold::Fraction(0.7),
        Threshold::Otsu,
        Threshold::TopPercent(5.0),
        Threshold::Appearance(10),
    ];

    /// The level at and above which a pixel is foreground: on the map itself, or for
    /// [`Threshold::Appearance`] on the posterior (0.5).
    pub fn level(self, map: &[f32]) -> f32 {
        match self {
            Threshold::Appearance(_) => 0.5,
            Threshold::Fraction(f) => f * map.iter().copied().fold(0.0, f32::max),
            Threshold::Otsu => otsu(map),
            Threshold::TopPercent(p) => {
                if map.is_empty() {
                    return f32::INFINITY;
                }
                let mut sorted = map.to_vec();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let keep = ((p / 100.0) * map.len() as f32).round().max(1.0) as usize;
                sorted[keep.min(map.len()) - 1]
            }
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Fraction(v) => write!(f, "fraction:{v}"),
            Threshold::Otsu => write!(f, "otsu"),
            Threshold::TopPercent(p) => write!(f, "top:{p}"),
            Threshold::Appearance(n) => write!(f, "appearance:{n}"),
        }
    }
}

impl FromStr for Threshold {
    type Err = String;

    /// `fraction:0.5`, `otsu`, `top:5` (percent).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |v: &str, range: std::ops::RangeInclusive<f32>| {
            v.parse::<f32>()
                .ok()
                .filter(|x| range.contains(x))
                .ok_or_else(|| format!("`{text}`: expected a number in {range:?}"))
        };
        match text.split_once(':') {
            None if text.eq_ignore_ascii_case("otsu") => Ok(Threshold::Otsu),
            Some(("fraction", v)) => Ok(Threshold::Fraction(number(v, 0.0..=1.0)?)),
            Some(("top", v)) => Ok(Threshold::TopPercent(number(v, 0.0..=100.0)?)),
            Some(("appearance", v)) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .map(Threshold::Appearance)
                .ok_or_else(|| format!("`{text}`: expected appearance:N, N iterations in 1–100")),
            _ => Err(format!(
                "`{text}`: expected fraction:F (0–1), otsu, top:P (percent) or appearance:N (iterations)"
            )),
        }
    }
}

/// Otsu's threshold of values in [0, 1] (256 bins): the level that maximises the between-class variance. The
/// returned level is the upper edge of the last background bin; a constant map gives a level above it.
pub fn otsu(values: &[f32]) -> f32 {
    const BINS: usize = 256;
    let mut histogram = [0u64; BINS];
    for v in values {
        let bin = ((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize;
        histogram[bin] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, c)| i as f64 * *c as f64)
        .sum();
    let (mut weight_b, mut sum_b) = (0f64, 0f64);
    let (mut best, mut best_bin) = (-1f64, BINS - 1);
    for (i, count) in histogram.iter().enumerate() {
        weight_b += *count as f64;
        if weight_b == 0.0 {
            continue;
        }
        let weight_f = total - weight_b;
        if weight_f == 0.0 {
            break;
        }
        sum_b += i as f64 * *count as f64;
        let mean_b = sum_b / weight_b;
        let mean_f = (sum_all - sum_b) / weight_f;
        let between = weight_b * weight_f * (mean_b - mean_f).powi(2);
        if between > best {
            best = between;
            best_bin = i;
        }
    }
    (best_bin as f32 + 0.5) / (BINS - 1) as f32
}

/// Keep only the largest 4-connected component of `mask` (`width`×`height`, row-major).
pub fn keep_largest_component(mask: &mut [bool], width: usize, height: usize) {
    keep_largest_component_nd(mask, &[height, width]);
}

/// Keep only the largest face-connected component (4-connected in 2-D, 6-connected in 3-D) of `mask`, flat and
/// row-major over `dims` (the last axis fastest); on a tie, the one met first.
pub fn keep_largest_component_nd(mask: &mut [bool], dims: &[usize]) {
    let mut strides = vec![1usize; dims.len()];
    for axis in (0..dims.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * dims[axis + 1];
    }
    let mut label = vec![0u32; mask.len()];
    let mut sizes = vec![0usize];
    let mut queue = VecDeque::new();
    for start in 0..mask.len() {
        if !mask[start] || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        sizes.push(0);
        label[start] = id;
        queue.push_back(start);
        while let Some(i) = queue.pop_front() {
            sizes[id as usize] += 1;
            for (&size, &stride) in dims.iter().zip(&strides) {
                let coordinate = (i / stride) % size;
                let before = (coordinate > 0).then(|| i - stride);
                let after = (coordinate + 1 < size).then(|| i + stride);
                for j in [before, after].into_iter().flatten() {
                    if mask[j] && label[j] == 0 {
                        label[j] = id;
                        queue.push_back(j);
                    }
                }
            }
        }
    }
    let Some((largest, _)) = sizes
        .iter()
        .enumerate()
        .skip(1)
        .max_by_key(|(i, size)| (**size, std::cmp::Reverse(*i)))
    else {
        return;
    };
    for (m, l) in mask.iter_mut().zip(&label) {
        *m = *l == largest as u32;
    }
}

/// Keep the largest 6-connected component of a label volume (non-zero inside); the rest becomes 0.
pub fn keep_largest_volume_component(labels: &mut ndarray::Array3<u8>) {
    let (x, y, z) = labels.dim();
    let mut inside: Vec<bool> = labels.iter().map(|v| *v > 0).collect();
    keep_largest_component_nd(&mut inside, &[x, y, z]);
    for (label, keep) in labels.iter_mut().zip(inside) {
        if !keep {
            *label = 0;
        }
    }
}

/// Fill holes: background pixels not 4-connected to the border become foreground.
pub fn fill_holes(mask: &mut [bool], width: usize, height: usize) {
    let mut outside = vec![false; mask.len()];
    let mut queue = VecDeque::new();
    for y in 0..height {
        for x in 0..width {
            let border = x == 0 || y == 0 || x + 1 == width || y + 1 == height;
            let i = y * width + x;
            if border && !mask[i] {
                outside[i] = true;
                queue.push_back(i);
            }
        }
    }
    while let Some(i) = queue.pop_front() {
        for j in neighbours(i, width, height) {
            if !mask[j] && !outside[j] {
                outside[j] = true;
                queue.push_back(j);
            }
        }
    }
    for (m, o) in mask.iter_mut().zip(&outside) {
        *m = !*o;
    }
}

fn neighbours(i: usize, width: usize, height: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (i % width, i / width);
    [
        (x > 0).then(|| i - 1),
        (x + 1 < width).then(|| i + 1),
        (y > 0).then(|| i - width),
        (y + 1 < height).then(|| i + width),
    ]
    .into_iter()
    .flatten()
}

/// The head: pixels brighter than half Otsu's level of the image's intensities, the largest component with its
/// holes filled (the dark ventricles and lesion cores belong to the head).
pub fn head_mask(gray: &[u8], width: usize, height: usize) -> Vec<bool> {
    let scaled: Vec<f32> = gray.iter().map(|v| f32::from(*v) / 255.0).collect();
    let level = 0.5 * otsu(&scaled);
    let mut mask: Vec<bool> = scaled.iter().map(|v| *v > level).collect();
    keep_largest_component(&mut mask, width, height);
    fill_holes(&mut mask, width, height);
    mask
}

/// How CAMs become pseudo-masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PseudoMaskConfig {
    pub threshold: Threshold,
    /// IRNet's background level: map values ≤ this are background, those between it and the foreground level
    /// are ignored in training (`None`: every non-foreground pixel is background).
    pub ignore_below: Option<f32>,
    /// Clear foreground outside the head.
    pub head_only: bool,
    /// Keep the largest foreground component and fill its holes.
    pub cleanup: bool,
    /// With [`Threshold::Appearance`]: the posterior's foreground level instead of 0.5 (a recipe's
    /// `class.<name>.posterior_level` sets it per explained class). Lower takes in pixels whose grey levels the
    /// lesion and the rest share; higher keeps only those the lesion's own histogram claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posterior_level: Option<f32>,
}

impl Default for PseudoMaskConfig {
    fn default() -> Self {
        PseudoMaskConfig {
            threshold: Threshold::DEFAULT,
            ignore_below: None,
            head_only: true,
            cleanup: true,
            posterior_level: None,
        }
    }
}

impl PseudoMaskConfig {
    /// The level at and above which a pixel is foreground: the threshold's ([`Threshold::level`]), or for
    /// [`Threshold::Appearance`] the posterior level when one is set.
    pub fn level(&self, map: &[f32]) -> f32 {
        match (self.threshold, self.posterior_level) {
            (Threshold::Appearance(_), Some(level)) => level,
            (threshold, _) => threshold.level(map),
        }
    }
}

/// The usual cleanup of a binary mask: its largest component with the holes filled (an empty mask stays empty).
pub fn keep_largest_filled(mask: &mut [bool], width: usize, height: usize) {
    if mask.iter().any(|m| *m) {
        keep_largest_component(mask, width, height);
        fill_holes(mask, width, height);
    }
}

/// What the image itself tells a pseudo-mask: its grey levels and its head (both at the map's size).
#[derive(Debug, Clone, Copy)]
pub struct ImageCues<'a> {
    pub gray: &'a [u8],
    pub head: &'a [bool],
}

/// The pseudo-mask of one map (`width`×`height`, values in [0, 1]): 0, 255 or [`IGNORE`] per pixel. `tumour`
/// is the class gate: `false` (the image was predicted no-tumour) gives an all-background mask. `cues` restrict
/// the foreground to the head when `config.head_only`, and give [`Threshold::Appearance`] its grey levels
/// (without them it thresholds the map scaled to its maximum at 0.5).
pub fn pseudo_mask(
    map: &[f32],
    width: usize,
    height: usize,
    tumour: bool,
    cues: Option<&ImageCues>,
    config: &PseudoMaskConfig,
) -> Vec<u8> {
    if !tumour {
        return vec![0; map.len()];
    }
    let head = cues.map(|c| c.head).filter(|_| config.head_only);
    // The score each pixel is thresholded on: for appearance the posterior (without grey levels, the prior: the
    // map scaled to its maximum), else the map itself.
    let score = match (config.threshold, cues) {
        (Threshold::Appearance(iterations), Some(c)) => {
            super::refine::appearance_posterior(map, c.gray, head, iterations)
        }
        (Threshold::Appearance(_), None) => super::refine::prior(map, None),
        _ => map.to_vec(),
    };
    let level = config.level(map);
    let inside = |i: usize| head.is_none_or(|h| h.get(i).copied().unwrap_or(true));
    let mut foreground: Vec<bool> = score
        .iter()
        .enumerate()
        .map(|(i, v)| *v >= level && inside(i))
        .collect();
    if config.cleanup {
        keep_largest_filled(&mut foreground, width, height);
    }
    score
        .iter()
        .zip(&foreground)
        .map(|(v, f)| match (f, config.ignore_below) {
            (true, _) => 255,
            (false, Some(low)) if *v > low && *v < level => IGNORE,
            _ => 0,
        })
        .collect()
}

/// Foreground flags as a stored mask (255 foreground, 0 background).
pub fn to_stored(mask: &[bool]) -> Vec<u8> {
    mask.iter().map(|m| if *m { 255 } else { 0 }).collect()
}

/// A stored mask as (foreground, ignore) flags.
pub fn split_labels(mask: &[u8]) -> (Vec<bool>, Vec<bool>) {
    mask.iter().map(|v| (*v > IGNORE, *v == IGNORE)).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_print_back() {
        for text in ["fraction:0.5", "otsu", "top:5", "appearance:10"] {
            let t: Threshold = text.parse().expect(text);
            assert_eq!(t.to_string(), text);
        }
        assert!("fraction:1.5".parse::<Threshold>().is_err());
        assert!("median".parse::<Threshold>().is_err());
        assert!("appearance:0".parse::<Threshold>().is_err());
        assert!("appearance:2.5".parse::<Threshold>().is_err());
    }

    #[test]
    fn levels_by_hand() {
        let map = [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 0.9, 0.05, 0.0, 0.3];
        assert_eq!(Threshold::Fraction(0.5).level(&map), 0.5);
        // Top 20 % of 10 pixels = the 2 largest: level 0.9.
        assert_eq!(Threshold::TopPercent(20.0).level(&map), 0.9);
        // Two clusters (0–0.1 and 0.9–1.0): Otsu's level separates them.
        let bimodal: Vec<f32> = (0..100)
            .map(|i| {
                if i < 60 {
                    0.05 + 0.001 * i as f32
                } else {
                    0.95 - 0.001 * i as f32
                }
            })
            .collect();
        let level = otsu(&bimodal);
        assert!(level > 0.11 && level < 0.88, "{level}");
        let foreground = bimodal.iter().filter(|v| **v >= level).count();
        assert_eq!(foreground, 40);
    }

    #[test]
    fn largest_component_and_hole_filling() {
        // 6×5: a ring (with a hole) on the left and a single pixel on the right.
        #[rustfmt::skip]
        let bits = [
            1, 1, 1, 0, 0, 0,
            1, 0, 1, 0, 0, 0,
            1, 1, 1, 0, 0, 1,
            0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0,
        ];
        let mut mask: Vec<bool> = bits.iter().map(|b| *b == 1).collect();
        keep_largest_component(&mut mask, 6, 5);
        assert!(!mask[2 * 6 + 5] && mask[0]);
        assert!(!mask[6 + 1]);
        fill_holes(&mut mask, 6, 5);
        assert!(mask[6 + 1]);
        assert_eq!(mask.iter().filter(|m| **m).count(), 9);
    }

    #[test]
    fn the_largest_component_in_3d_joins_through_faces_only() {
        // 3×3×3, z fastest: a column of 3 voxels along z at (0, 0), two voxels touching it only by an edge
        // ((1, 1, 0) and (1, 1, 1)), and a pair of voxels elsewhere ((2, 2, 1), (2, 2, 2)).
        let dims = [3, 3, 3];
        let at = |x: usize, y: usize, z: usize| (x * 3 + y) * 3 + z;
        let of = |voxels: &[usize]| {
            let mut mask = vec![false; 27];
            voxels.iter().for_each(|&i| mask[i] = true);
            mask
        };
        let column = [at(0, 0, 0), at(0, 0, 1), at(0, 0, 2)];
        let mut mask = of(&[
            column.as_slice(),
            &[at(1, 1, 0), at(1, 1, 1)],
            &[at(2, 2, 1), at(2, 2, 2)],
        ]
        .concat());
        keep_largest_component_nd(&mut mask, &dims);
        let kept: Vec<usize> = (0..27).filter(|i| mask[*i]).collect();
        assert_eq!(kept, vec![at(0, 0, 0), at(0, 0, 1), at(0, 0, 2)]);
        // Joined by a face, the edge-touching pair grows it to 5.
        let mut joined =
            of(&[column.as_slice(), &[at(0, 1, 1), at(1, 1, 1), at(2, 2, 2)]].concat());
        keep_largest_component_nd(&mut joined, &dims);
        assert_eq!(joined.iter().filter(|m| **m).count(), 5);
        assert!(!joined[at(2, 2, 2)]);
    }

    #[test]
    fn the_class_gate_empties_the_mask_and_the_ignore_band_lies_between_the_levels() {
        let map: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let config = PseudoMaskConfig {
            threshold: Threshold::Fraction(0.7),
            ignore_below: Some(0.2),
            head_only: false,
            cleanup: false,
            posterior_level: None,
        };
        assert!(pseudo_mask(&map, 4, 4, false, None, &config)
            .iter()
            .all(|v| *v == 0));
        let mask = pseudo_mask(&map, 4, 4, true, None, &config);
        for (v, m) in map.iter().zip(&mask) {
            let expected = if *v >= 0.7 {
                255
            } else if *v > 0.2 {
                IGNORE
            } else {
                0
            };
            assert_eq!(*m, expected, "map {v}");
        }
        let (foreground, ignore) = split_labels(&mask);
        assert_eq!(foreground.iter().filter(|f| **f).count(), 5);
        assert_eq!(ignore.iter().filter(|f| **f).count(), 7);
    }

    #[test]
    fn a_posterior_level_moves_the_appearance_masks_edge_and_no_other_thresholds() {
        let (map, gray, _) = crate::cam::refine::tests::scene();
        let head = vec![true; map.len()];
        let cues = ImageCues {
            gray: &gray,
            head: &head,
        };
        let posterior = crate::cam::refine::appearance_posterior(&map, &gray, Some(&head), 10);
        let mask_at = |threshold: Threshold, posterior_level: Option<f32>| {
            let config = PseudoMaskConfig {
                threshold,
                cleanup: false,
                posterior_level,
                ..PseudoMaskConfig::default()
            };
            pseudo_mask(&map, 40, 40, true, Some(&cues), &config)
        };
        let by_hand = |level: f32| -> Vec<u8> {
            posterior
                .iter()
                .map(|q| if *q >= level { 255 } else { 0 })
                .collect()
        };
        let appearance = Threshold::Appearance(10);
        assert_eq!(mask_at(appearance, None), by_hand(0.5));
        assert_eq!(mask_at(appearance, Some(0.5)), by_hand(0.5));
        for level in [0.05, 0.25, 0.9] {
            assert_eq!(mask_at(appearance, Some(level)), by_hand(level), "{level}");
        }
        // In this scene the level matters: 0.05 takes in pixels that 0.5 leaves out.
        assert_ne!(by_hand(0.05), by_hand(0.5));
        // Other thresholds ignore it.
        let fraction = Threshold::Fraction(0.5);
        assert_eq!(mask_at(fraction, Some(0.05)), mask_at(fraction, None));
    }

    #[test]
    fn the_head_mask_keeps_the_head_and_its_dark_inside() {
        // 20×20: dark background, a bright disc of radius 8 with a dark core of radius 3, noise speck far away.
        let (w, h) = (20usize, 20usize);
        let mut gray = vec![5u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - 10.0).powi(2) + (y as f32 - 10.0).powi(2)).sqrt();
                if d <= 8.0 {
                    gray[y * w + x] = if d <= 3.0 { 10 } else { 200 };
                }
            }
        }
        gray[0] = 220;
        let head = head_mask(&gray, w, h);
        assert!(head[10 * w + 10], "the dark core belongs to the head");
        assert!(!head[0], "a bright speck outside the head does not");
        assert!(head[10 * w + 17] && !head[10 * w + 19]);
        // Restricting a map that is hot everywhere keeps only the head.
        let config = PseudoMaskConfig {
            threshold: Threshold::Fraction(0.5),
            cleanup: false,
            ..PseudoMaskConfig::default()
        };
        let cues = ImageCues {
            gray: &gray,
            head: &head,
        };
        let mask = pseudo_mask(&vec![1.0; w * h], w, h, true, Some(&cues), &config);
        assert_eq!(
            mask.iter().filter(|v| **v == 255).count(),
            head.iter().filter(|v| **v).count()
        );
    }
}
