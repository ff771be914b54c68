//! Making pseudo-masks: for every image of a dataset folder, a class activation map of a run's classifier made
//! into a 128×128 pseudo-mask by a [`Recipe`] (`masks/<split>/<class>/<name>.png`: 0 background, 255 tumour,
//! 128 ignore), the manifest, `quality.md` (every threshold method scored against the true masks where the
//! dataset has them) and `gallery.png` (image | true mask | CAM | pseudo-mask).

use crate::cam::pseudo::{head_mask, pseudo_mask, ImageCues, Threshold};
use crate::data::decode::{decode_file, read_binary_mask};
use crate::data::preprocess::resize_rgb;
use crate::data::scan::{Sample, Split};
use crate::data::shard::Shard;
use crate::data::Class;
use crate::metrics::segmentation::SegmentationSums;
use crate::model::run::{self, RunConfig};
use crate::progress::{load_batch, progress_bar};
use crate::pseudo::manifest::{
    confirmed_counts, mask_score, quality, write_manifest, PseudoEntry, PseudoManifest,
    FORMAT_VERSION, SIDE,
};
use crate::pseudo::masker::{gray_of, Cams, Explained, Made, Masker};
use crate::pseudo::recipe::{Gate, Recipe};
use crate::viz::{colormap, grid, masks};
use anyhow::Context;
use image::{GrayImage, RgbImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to make pseudo-masks of, and how.
#[derive(Debug, Clone)]
pub struct PseudoSettings {
    /// The classifier run whose CAMs make the masks.
    pub run: PathBuf,
    /// The dataset folder (Kaggle layout).
    pub data: PathBuf,
    pub out: PathBuf,
    pub recipe: Recipe,
    pub shard: Shard,
    pub batch_size: usize,
    /// Cases in `gallery.png`.
    pub gallery: usize,
    /// Also write every image's map as an 8-bit grey PNG under `cams/`.
    pub save_cams: bool,
}

/// A decoded sample: the image, its grey 128×128 version, its true mask at 128×128.
struct Loaded {
    image: RgbImage,
    gray: Vec<u8>,
    truth: Option<Vec<bool>>,
}

fn load(sample: &Sample) -> Result<Loaded, String> {
    let image = decode_file(&sample.path).map_err(|e| e.to_string())?;
    let gray = gray_of(&image).map_err(|e| format!("{}: {e}", sample.path.display()))?;
    let truth = match &sample.mask {
        None => None,
        Some(path) => Some(read_binary_mask(path, SIDE)?),
    };
    Ok(Loaded { image, gray, truth })
}

fn load_masker(settings: &PseudoSettings) -> anyhow::Result<Masker> {
    let (model, config) = run::load_run(&settings.run, &crate::device::inference())
        .with_context(|| format!("loading {}", settings.run.display()))?;
    Ok(Masker::new(&model, config, settings.recipe.clone(), false))
}

/// Say so when the run's own test accuracy (its `metrics.json`, where it has one) is near chance: its maps will
/// not point at lesions, whatever the recipe.
fn warn_if_unlearned(run: &Path, config: &RunConfig) {
    let Ok(text) = std::fs::read_to_string(run.join("metrics.json")) else {
        return;
    };
    let Ok(metrics) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let accuracy = metrics["stages"][config.stage.as_str()]["test"]["accuracy"].as_f64();
    if let Some(accuracy) = accuracy.filter(|a| *a < 0.5) {
        tracing::warn!(
            "{}: test accuracy {:.1} % (chance: 25 %); a classifier that has not learned the lesions gives maps \
             that do not point at them, and no recipe makes good masks from those",
            run.display(),
            accuracy * 100.0
        );
    }
}

/// What accumulates over the images: the entries, the scores per threshold method, the gallery, the errors.
struct Collected {
    entries: Vec<PseudoEntry>,
    sums: BTreeMap<(String, Split, Class), SegmentationSums>,
    gallery: Vec<(Class, [RgbImage; 4])>,
    gallery_counts: [usize; Class::COUNT],
    errors: Vec<String>,
}

/// Compute, write and score every image's pseudo-mask (of the settings' shard).
pub fn make_pseudo_masks(settings: &PseudoSettings) -> anyhow::Result<PseudoManifest> {
    let recipe = &settings.recipe;
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("recipe: {e}"))?;
    let masker = load_masker(settings)?;
    warn_if_unlearned(&settings.run, &masker.config);
    let dataset = crate::data::scan::scan_logged(&settings.data, false)?.dataset;
    let all: Vec<&Sample> = dataset.samples.iter().collect();
    anyhow::ensure!(!all.is_empty(), "{}: no images", settings.data.display());
    let samples = settings.shard.select(&all);
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let mut collected = Collected {
        entries: Vec::with_capacity(samples.len()),
        sums: BTreeMap::new(),
        gallery: Vec::new(),
        gallery_counts: [0; Class::COUNT],
        errors: Vec::new(),
    };
    let bar = progress_bar(samples.len() as u64, "pseudo-masks");
    for chunk in samples.chunks(settings.batch_size.max(1)) {
        let ready = load_batch(chunk, |sample| load(sample), &mut collected.errors, &bar);
        if ready.is_empty() {
            continue;
        }
        let images: Vec<RgbImage> = ready.iter().map(|(_, l)| l.image.clone()).collect();
        let targets: Vec<Option<usize>> = ready
            .iter()
            .map(|(s, _)| match recipe.gate {
                Gate::Label => masker.config.classes.iter().position(|c| *c == s.class),
                Gate::Prediction => None,
            })
            .collect();
        let cams = masker.cams(&images, &targets)?;
        for (i, (sample, loaded)) in ready.iter().enumerate() {
            process_image(settings, &masker, &cams, i, sample, loaded, &mut collected)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(
        !collected.entries.is_empty(),
        "none of the {} images could be read",
        samples.len()
    );
    finish(settings, collected)
}

/// One image: its mask made, scored, written, and its entry collected.
#[allow(clippy::too_many_arguments)]
fn process_image(
    settings: &PseudoSettings,
    masker: &Masker,
    cams: &Cams,
    i: usize,
    sample: &Sample,
    loaded: &Loaded,
    collected: &mut Collected,
) -> anyhow::Result<()> {
    let recipe = &settings.recipe;
    let side = SIDE as usize;
    let (best, confidence) = crate::metrics::argmax(&cams.probabilities[i]);
    let predicted = masker.config.classes[best];
    let target = masker.config.classes[cams.targets[i]];
    let tumour = match recipe.gate {
        Gate::Label => sample.class.is_tumour(),
        Gate::Prediction => predicted.is_tumour(),
    };
    let head = head_mask(&loaded.gray, side, side);
    let cues = ImageCues {
        gray: &loaded.gray,
        head: &head,
    };
    let made = masker.make(
        &Explained {
            image: &loaded.image,
            cues: &cues,
            truth: loaded.truth.as_deref(),
            target,
            target_index: cams.targets[i],
            probability: cams.probabilities[i][cams.targets[i]],
            tumour,
        },
        &cams.maps[i],
    )?;
    let dice = match &loaded.truth {
        Some(truth) => {
            let config = recipe.mask_config(target);
            score_thresholds(
                &made,
                truth,
                tumour,
                &cues,
                &config,
                sample,
                &mut collected.sums,
            )
        }
        None => None,
    };
    let relative = output_path(sample, &settings.data, "masks");
    save_gray(&settings.out.join(&relative), made.mask.clone())?;
    if settings.save_cams {
        let bytes: Vec<u8> = made
            .map
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        save_gray(
            &settings
                .out
                .join(output_path(sample, &settings.data, "cams")),
            bytes,
        )?;
    }
    add_to_gallery(settings.gallery, sample, loaded, &made, collected)?;
    collected.entries.push(PseudoEntry {
        image: sample.path.clone(),
        split: sample.split,
        class: sample.class,
        predicted,
        confidence,
        target,
        mask: relative,
        true_mask: sample.mask.clone(),
        dice,
        deletion: made.deletion,
    });
    Ok(())
}

/// Score the image's map under every compared threshold method (the recipe's own one with the mask it made) and
/// return the mask's own Dice.
fn score_thresholds(
    made: &Made,
    truth: &[bool],
    tumour: bool,
    cues: &ImageCues,
    config: &crate::cam::pseudo::PseudoMaskConfig,
    sample: &Sample,
    sums: &mut BTreeMap<(String, Split, Class), SegmentationSums>,
) -> Option<f64> {
    let side = SIDE as usize;
    let chosen = mask_score(&made.mask, truth, side);
    let mut compared: Vec<Threshold> = Threshold::COMPARED.to_vec();
    if !compared.contains(&config.threshold) {
        compared.push(config.threshold);
    }
    for threshold in compared {
        let score = if threshold == config.threshold {
            chosen
        } else {
            let c = crate::cam::pseudo::PseudoMaskConfig {
                threshold,
                ..*config
            };
            mask_score(
                &pseudo_mask(&made.map, side, side, tumour, Some(cues), &c),
                truth,
                side,
            )
        };
        sums.entry((threshold.to_string(), sample.split, sample.class))
            .or_default()
            .add_image(&score, None);
    }
    chosen.counts.dice()
}

fn save_gray(path: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    GrayImage::from_raw(SIDE, SIDE, bytes)
        .context("mask size")?
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// The first Training tumour images of each class go into the gallery (up to `count` in all).
fn add_to_gallery(
    count: usize,
    sample: &Sample,
    loaded: &Loaded,
    made: &Made,
    collected: &mut Collected,
) -> anyhow::Result<()> {
    let per_class = count.div_ceil(3).max(1);
    if !(sample.class.is_tumour()
        && sample.split == Split::Training
        && collected.gallery_counts[sample.class.index()] < per_class
        && collected.gallery.len() < count)
    {
        return Ok(());
    }
    collected.gallery_counts[sample.class.index()] += 1;
    let small = resize_rgb(&loaded.image, SIDE, SIDE)?;
    let truth_tile = loaded.truth.as_ref().map_or_else(
        || RgbImage::new(SIDE, SIDE),
        |t| masks::mask_tile(&crate::cam::pseudo::to_stored(t), SIDE, SIDE),
    );
    collected.gallery.push((
        sample.class,
        [
            small.clone(),
            truth_tile,
            colormap::overlay(&small, &made.map, 0.5)?,
            masks::mask_tile(&made.mask, SIDE, SIDE),
        ],
    ));
    Ok(())
}

/// The manifest written, with `quality.md` and the gallery.
fn finish(settings: &PseudoSettings, collected: Collected) -> anyhow::Result<PseudoManifest> {
    let confirmed = settings
        .recipe
        .occlusion
        .is_some_and(|o| o.confirm_by_deletion)
        .then(|| confirmed_counts(&collected.entries));
    let manifest = PseudoManifest {
        format_version: FORMAT_VERSION,
        run: settings.run.clone(),
        data: settings.data.clone(),
        recipe: settings.recipe.clone(),
        confirmed,
        parts: Vec::new(),
        entries: collected.entries,
        quality: quality(&collected.sums),
        errors: collected.errors,
    };
    write_manifest(&manifest, &settings.out)?;
    if !collected.gallery.is_empty() {
        grid::save_case_gallery(
            &settings.out.join("gallery.png"),
            "pseudo-masks: image | true mask | CAM | pseudo-mask (grey: ignored)",
            &collected.gallery,
            &["image", "true mask", "CAM", "pseudo-mask"],
        )?;
    }
    Ok(manifest)
}

/// Where an image's output goes: `<top>/<split>/<class>/<path below the class folder>.png` (`masks` for the
/// pseudo-mask, `cams` for the map).
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
