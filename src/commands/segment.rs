//! `tumornet segment SEGRUN IMAGE…|DIR --out DIR`: each image's tumour mask from a segmentation run — the U-Net's
//! mask at 128×128, emptied when the run's classifier calls the image no-tumour (unless `--no-gate`), resized to
//! the image's size (`masks/<name>.png`, 0/255) and outlined on the image (`overlays/<name>.png`); `segment.json`
//! with class, confidence and tumour area per image; a dataset folder's Testing/ split is scored against its
//! true masks.

use super::progress_bar;
use crate::cli::SegmentArgs;
use crate::data::inputs::InputError;
use crate::data::inputs::{gather, unique_name, Item};
use crate::data::medical::nifti::{
    find_truth, read_mask_on, volume_stem, SliceVolumes, VolumeGeometry,
};
use crate::data::preprocess::{resize_mask, resize_rgb};
use crate::data::Class;
use crate::metrics::segmentation::{MaskScore, SegmentationScores, SegmentationSums};
use crate::metrics::volume::{VolumeScore, VolumeSummary};
use crate::train::segmentation::MaskRule;
use crate::train::segrun::{load_segrun, segment_images};
use crate::viz::{self, masks};
use anyhow::Context;
use image::{GrayImage, RgbImage};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct Segmented {
    pub input: String,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub file: PathBuf,
    pub true_class: Option<Class>,
    pub predicted: Class,
    pub confidence: f32,
    /// Fraction of the image the mask covers.
    pub tumour_fraction: f64,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub mask: PathBuf,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub overlay: PathBuf,
    /// Dice against the true mask (tumour images with a mask only).
    pub dice: Option<f64>,
}

/// `segment.json`.
#[derive(Debug, Serialize)]
pub struct SegmentReport {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub segrun: PathBuf,
    pub gated: bool,
    /// The mask rule used (`threshold`, `flip_tta`, `never_empty`, `refine`, `confirm`).
    #[serde(flatten)]
    pub mask: MaskRule,
    pub images: Vec<Segmented>,
    /// Per true class and `all`, where true masks exist.
    pub scores: BTreeMap<String, SegmentationScores>,
    /// 95 % percentile-bootstrap interval of the mean Dice over the tumour images with a true mask (2,000 resamples
    /// of those images, seed 0), where there are any.
    pub dice_interval: Option<(f64, f64)>,
    /// NIfTI inputs: one mask volume each, aligned to the input.
    pub volumes: Vec<VolumeMask>,
    /// Whether each mask volume was cut down to its largest connected component (`--all-components` not given).
    pub volume_largest_component: bool,
    /// With `--truth`: the mask volumes scored against the true ones, per class (the inputs' folder names) and
    /// `all`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_scores: BTreeMap<String, VolumeSummary>,
    pub errors: Vec<String>,
}

/// The mask of a NIfTI input as a volume: the input's shape, voxel order, sform and qform, so a viewer overlays it
/// on the input as it is; 1 inside the tumour, 0 elsewhere (slices not segmented, or called tumour-free, stay 0).
#[derive(Debug, Serialize)]
pub struct VolumeMask {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub input: PathBuf,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub mask: PathBuf,
    pub slices: usize,
    pub tumour_voxels: usize,
    /// Tumour volume from the voxel sizes in the header (millimetres assumed).
    pub tumour_ml: f64,
    /// With `--truth`: the class named by the input's folder, the true mask and the scores against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    #[serde(
        serialize_with = "crate::paths::lossy_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub truth: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<VolumeScore>,
}

pub fn run(args: &SegmentArgs) -> anyhow::Result<()> {
    let report = segment(args)?;
    for image in &report.images {
        println!(
            "{}\t{}\t{:.3}\ttumour {:.2} %",
            image.input,
            image.predicted,
            image.confidence,
            image.tumour_fraction * 100.0
        );
    }
    if let Some(all) = report.scores.get("all") {
        println!(
            "Against the true masks: Dice {} (mean over {} tumour images{}), HD95 {} px, ASD {} px, empty correct {}",
            crate::metrics::three_places(all.dice),
            all.tumour_images,
            report
                .dice_interval
                .map_or(String::new(), |(lo, hi)| format!(
                    "; 95 % interval {lo:.3}–{hi:.3}"
                )),
            crate::metrics::one_place(all.hd95),
            crate::metrics::one_place(all.asd),
            crate::metrics::three_places(all.empty_correct)
        );
    }
    println!(
        "Wrote {} masks and overlays to {}",
        report.images.len(),
        args.out.display()
    );
    for volume in &report.volumes {
        println!(
            "{}: mask volume {} ({} slices segmented, tumour {} voxels, {:.2} ml)",
            volume.input.display(),
            volume.mask.display(),
            volume.slices,
            volume.tumour_voxels,
            volume.tumour_ml
        );
    }
    for (class, summary) in &report.volume_scores {
        let show = |e: &Option<crate::metrics::volume::Estimate>, places: usize| {
            e.map_or_else(|| "–".to_string(), |e| e.display(places))
        };
        println!(
            "Volumes, {class} ({}): Dice {}, HD95 {} mm, |volume error| {} ml = {} %, missed {}, empty correct {}/{} (false tumour {} ml)",
            summary.volumes,
            show(&summary.dice, 3),
            show(&summary.hd95_mm, 1),
            show(&summary.abs_error_ml, 1),
            show(&summary.abs_error_percent, 0),
            summary.missed,
            summary.empty_correct,
            summary.empty_volumes,
            show(&summary.false_ml, 1)
        );
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    if !report.errors.is_empty() {
        anyhow::bail!(InputError::Unreadable {
            failed: report.errors.len(),
            total: report.errors.len() + report.images.len()
        });
    }
    Ok(())
}

pub fn segment(args: &SegmentArgs) -> anyhow::Result<SegmentReport> {
    let model = load_segrun(&args.segrun, !args.unet_only)
        .with_context(|| format!("loading {}", args.segrun.display()))?;
    let run_rule = model.config.mask_rule();
    let rule = MaskRule {
        threshold: args.threshold.unwrap_or(run_rule.threshold),
        flip: args.flip_tta || run_rule.flip,
        never_empty: args.never_empty || run_rule.never_empty,
        refine: args.refine.unwrap_or(run_rule.refine),
        confirm: run_rule.confirm && !args.unet_only,
    };
    anyhow::ensure!(
        rule.threshold > 0.0 && rule.threshold < 1.0,
        "--threshold must lie in (0, 1)"
    );
    let shard = args
        .shard
        .resolve()
        .map_err(|e| anyhow::anyhow!("--shard {e}"))?;
    let (items, mut errors) = gather(&args.inputs, &args.volume.options())?;
    let items = shard.select(&items);
    let masks_dir = args.out.join("masks");
    let overlays_dir = args.out.join("overlays");
    for dir in [&masks_dir, &overlays_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let side = model.config.side;
    let mut names = HashSet::new();
    let mut images = Vec::new();
    let mut sums: BTreeMap<String, SegmentationSums> = BTreeMap::new();
    let mut gallery: Vec<(Class, [RgbImage; 3])> = Vec::new();
    let mut volumes: SliceVolumes<u8> = SliceVolumes::new();
    let bar = progress_bar(items.len() as u64, "segment");
    for chunk in items.chunks(args.batch_size.max(1)) {
        let ready = super::load_batch(chunk, |item| load(item, side), &mut errors, &bar);
        if ready.is_empty() {
            continue;
        }
        let originals: Vec<RgbImage> = ready.iter().map(|(_, (image, _))| image.clone()).collect();
        let in_volume: Vec<bool> = ready
            .iter()
            .map(|(i, _)| i.input.position.is_some())
            .collect();
        let results = segment_images(&model, &originals, &in_volume, !args.no_gate, &rule)?;
        for ((item, (original, truth)), (probabilities, mask)) in ready.iter().zip(results) {
            let (best, confidence) = crate::metrics::argmax(&probabilities);
            let predicted = model.classifier_config.classes[best];
            let name = unique_name(&item.input, &mut names);
            let small = GrayImage::from_raw(side, side, crate::cam::pseudo::to_stored(&mask))
                .context("mask size")?;
            let (w, h) = original.dimensions();
            let full = resize_mask(&small, w, h)?;
            if let (Some((plane, index)), Some(geometry)) =
                (item.input.position, &item.input.geometry)
            {
                let size = (full.width() as usize, full.height() as usize);
                let inside = |row: usize, column: usize| {
                    (full.get_pixel(column as u32, row as u32).0[0] > 0).then_some(1)
                };
                if let Err(e) = volumes.add(&item.input.path, geometry, plane, index, size, inside)
                {
                    errors.push(format!("{}: {e}", item.input.name));
                }
            }
            let mask_path = masks_dir.join(format!("{name}.png"));
            full.save(&mask_path)
                .with_context(|| format!("writing {}", mask_path.display()))?;
            let overlay = masks::contour_overlay(original, &mask, side, side, [255, 40, 40]);
            let overlay_path = overlays_dir.join(format!("{name}.png"));
            viz::save_png(&overlay, &overlay_path)?;
            let dice = truth.as_ref().and_then(|t| {
                let score = MaskScore::between(&mask, t, side as usize);
                let class = item
                    .true_class
                    .map_or_else(|| "unknown".into(), |c| c.to_string());
                sums.entry(class).or_default().add_image(&score, None);
                score.counts.lesion_dice()
            });
            if let Some(class) = item.true_class.filter(|c| c.is_tumour()) {
                if gallery.len() < 12 && gallery.iter().filter(|(c, _)| *c == class).count() < 4 {
                    let thumb = resize_rgb(&overlay, side, side)?;
                    let truth_tile = truth.as_ref().map_or_else(
                        || RgbImage::new(side, side),
                        |t| masks::mask_tile(&crate::cam::pseudo::to_stored(t), side, side),
                    );
                    let predicted_tile = masks::mask_tile(&small.clone().into_raw(), side, side);
                    gallery.push((class, [thumb, truth_tile, predicted_tile]));
                }
            }
            images.push(Segmented {
                input: item.input.name.clone(),
                file: item.input.path.clone(),
                true_class: item.true_class,
                predicted,
                confidence,
                tumour_fraction: mask.iter().filter(|b| **b).count() as f64 / mask.len() as f64,
                mask: mask_path,
                overlay: overlay_path,
                dice,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if images.is_empty() {
        anyhow::bail!(InputError::Unreadable {
            failed: errors.len(),
            total: errors.len()
        });
    }
    let mut scores: BTreeMap<String, SegmentationScores> =
        sums.iter().map(|(c, s)| (c.clone(), s.scores())).collect();
    if !sums.is_empty() {
        let mut all = SegmentationSums::default();
        for s in sums.values() {
            all.merge(s);
        }
        scores.insert("all".into(), all.scores());
    }
    if !gallery.is_empty() {
        crate::viz::grid::save_case_gallery(
            &args.out.join("gallery.png"),
            "segment: outline | true mask | predicted mask",
            &gallery,
            &["outline", "true mask", "predicted"],
        )?;
    }
    let volumes = write_volumes(
        volumes,
        &args.out.join("volumes"),
        VolumeRule {
            truth: args.truth.as_deref(),
            largest_component: !args.all_components,
        },
        &mut errors,
    )?;
    let volume_scores = summarise_volumes(&volumes);
    let dice: Vec<f64> = images.iter().filter_map(|i| i.dice).collect();
    let report = SegmentReport {
        volume_largest_component: !args.all_components,
        volumes,
        volume_scores,
        segrun: args.segrun.clone(),
        gated: !args.no_gate,
        mask: rule,
        dice_interval: crate::metrics::intervals::mean_dice_interval(&dice),
        images,
        scores,
        errors,
    };
    let path = args.out.join("segment.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// Write each volume as `<dir>/<input stem>.mask.nii.gz`; with `truth`, score it against its true mask (a
/// missing or unreadable one is an error naming the input, the volume is still written).
fn write_volumes(
    volumes: SliceVolumes<u8>,
    dir: &Path,
    rule: VolumeRule,
    errors: &mut Vec<String>,
) -> anyhow::Result<Vec<VolumeMask>> {
    let truth = rule.truth;
    if volumes.is_empty() {
        if truth.is_some() {
            errors.push("--truth was given but no input is a NIfTI volume".into());
        }
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = HashSet::new();
    let mut written = Vec::new();
    for (input, geometry, mut labels, slices) in volumes.into_volumes() {
        if rule.largest_component {
            crate::cam::pseudo::keep_largest_volume_component(&mut labels);
        }
        let stem = volume_stem(&input);
        let mut name = stem.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{stem}_{n}");
            n += 1;
        }
        let mask = dir.join(format!("{name}.mask.nii.gz"));
        geometry.write_labels(&mask, &labels)?;
        let tumour_voxels = labels.iter().filter(|v| **v > 0).count();
        let scored = truth.map(|truth| score_volume(&input, truth, &geometry, &labels));
        let (truth, score) = match scored {
            Some(Ok((path, score))) => (Some(path), Some(score)),
            Some(Err(e)) => {
                errors.push(format!("{}: {e}", input.display()));
                (None, None)
            }
            None => (None, None),
        };
        written.push(VolumeMask {
            tumour_ml: tumour_voxels as f64 * geometry.voxel_ml(),
            class: input
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| Class::from_folder_name(&n.to_string_lossy())),
            input,
            mask,
            slices,
            tumour_voxels,
            truth,
            score,
        });
    }
    Ok(written)
}

/// How mask volumes are finished and scored.
#[derive(Debug, Clone, Copy)]
struct VolumeRule<'a> {
    truth: Option<&'a Path>,
    largest_component: bool,
}

/// The mask volume `labels` of `input` against its true mask found through `truth`.
fn score_volume(
    input: &Path,
    truth: &Path,
    geometry: &VolumeGeometry,
    labels: &ndarray::Array3<u8>,
) -> Result<(PathBuf, VolumeScore), String> {
    let path = find_truth(truth, input)?;
    // Both in RAS+ voxel order: a truth stored in another voxel order than the input (a NIfTI truth for a DICOM
    // series) is compared voxel for voxel on the shared grid.
    let reference = read_mask_on(&path, geometry).map_err(|e| e.to_string())?;
    let (predicted, spacing) = geometry.to_canonical(&labels.mapv(|v| v > 0));
    let dims = [predicted.dim().0, predicted.dim().1, predicted.dim().2];
    let flat = |a: &ndarray::Array3<bool>| a.iter().copied().collect::<Vec<bool>>();
    let score = VolumeScore::between(&flat(&predicted), &flat(&reference), &dims, &spacing);
    Ok((path, score))
}

/// Per class and `all`, over the volumes scored against a truth.
fn summarise_volumes(volumes: &[VolumeMask]) -> BTreeMap<String, VolumeSummary> {
    let mut groups: BTreeMap<String, Vec<&VolumeScore>> = BTreeMap::new();
    for volume in volumes {
        if let Some(score) = &volume.score {
            let class = volume
                .class
                .map_or_else(|| "unknown".to_string(), |c| c.to_string());
            groups.entry(class).or_default().push(score);
            groups.entry("all".into()).or_default().push(score);
        }
    }
    groups
        .into_iter()
        .map(|(class, scores)| (class, VolumeSummary::of(&scores)))
        .collect()
}

/// An input as decoded, with its true mask at the U-Net's size.
type Loaded = (RgbImage, Option<Vec<bool>>);

fn load(item: &Item, side: u32) -> Result<Loaded, String> {
    let image = item.input.load()?;
    let truth = match &item.mask {
        Some(path) => Some(crate::data::decode::read_binary_mask(path, side)?),
        None => None,
    };
    Ok((image, truth))
}
