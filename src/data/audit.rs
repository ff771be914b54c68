//! Train/test leakage audit: exact duplicates (same file content) and near-duplicates (perceptual hash within a
//! stated Hamming distance) between different splits.

use super::scan::Split;
use image::RgbImage;
use image_hasher::{HashAlg, HasherConfig};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bits in the perceptual hash (a 16×16 DCT pHash).
pub const HASH_BITS: u32 = 256;

/// Near-duplicate threshold: pHash distance at most this many of 256 bits. Measured on 280 phantom images
/// (2026-11-27): copies resized to ¾, brightened by 12 grey levels and re-encoded at JPEG quality 70 measured
/// 6 bits (median) and 19 (max); distinct images measured 40 (min), 92 (1st percentile), 122 (median). An 8×8
/// pHash (64 bits) could not separate the two (distinct pairs down to 3 bits, copies up to 9).
pub const DEFAULT_NEAR_THRESHOLD: u32 = 28;

/// What the audit keeps of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// BLAKE3 of the file's bytes.
    pub content: [u8; 32],
    /// 256-bit perceptual hash: DCT of the 32×32 grayscale image, low 16×16 coefficients above their mean.
    pub perceptual: [u64; 4],
}

/// Fingerprint an image from its file bytes and decoded pixels.
pub fn fingerprint(file_bytes: &[u8], image: &RgbImage) -> Fingerprint {
    Fingerprint {
        content: *blake3::hash(file_bytes).as_bytes(),
        perceptual: perceptual_hash(image),
    }
}

/// The 256-bit pHash of an image.
pub fn perceptual_hash(image: &RgbImage) -> [u64; 4] {
    let gray = image::DynamicImage::ImageRgb8(image.clone()).into_luma8();
    let hasher = HasherConfig::new()
        .hash_size(16, 16)
        .hash_alg(HashAlg::Mean)
        .preproc_dct()
        .to_hasher();
    let hash = hasher.hash_image(&gray);
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(hash.as_bytes().chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    words
}

/// Hamming distance between two perceptual hashes.
pub fn hash_distance(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// A pair of images in different splits that look the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicatePair {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub first: PathBuf,
    pub first_split: Split,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub second: PathBuf,
    pub second_split: Split,
    /// pHash Hamming distance (0–256).
    pub distance: u32,
    /// The two files are byte-identical.
    pub exact: bool,
}

/// All cross-split pairs that are byte-identical or within `threshold` bits of pHash distance, sorted by
/// distance then path.
pub fn cross_split_duplicates(
    items: &[(Split, &Path, Fingerprint)],
    threshold: u32,
) -> Vec<DuplicatePair> {
    let mut pairs = Vec::new();
    for (i, (split_a, path_a, fa)) in items.iter().enumerate() {
        for (split_b, path_b, fb) in &items[i + 1..] {
            if split_a == split_b {
                continue;
            }
            let exact = fa.content == fb.content;
            let distance = hash_distance(&fa.perceptual, &fb.perceptual);
            if exact || distance <= threshold {
                pairs.push(DuplicatePair {
                    first: path_a.to_path_buf(),
                    first_split: *split_a,
                    second: path_b.to_path_buf(),
                    second_split: *split_b,
                    distance,
                    exact,
                });
            }
        }
    }
    pairs.sort_by(|a, b| (a.distance, &a.first, &a.second).cmp(&(b.distance, &b.first, &b.second)));
    pairs
}

/// Number of files in the same split that are byte-identical to an earlier file of that split.
pub fn within_split_exact_duplicates(items: &[(Split, &Path, Fingerprint)]) -> usize {
    let mut seen: HashMap<(Split, [u8; 32]), usize> = HashMap::new();
    for (split, _, f) in items {
        *seen.entry((*split, f.content)).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(seed: u32) -> RgbImage {
        RgbImage::from_fn(96, 96, |x, y| {
            let v = ((x * (3 + seed) + y * (7 + 2 * seed)) % 97) as u8;
            let blob = if (x as i32 - 40 - seed as i32).pow(2) + (y as i32 - 50).pow(2) < 300 {
                120
            } else {
                0
            };
            image::Rgb([v.saturating_add(blob); 3])
        })
    }

    #[test]
    fn exact_and_near_duplicates_are_found_only_across_splits() {
        let a = pattern(0);
        let b = pattern(5);
        let fa = fingerprint(b"file-a", &a);
        let fa_copy = fingerprint(b"file-a", &a);
        let fb = fingerprint(b"file-b", &b);
        let items = vec![
            (Split::Training, Path::new("tr/a.jpg"), fa),
            (Split::Training, Path::new("tr/b.jpg"), fb),
            (Split::Testing, Path::new("te/a.jpg"), fa_copy),
        ];
        let pairs = cross_split_duplicates(&items, 0);
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert!(pairs[0].exact);
        assert_eq!(pairs[0].first, Path::new("tr/a.jpg"));
        assert_eq!(within_split_exact_duplicates(&items), 0);
    }
}
