//! A pseudo-mask folder's manifest, `pseudo_masks.json`: the recipe the masks were made with, one entry per
//! image (its mask, its classes, its Dice against the true mask and its deletion record), and the masks scored
//! against the true masks per threshold method, split and class (`quality.md`).

use super::recipe::Recipe;
use crate::cam::pseudo::split_labels;
use crate::data::preprocess::SEGMENTATION_SIZE;
use crate::data::scan::Split;
use crate::data::Class;
use crate::metrics::segmentation::{MaskScore, SegmentationScores, SegmentationSums};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest's file name.
pub const MANIFEST: &str = "pseudo_masks.json";
/// Side of every pseudo-mask (the U-Net's input size).
pub const SIDE: u32 = SEGMENTATION_SIZE;

/// One image and its pseudo-mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoEntry {
    pub image: PathBuf,
    pub split: Split,
    pub class: Class,
    pub predicted: Class,
    pub confidence: f32,
    /// The class the CAM explains (the label or the prediction, by the gate).
    pub target: Class,
    /// The pseudo-mask, relative to the output folder (absolute in a folder made by `merge-masks`).
    pub mask: PathBuf,
    /// The dataset's true mask, when it has one.
    pub true_mask: Option<PathBuf>,
    /// Dice of the pseudo-mask against the true mask (`None` without a true mask, or when both are empty), so
    /// that any grouping of the images can be scored from the manifest alone (`tools/by_plane.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
    /// With the recipe's deletion check, for a tumour image: every candidate the classifier was asked about, so that
    /// the choice can be checked (and other rules tried) from the manifest alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<DeletionRecord>,
}

/// One tumour image's deletion check: the class probability before removal and, per candidate mask, what
/// removing it left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// p(target | image).
    pub probability: f32,
    /// Index of the kept candidate.
    pub kept: usize,
    pub candidates: Vec<DeletionCandidate>,
}

impl DeletionRecord {
    /// The candidate whose mask was kept (`None` only for a malformed record).
    pub fn kept_candidate(&self) -> Option<&DeletionCandidate> {
        self.candidates.get(self.kept)
    }
}

/// A candidate mask of the deletion check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionCandidate {
    /// The map it was cut from: `cam` (raised to its class's `cam_power`), `combined` or `combined^E`.
    pub map: String,
    /// Its pixels at 128×128.
    pub area: usize,
    /// p(target | image with the mask blacked out).
    pub probability_after: f32,
    /// Dice against the true mask, where the dataset has one (`None` also when both are empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
}

/// The manifest format this build writes (1: before recipes; those folders must be made again).
pub const FORMAT_VERSION: u32 = 2;

/// How many tumour images kept each candidate map's mask in the deletion check (`cam`, `combined`,
/// `combined^2`, …).
pub type ConfirmedCounts = BTreeMap<String, usize>;

/// Counted from the entries' deletion records.
pub fn confirmed_counts(entries: &[PseudoEntry]) -> ConfirmedCounts {
    let mut kept = ConfirmedCounts::new();
    for candidate in entries
        .iter()
        .filter_map(|e| e.deletion.as_ref()?.kept_candidate())
    {
        *kept.entry(candidate.map.clone()).or_default() += 1;
    }
    kept
}

/// `pseudo_masks.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoManifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub run: PathBuf,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub data: PathBuf,
    /// The resolved recipe the masks were made with.
    pub recipe: Recipe,
    /// With a deletion check: which candidate's mask the tumour images kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<ConfirmedCounts>,
    /// For a folder made by `merge-masks`: the pseudo-mask folders it was merged from (their masks stay there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PathBuf>,
    pub entries: Vec<PseudoEntry>,
    /// Per threshold method (`fraction:0.5`, `otsu`, …), per split, per true class and `all`: scores of the
    /// pseudo-masks against the true masks (no-tumour images count as empty references).
    pub quality: Quality,
    /// Images that could not be read, each with its reason.
    pub errors: Vec<String>,
}

/// Scores per threshold method, per split, per class (and `all`).
pub type Quality = BTreeMap<String, BTreeMap<String, BTreeMap<String, SegmentationScores>>>;

impl PseudoManifest {
    /// The score tables of the splits with true masks, and what the deletion check kept, as text.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for split in [Split::Training, Split::Testing] {
            if scored(self, split) {
                out.push_str(&quality_table(self, split));
                out.push('\n');
            }
        }
        if let Some(counts) = &self.confirmed {
            let kept: Vec<String> = counts.iter().map(|(map, n)| format!("{map} {n}")).collect();
            out.push_str(&format!(
                "Deletion check, masks kept per candidate map: {}\n",
                kept.join(", ")
            ));
        }
        out
    }
}

/// Write `pseudo_masks.json` and `quality.md` (the score tables of the splits with true masks) into `out`.
pub fn write_manifest(manifest: &PseudoManifest, out: &Path) -> anyhow::Result<()> {
    let path = out.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut tables = String::new();
    for split in [Split::Training, Split::Testing] {
        tables.push_str(&format!("## {}\n\n", split.folder_name()));
        if scored(manifest, split) {
            tables.push_str(&quality_table(manifest, split));
        } else {
            tables.push_str("No true masks for this split (or no images): nothing scored.\n");
        }
        tables.push('\n');
    }
    let path = out.join("quality.md");
    std::fs::write(&path, tables).with_context(|| format!("writing {}", path.display()))
}

/// Read a pseudo-mask folder's manifest.
pub fn read_manifest(dir: &Path) -> anyhow::Result<PseudoManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: not a pseudo-mask folder (no {MANIFEST})",
            dir.display()
        )
    })?;
    let manifest: PseudoManifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "reading {} (a folder made before recipes existed must be made again with `pseudo-masks`)",
            path.display()
        )
    })?;
    anyhow::ensure!(
        manifest.format_version == FORMAT_VERSION,
        "{}: manifest format {} (this build reads {FORMAT_VERSION}); make the masks again with `pseudo-masks`",
        path.display(),
        manifest.format_version
    );
    Ok(manifest)
}
/// count as background.
pub fn mask_score(mask: &[u8], truth: &[bool], side: usize) -> MaskScore {
    let (foreground, _) = split_labels(mask);
    MaskScore::between(&foreground, truth, side)
}

/// Scores per threshold method, per split, per class and `all`.
pub fn quality(sums: &BTreeMap<(String, Split, Class), SegmentationSums>) -> Quality {
    let mut out = Quality::new();
    let mut totals: BTreeMap<(String, Split), SegmentationSums> = BTreeMap::new();
    for ((threshold, split, class), s) in sums {
        out.entry(threshold.clone())
            .or_default()
            .entry(split.folder_name().to_string())
            .or_default()
            .insert(class.to_string(), s.scores());
        totals
            .entry((threshold.clone(), *split))
            .or_default()
            .merge(s);
    }
    for ((threshold, split), s) in totals {
        out.entry(threshold)
            .or_default()
            .entry(split.folder_name().to_string())
            .or_default()
            .insert("all".to_string(), s.scores());
    }
    out
}

/// Whether any image of `split` was scored against a true mask.
pub fn scored(manifest: &PseudoManifest, split: Split) -> bool {
    manifest
        .quality
        .values()
        .any(|by_split| by_split.contains_key(split.folder_name()))
}

/// One split's scores of every threshold method, as markdown.
pub fn quality_table(manifest: &PseudoManifest, split: Split) -> String {
    let num = crate::metrics::three_places;
    let mut out = format!(
        "Pseudo-masks ({}, {} gate, chosen: {}) against the true masks, {}: Dice and IoU are means over tumour \
         images; pooled Dice sums the pixels of all images; HD95 and ASD: mean 95th-percentile Hausdorff and \
         average surface distance in pixels of the 128×128 mask over tumour images given a mask; empty correct = \
         no-tumour images given an empty mask.\n\n\
         | threshold | class | images | Dice | IoU | pooled Dice | HD95 px | ASD px | pixel acc. | empty correct |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        manifest.recipe.cam.method.name(),
        manifest.recipe.gate.name(),
        manifest.recipe.mask.threshold,
        split.folder_name()
    );
    for (threshold, splits) in &manifest.quality {
        let Some(classes) = splits.get(split.folder_name()) else {
            continue;
        };
        for (class, s) in classes {
            out.push_str(&format!(
                "| {threshold} | {class} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.images,
                num(s.dice),
                num(s.iou),
                num(s.pooled_dice),
                crate::metrics::one_place(s.hd95),
                crate::metrics::one_place(s.asd),
                num(s.pixel_accuracy),
                num(s.empty_correct)
            ));
        }
    }
    out
}
