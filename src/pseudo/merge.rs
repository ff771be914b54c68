//! Merging pseudo-mask folders made in parts (shards of one job array, or chunks made on different machines)
//! into one folder that the U-Net's training reads. The parts must come from the same recipe (compared as
//! values); every image appears once; the masks stay in the parts' folders (the merged manifest names them by
//! absolute path) and the recipe's masks are scored again over all of them (`quality.md`).

use super::manifest::{
    confirmed_counts, mask_score, quality, read_manifest, write_manifest, PseudoEntry,
    PseudoManifest, MANIFEST, SIDE,
};
use crate::data::decode::{read_binary_mask, read_mask};
use crate::data::scan::Split;
use crate::data::Class;
use crate::metrics::segmentation::{MaskScore, SegmentationSums};
use anyhow::Context;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Merge the manifests of `parts` into `out` and return the merged manifest.
pub fn merge(parts: &[PathBuf], out: &Path) -> anyhow::Result<PseudoManifest> {
    anyhow::ensure!(!parts.is_empty(), "no pseudo-mask folders to merge");
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let absolute = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    let same_folder = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => absolute(a) == absolute(b),
    };
    let mut manifests = Vec::with_capacity(parts.len());
    for part in parts {
        anyhow::ensure!(
            !same_folder(part, out),
            "{}: the output folder is one of the parts; merge into a new folder (the part's own {MANIFEST} \
             would be replaced)",
            part.display()
        );
        manifests.push(read_manifest(part)?);
    }
    let first = &manifests[0];
    for (part, manifest) in parts.iter().zip(&manifests).skip(1) {
        if manifest.recipe != first.recipe {
            anyhow::bail!(
                "{}: made with another recipe than {} ({}); only masks made with the same recipe can be merged",
                part.display(),
                parts[0].display(),
                manifest.recipe.differences(&first.recipe).join("; ")
            );
        }
        // The run path is recorded as typed (relative to where `pseudo-masks` ran): a difference is only said.
        if manifest.run != first.run {
            tracing::warn!(
                "{} names its run {}, {} names {}: the same classifier?",
                part.display(),
                manifest.run.display(),
                parts[0].display(),
                first.run.display()
            );
        }
    }

    let mut entries: Vec<PseudoEntry> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let mut missing: Vec<PathBuf> = Vec::new();
    for (part, manifest) in parts.iter().zip(&manifests) {
        let folder = absolute(part);
        for entry in &manifest.entries {
            let image = absolute(&entry.image);
            // The same file under two names (a link, `..`) is the same image.
            let key = image.canonicalize().unwrap_or_else(|_| image.clone());
            if let Some(other) = seen.insert(key, part) {
                anyhow::bail!(
                    "{}: in both {} and {}; each image may come from one part only",
                    entry.image.display(),
                    other.display(),
                    part.display()
                );
            }
            let merged = PseudoEntry {
                image,
                mask: folder.join(&entry.mask),
                true_mask: entry.true_mask.as_deref().map(absolute),
                ..entry.clone()
            };
            for path in std::iter::once(&merged.image)
                .chain(std::iter::once(&merged.mask))
                .chain(merged.true_mask.as_ref())
            {
                if !path.is_file() {
                    missing.push(path.clone());
                }
            }
            entries.push(merged);
        }
        errors.extend(
            manifest
                .errors
                .iter()
                .map(|e| format!("{}: {e}", part.display())),
        );
    }
    if let Some(path) = missing.first() {
        anyhow::bail!(
            "{} file(s) named in the parts' manifests are not there (first: {}); `pseudo-masks` records image \
             paths as given, so run merge-masks from the folder it ran in",
            missing.len(),
            path.display()
        );
    }
    let quality = quality(&score(&entries, first.recipe.mask.threshold.to_string())?);
    let same_data = manifests.iter().all(|m| m.data == first.data);
    // The first part's settings carry over; what it holds of its own images is replaced.
    let mut merged = manifests.swap_remove(0);
    if !same_data {
        merged.data = PathBuf::from("(merged)");
    }
    if merged.confirmed.is_some() {
        merged.confirmed = Some(confirmed_counts(&entries));
    }
    merged.parts = parts.iter().map(|p| absolute(p)).collect();
    merged.entries = entries;
    merged.quality = quality;
    merged.errors = errors;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_manifest(&merged, out)?;
    Ok(merged)
}

/// Every entry with a true mask scored as `pseudo-masks` scores its chosen threshold: the mask's foreground
/// (ignored pixels count as background) against the true mask, both at 128×128.
fn score(
    entries: &[PseudoEntry],
    threshold: String,
) -> anyhow::Result<BTreeMap<(String, Split, Class), SegmentationSums>> {
    let scores: Vec<Option<(Split, Class, MaskScore)>> = entries
        .par_iter()
        .map(|entry| -> Result<_, String> {
            let Some(truth) = &entry.true_mask else {
                return Ok(None);
            };
            let score = mask_score(
                &read_mask(&entry.mask, SIDE)?,
                &read_binary_mask(truth, SIDE)?,
                SIDE as usize,
            );
            Ok(Some((entry.split, entry.class, score)))
        })
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut sums: BTreeMap<(String, Split, Class), SegmentationSums> = BTreeMap::new();
    for (split, class, score) in scores.into_iter().flatten() {
        sums.entry((threshold.clone(), split, class))
            .or_default()
            .add_image(&score, None);
    }
    Ok(sums)
}
