//! `tumornet pseudo-masks RUN DATA --out DIR`: for every image of a dataset folder, a class activation map of the
//! run's classifier thresholded into a 128×128 pseudo-mask (`masks/<split>/<class>/<name>.png`: 0 background,
//! 255 tumour, 128 ignore), `pseudo_masks.json` (the settings and one entry per image), `quality.md` (every
//! threshold method scored against the true masks, where the dataset has them) and `gallery.png`
//! (image | true mask | CAM | pseudo-mask).

use super::progress_bar;
use crate::cam::occlusion::{combine, confirmed_by_deletion, occlusion_map, sharpened, Occlusion};
use crate::cam::postprocess::resize_bilinear;
use crate::cam::pseudo::{
    head_mask, pseudo_mask, split_labels, ImageCues, PseudoMaskConfig, Threshold,
};
use crate::cam::{compute_smoothed, CamLayer, CamMethod};
use crate::cli::{Gate, PseudoMaskArgs};
use crate::data::batcher::images_to_tensor;
use crate::data::decode::{decode_file, read_binary_mask};
use crate::data::preprocess::{resize_rgb, SEGMENTATION_SIZE};
use crate::data::scan::{Sample, Split};
use crate::data::Class;
use crate::metrics::segmentation::{MaskCounts, SegmentationScores, SegmentationSums};
use crate::model::{run, ResNet18};
use crate::viz::{self, colormap, grid, masks};
use anyhow::Context;
use burn::module::Module;
use image::{GrayImage, RgbImage};
use rayon::prelude::*;
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
    /// With `--confirm-by-deletion`, for a tumour image: every candidate the classifier was asked about, so that
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
    /// The map it was cut from: `cam` (raised to its `--cam-power`, if any), `combined` or `combined^E`.
    pub map: String,
    /// Its pixels at 128×128.
    pub area: usize,
    /// p(target | image with the mask blacked out).
    pub probability_after: f32,
    /// Dice against the true mask, where the dataset has one (`None` also when both are empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
}

/// Which map's mask `--confirm-by-deletion` kept, counted over the tumour images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmedCounts {
    pub cam: usize,
    pub combined: usize,
    /// Per `--sharpen` exponent, in its order: the combined map raised to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharpened: Vec<usize>,
}

impl ConfirmedCounts {
    /// Counted from the entries' deletion records (kept index 0 the CAM, 1 the combined map, 2… the maps of the
    /// `exponents` sharpening exponents).
    pub(crate) fn of(entries: &[PseudoEntry], exponents: usize) -> ConfirmedCounts {
        let mut kept = vec![0usize; 2 + exponents];
        for record in entries.iter().filter_map(|e| e.deletion.as_ref()) {
            if let Some(n) = kept.get_mut(record.kept) {
                *n += 1;
            }
        }
        ConfirmedCounts {
            cam: kept[0],
            combined: kept[1],
            sharpened: kept[2..].to_vec(),
        }
    }
}

/// `pseudo_masks.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoManifest {
    pub run: PathBuf,
    pub data: PathBuf,
    pub method: CamMethod,
    pub config: PseudoMaskConfig,
    pub gate: Gate,
    pub flip_smooth: bool,
    #[serde(default)]
    pub layer: CamLayer,
    pub scales: Vec<f32>,
    /// The occlusion combined with each tumour image's CAM (`--occlusion`), if any.
    #[serde(default)]
    pub occlusion: Option<Occlusion>,
    /// `--occlusion-classes`: the explained classes that are occluded (empty: every tumour class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub occlusion_classes: Vec<Class>,
    /// With `--confirm-by-deletion`: how many tumour images kept the CAM's mask and how many the combined one.
    #[serde(default)]
    pub confirm_by_deletion: Option<ConfirmedCounts>,
    /// `--sharpen`: exponents of the combined map's extra candidates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharpen: Vec<f32>,
    /// `--sharpen-classes`: the explained classes that get the sharpened candidates (empty: every tumour class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharpen_classes: Vec<Class>,
    /// `--cam-power`: per explained class, the power its CAM was raised to before anything else (classes not
    /// listed: 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cam_power: BTreeMap<Class, f32>,
    /// `--posterior-level`: per explained class, the appearance posterior's foreground level (classes not
    /// listed: 0.5).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub posterior_level: BTreeMap<Class, f32>,
    /// For a folder made by `merge-masks`: the pseudo-mask folders it was merged from (their masks stay there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PathBuf>,
    pub entries: Vec<PseudoEntry>,
    /// Per threshold method (`fraction:0.5`, `otsu`, …), per split, per true class and `all`: scores of the
    /// pseudo-masks against the true masks (no-tumour images count as empty references).
    pub quality: BTreeMap<String, BTreeMap<String, BTreeMap<String, SegmentationScores>>>,
    /// Images that could not be read, each with its reason.
    pub errors: Vec<String>,
}

impl PseudoManifest {
    /// The settings the masks were made with (no paths, entries or scores), as `seg.json` records them; kept
    /// beside the struct so that a new option is recorded where it is declared.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "config": self.config,
            "gate": self.gate,
            "flip_smooth": self.flip_smooth,
            "layer": self.layer,
            "scales": self.scales,
            "occlusion": self.occlusion,
            "occlusion_classes": self.occlusion_classes,
            "confirm_by_deletion": self.confirm_by_deletion.is_some(),
            "sharpen": self.sharpen,
            "sharpen_classes": self.sharpen_classes,
            "cam_power": self.cam_power,
            "posterior_level": self.posterior_level,
        })
    }
}

pub fn run(args: &PseudoMaskArgs) -> anyhow::Result<()> {
    let manifest = pseudo_masks(args)?;
    print_summary(&manifest);
    println!(
        "Wrote {} pseudo-masks, {MANIFEST}, quality.md and gallery.png to {}",
        manifest.entries.len(),
        args.out.display()
    );
    for error in &manifest.errors {
        eprintln!("error: {error}");
    }
    Ok(())
}

/// Print a manifest's score tables (splits with true masks) and its settings beyond the threshold.
pub fn print_summary(manifest: &PseudoManifest) {
    // The score tables of the splits that have true masks (none without a `masks/` tree).
    for split in [Split::Training, Split::Testing] {
        if scored(manifest, split) {
            println!("{}", quality_table(manifest, split));
        }
    }
    let names = |classes: &[Class]| -> String {
        let names: Vec<String> = classes.iter().map(Class::to_string).collect();
        names.join(", ")
    };
    // A per-class option's values, each after its class and `sign` ("glioma ^0.6, meningioma ^1.25").
    let listing = |values: &BTreeMap<Class, f32>, sign: &str| -> String {
        let items: Vec<String> = values
            .iter()
            .map(|(c, v)| format!("{c} {sign}{v}"))
            .collect();
        items.join(", ")
    };
    if !manifest.cam_power.is_empty() {
        println!(
            "CAMs raised to a power: {}",
            listing(&manifest.cam_power, "^")
        );
    }
    if !manifest.posterior_level.is_empty() {
        println!(
            "Appearance posterior levels: {} (other classes ≥ 0.5)",
            listing(&manifest.posterior_level, "≥ ")
        );
    }
    if let Some(occlusion) = &manifest.occlusion {
        println!(
            "Occlusion ({}-pixel windows, stride {}) combined with the CAM of {}",
            occlusion.patch,
            occlusion.stride,
            if manifest.occlusion_classes.is_empty() {
                "every tumour image".to_string()
            } else {
                format!("{} images only", names(&manifest.occlusion_classes))
            }
        );
    }
    if let Some(counts) = &manifest.confirm_by_deletion {
        print!(
            "Confirmed by deletion: the CAM's mask for {} tumour images, the combined map's for {}",
            counts.cam, counts.combined
        );
        for (e, n) in manifest.sharpen.iter().zip(&counts.sharpened) {
            print!(", the combined map^{e}'s for {n}");
        }
        if !manifest.sharpen_classes.is_empty() {
            print!(
                " (sharpened maps offered for {} only)",
                names(&manifest.sharpen_classes)
            );
        }
        println!();
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
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// A class activation map per image at 128×128 in [0, 1], with the model's probabilities and the explained class.
pub struct Cams {
    pub maps: Vec<Vec<f32>>,
    pub probabilities: Vec<Vec<f32>>,
    pub targets: Vec<usize>,
}

/// How the maps of [`multi_scale_cams`] are made.
#[derive(Debug, Clone)]
pub struct CamSettings {
    pub method: CamMethod,
    pub layer: CamLayer,
    /// Input scales (multiples of the classifier's input size) whose maps are averaged.
    pub scales: Vec<f32>,
    /// Average each map with the mirrored map of the mirrored image.
    pub flip_smooth: bool,
}

/// CAMs of `images` (as decoded) with `model` (on the training device): at each scale the image resized to
/// `scale × input_size`, maps finished to 128×128 and averaged over the scales (each already scaled to [0, 1],
/// as IRNet does), for `targets` (the prediction at scale 1 where `None`).
pub fn multi_scale_cams(
    model: &ResNet18,
    images: &[RgbImage],
    input_size: u32,
    settings: &CamSettings,
    targets: &[Option<usize>],
) -> anyhow::Result<Cams> {
    let CamSettings {
        method,
        layer,
        ref scales,
        flip_smooth,
    } = *settings;
    let device = crate::device::training();
    let side = SIDE as usize;
    let resized = |scale: f32| -> anyhow::Result<Vec<RgbImage>> {
        let s = ((input_size as f32 * scale).round() as u32).max(32);
        images
            .par_iter()
            .map(|i| resize_rgb(i, s, s).map_err(anyhow::Error::from))
            .collect()
    };
    let first = compute_smoothed(
        model,
        images_to_tensor(&resized(1.0)?, &device)?,
        method,
        targets,
        flip_smooth,
        layer,
    )?;
    let mut maps = first.finished_all(side, side);
    let chosen: Vec<Option<usize>> = first.targets.iter().map(|t| Some(*t)).collect();
    let mut counted = 1.0f32;
    for &scale in scales.iter().filter(|s| (**s - 1.0).abs() > 1e-6) {
        let batch = compute_smoothed(
            model,
            images_to_tensor(&resized(scale)?, &device)?,
            method,
            &chosen,
            flip_smooth,
            layer,
        )?;
        for (sum, map) in maps.iter_mut().zip(batch.finished_all(side, side)) {
            for (s, v) in sum.iter_mut().zip(map) {
                *s += v;
            }
        }
        counted += 1.0;
    }
    for map in &mut maps {
        for v in map.iter_mut() {
            *v /= counted;
        }
    }
    Ok(Cams {
        maps,
        probabilities: first.probabilities,
        targets: first.targets,
    })
}

/// What `--confirm-by-deletion` needs beside the maps: the image's cues, the mask settings, the `--sharpen`
/// exponents and the true mask (to score each candidate in the record), if any.
struct Confirm<'a> {
    cues: &'a ImageCues<'a>,
    config: &'a PseudoMaskConfig,
    exponents: &'a [f32],
    truth: Option<&'a [bool]>,
}

/// With `--occlusion`, one tumour image's map: its CAM (128×128) combined with the occlusion map of `input` (the
/// image at the classifier's input size) for `target` (of probability `base`), or — with `confirm` — whichever
/// of the CAM, the combined map and the combined map raised to each exponent gives the mask the classifier
/// confirms ([`confirmed_by_deletion`]), with the record of every candidate.
fn with_occlusion(
    model: &ResNet18,
    input: &RgbImage,
    cam: &[f32],
    target: usize,
    base: f32,
    occlusion: Occlusion,
    confirm: Option<Confirm<'_>>,
) -> anyhow::Result<(Vec<f32>, Option<DeletionRecord>)> {
    let device = crate::device::inference();
    let side = SIDE as usize;
    let n = input.width() as usize;
    let occ = occlusion_map(model, input, target, base, occlusion, 64, &device)?;
    let combined = combine(
        cam,
        &resize_bilinear(&occ, n, n, side, side),
        occlusion.weight,
    );
    let Some(confirm) = confirm else {
        return Ok((combined, None));
    };
    let mut names = vec!["cam".to_string(), "combined".to_string()];
    let mut maps = vec![cam.to_vec(), combined];
    for e in confirm.exponents {
        names.push(format!("combined^{e}"));
        maps.push(sharpened(&maps[1], *e));
    }
    let masks: Vec<Vec<bool>> = maps
        .iter()
        .map(|m| {
            split_labels(&pseudo_mask(
                m,
                side,
                side,
                true,
                Some(confirm.cues),
                confirm.config,
            ))
            .0
        })
        .collect();
    let candidates: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
    let (kept, after) =
        confirmed_by_deletion(model, input, target, base, &candidates, side, &device)?;
    let record = DeletionRecord {
        probability: base,
        kept,
        candidates: names
            .into_iter()
            .zip(&masks)
            .zip(after)
            .map(|((map, mask), probability_after)| DeletionCandidate {
                map,
                area: mask.iter().filter(|v| **v).count(),
                probability_after,
                dice: confirm
                    .truth
                    .and_then(|t| MaskCounts::from_masks(mask, t, None).dice()),
            })
            .collect(),
    };
    let map = maps.swap_remove(kept);
    Ok((map, Some(record)))
}

/// A decoded sample: the image, its grey 128×128 version, its true mask at 128×128.
struct Loaded {
    image: RgbImage,
    gray: Vec<u8>,
    truth: Option<Vec<bool>>,
}

fn load(sample: &Sample) -> Result<Loaded, String> {
    let image = decode_file(&sample.path).map_err(|e| e.to_string())?;
    let small =
        resize_rgb(&image, SIDE, SIDE).map_err(|e| format!("{}: {e}", sample.path.display()))?;
    let gray = image::DynamicImage::ImageRgb8(small).to_luma8().into_raw();
    let truth = match &sample.mask {
        None => None,
        Some(path) => Some(read_binary_mask(path, SIDE)?),
    };
    Ok(Loaded { image, gray, truth })
}

/// `CLASS=value` pairs of a per-class option (`flag`) as a map; a class given twice is refused.
fn per_class(
    pairs: impl Iterator<Item = (Class, f32)>,
    flag: &str,
) -> anyhow::Result<BTreeMap<Class, f32>> {
    let mut map = BTreeMap::new();
    for (class, value) in pairs {
        anyhow::ensure!(
            map.insert(class, value).is_none(),
            "{flag} gives {class} twice"
        );
    }
    Ok(map)
}

/// Compute, write and score every image's pseudo-mask.
pub fn pseudo_masks(args: &PseudoMaskArgs) -> anyhow::Result<PseudoManifest> {
    anyhow::ensure!(
        args.scales.iter().all(|s| *s > 0.0 && *s <= 4.0),
        "--scales must lie in (0, 4]"
    );
    if let Some(low) = args.ignore_below {
        anyhow::ensure!(
            (0.0..1.0).contains(&low),
            "--ignore-below must lie in [0, 1)"
        );
    }
    let cam_power = per_class(
        args.cam_power.iter().map(|p| (p.class, p.exponent)),
        "--cam-power",
    )?;
    let posterior_level = per_class(
        args.posterior_level.iter().map(|l| (l.class, l.level)),
        "--posterior-level",
    )?;
    anyhow::ensure!(
        posterior_level.is_empty() || matches!(args.threshold, Threshold::Appearance(_)),
        "--posterior-level needs --threshold appearance:N (it is the appearance posterior's level)"
    );
    let config = PseudoMaskConfig {
        threshold: args.threshold,
        ignore_below: args.ignore_below,
        head_only: !args.no_head,
        cleanup: !args.no_cleanup,
        posterior_level: None,
    };
    let settings = CamSettings {
        method: args.method,
        layer: args.layer,
        scales: args.scales.clone(),
        flip_smooth: args.flip_smooth,
    };
    let (model, run_config) = run::load_run(&args.run, &crate::device::inference())
        .with_context(|| format!("loading {}", args.run.display()))?;
    // The occlusion's forward passes need no gradients: they run the model as loaded.
    let frozen = args.occlusion.map(|_| model.clone());
    let model = model.train().fork(&crate::device::training());
    let dataset = super::scan_dataset(&args.data, false)?.dataset;
    let samples: Vec<&Sample> = dataset.samples.iter().collect();
    anyhow::ensure!(!samples.is_empty(), "{}: no images", args.data.display());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // Scored threshold methods: the comparison set, and the chosen one.
    let mut compared: Vec<Threshold> = Threshold::COMPARED.to_vec();
    if !compared.contains(&args.threshold) {
        compared.push(args.threshold);
    }
    let mut sums: BTreeMap<(String, Split, Class), SegmentationSums> = BTreeMap::new();
    let mut entries = Vec::with_capacity(samples.len());
    let mut errors = Vec::new();
    let mut gallery: Vec<(Class, [RgbImage; 4])> = Vec::new();
    let mut gallery_counts = [0usize; Class::COUNT];
    let per_class = args.gallery.div_ceil(3).max(1);
    let side = SIDE as usize;
    let bar = progress_bar(samples.len() as u64, "pseudo-masks");
    for chunk in samples.chunks(args.batch_size.max(1)) {
        let ready = super::load_batch(chunk, |sample| load(sample), &mut errors, &bar);
        if ready.is_empty() {
            continue;
        }
        let images: Vec<RgbImage> = ready.iter().map(|(_, l)| l.image.clone()).collect();
        let targets: Vec<Option<usize>> = ready
            .iter()
            .map(|(s, _)| match args.gate {
                Gate::Label => run_config.classes.iter().position(|c| *c == s.class),
                Gate::Prediction => None,
            })
            .collect();
        let cams = multi_scale_cams(&model, &images, run_config.input_size, &settings, &targets)?;
        for (i, (sample, loaded)) in ready.iter().enumerate() {
            let (best, confidence) = crate::metrics::argmax(&cams.probabilities[i]);
            let predicted = run_config.classes[best];
            let target = run_config.classes[cams.targets[i]];
            let tumour = match args.gate {
                Gate::Label => sample.class.is_tumour(),
                Gate::Prediction => predicted.is_tumour(),
            };
            let head = head_mask(&loaded.gray, side, side);
            let cues = ImageCues {
                gray: &loaded.gray,
                head: &head,
            };
            // --posterior-level: the explained class's level of the appearance posterior.
            let config = PseudoMaskConfig {
                posterior_level: posterior_level.get(&target).copied(),
                ..config
            };
            // An empty --occlusion-classes / --sharpen-classes list means every class.
            let listed = |classes: &[Class]| classes.is_empty() || classes.contains(&target);
            let occluded;
            // With --confirm-by-deletion, an occluded image's record of its candidates.
            let deletion;
            // --cam-power: the explained class's CAM raised to its power before anything else.
            let powered;
            let cam: &[f32] = match cam_power.get(&target) {
                Some(exponent) => {
                    powered = sharpened(&cams.maps[i], *exponent);
                    &powered
                }
                None => &cams.maps[i],
            };
            let map = match (&frozen, args.occlusion) {
                (Some(frozen), Some(occlusion)) if tumour && listed(&args.occlusion_classes) => {
                    let size = run_config.input_size;
                    let (map, record) = with_occlusion(
                        frozen,
                        &resize_rgb(&loaded.image, size, size)?,
                        cam,
                        cams.targets[i],
                        cams.probabilities[i][cams.targets[i]],
                        occlusion,
                        args.confirm_by_deletion.then(|| Confirm {
                            cues: &cues,
                            config: &config,
                            exponents: if listed(&args.sharpen_classes) {
                                &args.sharpen
                            } else {
                                &[]
                            },
                            truth: loaded.truth.as_deref(),
                        }),
                    )?;
                    deletion = record;
                    occluded = map;
                    &occluded
                }
                _ => {
                    deletion = None;
                    cam
                }
            };
            let mask = pseudo_mask(map, side, side, tumour, Some(&cues), &config);
            // The mask's own counts: its entry's Dice and its threshold's row of the quality table.
            let chosen = loaded
                .truth
                .as_ref()
                .map(|truth| (truth, mask_counts(&mask, truth)));
            let dice = chosen.as_ref().and_then(|(_, counts)| counts.dice());
            if let Some((truth, chosen)) = &chosen {
                for threshold in &compared {
                    let other;
                    let counts = if *threshold == config.threshold {
                        chosen
                    } else {
                        let c = PseudoMaskConfig {
                            threshold: *threshold,
                            ..config
                        };
                        other = mask_counts(
                            &pseudo_mask(map, side, side, tumour, Some(&cues), &c),
                            truth,
                        );
                        &other
                    };
                    sums.entry((threshold.to_string(), sample.split, sample.class))
                        .or_default()
                        .add_image(counts, None);
                }
            }
            let relative = output_path(sample, &args.data, "masks");
            let path = args.out.join(&relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            GrayImage::from_raw(SIDE, SIDE, mask.clone())
                .context("mask size")?
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            if args.save_cams {
                let cam_path = args.out.join(output_path(sample, &args.data, "cams"));
                if let Some(parent) = cam_path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let bytes: Vec<u8> = map
                    .iter()
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                    .collect();
                GrayImage::from_raw(SIDE, SIDE, bytes)
                    .context("CAM size")?
                    .save(&cam_path)
                    .with_context(|| format!("writing {}", cam_path.display()))?;
            }
            if sample.class.is_tumour()
                && sample.split == Split::Training
                && gallery_counts[sample.class.index()] < per_class
                && gallery.len() < args.gallery
            {
                gallery_counts[sample.class.index()] += 1;
                let small = resize_rgb(&loaded.image, SIDE, SIDE)?;
                let truth_tile = loaded.truth.as_ref().map_or_else(
                    || RgbImage::new(SIDE, SIDE),
                    |t| {
                        let bytes: Vec<u8> = crate::cam::pseudo::to_stored(t);
                        masks::mask_tile(&bytes, SIDE, SIDE)
                    },
                );
                gallery.push((
                    sample.class,
                    [
                        small.clone(),
                        truth_tile,
                        colormap::overlay(&small, map, 0.5)?,
                        masks::mask_tile(&mask, SIDE, SIDE),
                    ],
                ));
            }
            entries.push(PseudoEntry {
                image: sample.path.clone(),
                split: sample.split,
                class: sample.class,
                predicted,
                confidence,
                target,
                mask: relative,
                true_mask: sample.mask.clone(),
                dice,
                deletion,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(
        !entries.is_empty(),
        "none of the {} images could be read",
        samples.len()
    );
    let manifest = PseudoManifest {
        run: args.run.clone(),
        data: args.data.clone(),
        method: args.method,
        config,
        gate: args.gate,
        flip_smooth: args.flip_smooth,
        layer: args.layer,
        scales: args.scales.clone(),
        occlusion: args.occlusion,
        occlusion_classes: args.occlusion_classes.clone(),
        confirm_by_deletion: args
            .confirm_by_deletion
            .then(|| ConfirmedCounts::of(&entries, args.sharpen.len())),
        sharpen: args.sharpen.clone(),
        sharpen_classes: args.sharpen_classes.clone(),
        cam_power,
        posterior_level,
        parts: Vec::new(),
        entries,
        quality: quality(&sums),
        errors,
    };
    write_manifest(&manifest, &args.out)?;
    if !gallery.is_empty() {
        write_gallery(
            &args.out.join("gallery.png"),
            "pseudo-masks: image | true mask | CAM | pseudo-mask (grey: ignored)",
            &gallery,
            &["image", "true mask", "CAM", "pseudo-mask"],
        )?;
    }
    Ok(manifest)
}

/// Where an image's output goes: `<top>/<split>/<class>/<path below the class folder>.png` (`masks` for the
/// pseudo-mask, `cams` for the map with `--save-cams`).
fn output_path(sample: &Sample, root: &Path, top: &str) -> PathBuf {
    let relative = sample.path.strip_prefix(root).unwrap_or(&sample.path);
    let below_class: PathBuf = relative.components().skip(2).collect();
    let below_class = if below_class.as_os_str().is_empty() {
        PathBuf::from(sample.path.file_name().unwrap_or_default())
    } else {
        below_class
    };
    Path::new(top)
        .join(sample.split.folder_name())
        .join(sample.class.folder_name())
        .join(below_class.with_extension("png"))
}

/// A stored pseudo-mask (0, 255, 128 = ignore) against the true mask, as `quality.md` scores it: ignored pixels
/// count as background.
pub(crate) fn mask_counts(mask: &[u8], truth: &[bool]) -> MaskCounts {
    let (foreground, _) = split_labels(mask);
    MaskCounts::from_masks(&foreground, truth, None)
}

/// Scores per threshold method, per split, per class and `all`.
pub(crate) fn quality(
    sums: &BTreeMap<(String, Split, Class), SegmentationSums>,
) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, SegmentationScores>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeMap<String, SegmentationScores>>> =
        BTreeMap::new();
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
fn scored(manifest: &PseudoManifest, split: Split) -> bool {
    manifest
        .quality
        .values()
        .any(|by_split| by_split.contains_key(split.folder_name()))
}

/// One split's scores of every threshold method, as markdown.
pub fn quality_table(manifest: &PseudoManifest, split: Split) -> String {
    let num = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"));
    let mut out = format!(
        "Pseudo-masks ({}, {} gate, chosen: {}) against the true masks, {}: Dice and IoU are means over tumour \
         images; pooled Dice sums the pixels of all images; empty correct = no-tumour images given an empty \
         mask.\n\n| threshold | class | images | Dice | IoU | pooled Dice | pixel acc. | empty correct |\n\
         |---|---|---|---|---|---|---|---|\n",
        manifest.method.name(),
        match manifest.gate {
            Gate::Label => "label",
            Gate::Prediction => "prediction",
        },
        manifest.config.threshold,
        split.folder_name()
    );
    for (threshold, splits) in &manifest.quality {
        let Some(classes) = splits.get(split.folder_name()) else {
            continue;
        };
        for (class, s) in classes {
            out.push_str(&format!(
                "| {threshold} | {class} | {} | {} | {} | {} | {} | {} |\n",
                s.images,
                num(s.dice),
                num(s.iou),
                num(s.pooled_dice),
                num(s.pixel_accuracy),
                num(s.empty_correct)
            ));
        }
    }
    out
}

/// A gallery: one row per case, one column per tile.
pub fn write_gallery<const N: usize>(
    path: &Path,
    title: &str,
    cases: &[(Class, [RgbImage; N])],
    columns: &[&str; N],
) -> anyhow::Result<()> {
    let rows: Vec<grid::GridRow> = cases
        .iter()
        .map(|(class, tiles)| grid::GridRow {
            label: class.to_string(),
            colour: viz::CLASS_COLOURS[class.index()],
            images: tiles.to_vec(),
            captions: columns.iter().map(|c| c.to_string()).collect(),
        })
        .collect();
    viz::save_png(&grid::image_grid(title, &rows, N, 128)?, path)?;
    Ok(())
}
