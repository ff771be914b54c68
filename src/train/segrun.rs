//! A segmentation run folder: `unet.safetensors`, `classifier/` (a copy of the classifier run, whose predictions
//! gate masks at prediction time), `seg.json` (the settings, the pseudo-mask recipe, history and per-round
//! metrics), `metrics.md` and `gallery.png`; loading one for prediction.

use super::segmentation::{image_mask, predict_logits, MaskRule, SegEpoch};
use super::unet_config::SegConfig;
use crate::data::preprocess::resize_rgb;
use crate::metrics::segmentation::SegmentationScores;
use crate::model::inference;
use crate::model::run::{self, RunConfig};
use crate::model::unet::{load_unet, UNet};
use crate::pseudo::masker::Masker;
use crate::pseudo::Recipe;
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `seg.json` format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The U-Net weights of a segmentation run.
pub const UNET_FILE: &str = "unet.safetensors";
/// Its settings, history and metrics.
pub const SEG_CONFIG: &str = "seg.json";
/// The classifier copy that gates masks.
pub const CLASSIFIER_DIR: &str = "classifier";

/// What a segmentation run is, and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegRun {
    pub format_version: u32,
    pub classifier: RunConfig,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub run: PathBuf,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub data: PathBuf,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub pseudo: PathBuf,
    /// The recipe the pseudo-masks were made with, as their manifest records it.
    pub pseudo_recipe: Recipe,
    pub side: u32,
    /// How the U-Net was trained and how its output becomes a mask.
    pub config: SegConfig,
    /// How many Training images `drop_unconfirmed` left out.
    pub dropped_unconfirmed: usize,
    pub seed: u64,
    pub history: Vec<SegEpoch>,
    pub round_metrics: Vec<RoundMetrics>,
    /// The trivial reference: a centred disc of the mean true lesion area of the Training tumour images, scored
    /// on the Testing images against their true masks (label gate); `None` without true masks.
    #[serde(default)]
    pub reference_disc: Option<SegmentationScores>,
    pub seconds: f64,
    pub created_by: String,
}

/// Scores after one round. "Targets" are what the round trained on (round 1: the pseudo-masks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundMetrics {
    pub round: usize,
    /// The round's targets on the training images against the true masks.
    pub targets_vs_truth: Option<SegmentationScores>,
    /// The U-Net's masks of the training images (gated like the targets) against the true masks.
    pub unet_train_vs_truth: Option<SegmentationScores>,
    /// The U-Net on Testing/ against the true masks, each mask gated by the image's label (segmentation
    /// alone), per class and `all`.
    pub test_label_gate: BTreeMap<String, SegmentationScores>,
    /// The same, gated by the classifier's prediction (what `segment` does).
    pub test_prediction_gate: BTreeMap<String, SegmentationScores>,
    /// The U-Net on Testing/ against Testing's pseudo-masks.
    pub test_vs_pseudo: Option<SegmentationScores>,
    /// 95 % percentile-bootstrap interval of `test_label_gate`'s mean Dice over the tumour images (2,000
    /// resamples, seed 0: the interval `segment --no-gate` gives for the same model and images).
    #[serde(default)]
    pub test_dice_interval: Option<(f64, f64)>,
    /// With the U-Net setting `confirm`: the U-Net's own masks on Testing, label gate, all classes (what the
    /// check started from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_unet_alone: Option<SegmentationScores>,
    /// With `confirm`: of the Testing tumour images (label gate), how many kept the U-Net's mask and how many the
    /// recipe's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_kept: Option<[usize; 2]>,
}

impl SegRun {
    /// How the U-Net's output becomes a mask.
    pub fn mask_rule(&self) -> MaskRule {
        self.config.mask_rule()
    }
}

/// A segmentation run loaded for prediction.
pub struct SegModel {
    pub unet: UNet,
    /// The classifier, prepared for inference.
    pub classifier: inference::Predictor,
    pub classifier_config: run::RunConfig,
    pub config: SegRun,
    /// The run's pseudo-mask recipe on its classifier, where its mask rule checks the U-Net's masks.
    pub masker: Option<Masker>,
}

impl SegModel {
    /// The recipe on the run's classifier, which the mask rule's check needs.
    pub fn masker(&self) -> anyhow::Result<&Masker> {
        self.masker.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the mask rule checks masks, but the run was loaded without its recipe")
        })
    }
}

/// Load `dir`'s U-Net, classifier and settings onto the inference device; with `check`, also the recipe on the
/// classifier where the run's mask rule checks the U-Net's masks (`false` where no mask will be checked).
pub fn load_segrun(dir: &Path, check: bool) -> anyhow::Result<SegModel> {
    let path = dir.join(SEG_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| run::RunError::Config {
        path: dir.to_path_buf(),
        message: format!("not a segmentation run (no readable {SEG_CONFIG}: {e}); make one with `tumornet train-seg`"),
    })?;
    let config: SegRun = serde_json::from_str(&text).map_err(|e| run::RunError::Config {
        path: path.clone(),
        message: format!("{e} (a run made before format {FORMAT_VERSION} must be trained again)"),
    })?;
    let device = crate::device::inference();
    let (classifier, classifier_config) = run::load_run(&dir.join(CLASSIFIER_DIR), &device)?;
    let unet = load_unet(
        &dir.join(UNET_FILE),
        classifier_config.classes.len(),
        &device,
    )?;
    let masker = (check && config.mask_rule().confirm).then(|| {
        Masker::new(
            &classifier,
            classifier_config.clone(),
            config.pseudo_recipe.clone(),
            true,
        )
    });
    Ok(SegModel {
        unet,
        classifier: inference::Predictor::new(&classifier),
        classifier_config,
        config,
        masker,
    })
}

/// Images (as decoded) through a segmentation run: the classifier's probabilities and the gated mask (128×128)
/// of each. With `rule.confirm` the mask of each 2-D image predicted a tumour is checked against the recipe's mask
/// of the image for that class ([`Masker::confirm`]); the slices of a volume (`in_volume`, `true` for each) keep
/// the U-Net's masks: on 3-D phantom heads the check gave the many slices far from the lesion that the classifier
/// calls tumour the recipe's masks, and a meningioma volume's largest component moved away from the lesion.
pub fn segment_images(
    model: &SegModel,
    images: &[RgbImage],
    in_volume: &[bool],
    gate: bool,
    rule: &MaskRule,
) -> anyhow::Result<Vec<(Vec<f32>, Vec<bool>)>> {
    let device = crate::device::inference();
    let size = model.classifier_config.input_size;
    let side = model.config.side;
    let (for_classifier, for_unet): (Vec<RgbImage>, Vec<RgbImage>) = images
        .par_iter()
        .map(|image| {
            Ok((
                resize_rgb(image, size, size)?,
                resize_rgb(image, side, side)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let probabilities = model.classifier.probabilities(&for_classifier, &device)?;
    let logits = predict_logits(&model.unet, &for_unet, 32, rule.flip)?;
    let classes = &model.classifier_config.classes;
    let mut checks = Vec::new();
    let mut masks = Vec::with_capacity(images.len());
    for (i, ((p, z), image)) in probabilities.iter().zip(&logits).zip(&for_unet).enumerate() {
        let (best, confidence) = crate::metrics::argmax(p);
        let tumour = classes[best].is_tumour();
        masks.push(image_mask(z, image, rule, !gate || tumour));
        if rule.confirm && tumour && !in_volume.get(i).copied().unwrap_or(false) {
            checks.push((i, best, confidence));
        }
    }
    check_masks(model, images, &for_classifier, &checks, &mut masks)?;
    Ok(probabilities.into_iter().zip(masks).collect())
}

/// For each `(i, target, base)` of `checks`: `masks[i]`, the U-Net's tumour mask of `images[i]` (as decoded;
/// `inputs[i]` at the classifier's input size, whose p(`target`) is `base`), or the recipe's mask of the image for
/// `target`, whichever the classifier confirms ([`Masker::choose`]). The recipe's maps are made in one batch.
fn check_masks(
    model: &SegModel,
    images: &[RgbImage],
    inputs: &[RgbImage],
    checks: &[(usize, usize, f32)],
    masks: &mut [Vec<bool>],
) -> anyhow::Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
    let masker = model.masker()?;
    let originals: Vec<RgbImage> = checks.iter().map(|(i, _, _)| images[*i].clone()).collect();
    let targets: Vec<usize> = checks.iter().map(|(_, t, _)| *t).collect();
    let recipe_masks = masker.tumour_masks(&originals, &targets)?;
    for (&(i, target, base), recipe) in checks.iter().zip(recipe_masks) {
        let unet = std::mem::take(&mut masks[i]);
        masks[i] = masker.choose(&inputs[i], target, base, unet, recipe)?.0;
    }
    Ok(())
}

/// One tumour mask of `image` (as decoded) checked against the recipe's mask of the image for class `target`, of
/// probability `base` ([`Masker::confirm`]): the mask the classifier confirms. Needs a run loaded with its recipe
/// (its rule checks).
pub fn checked_mask(
    model: &SegModel,
    image: &RgbImage,
    target: usize,
    base: f32,
    mask: Vec<bool>,
) -> anyhow::Result<Vec<bool>> {
    let size = model.classifier_config.input_size;
    let input = resize_rgb(image, size, size)?;
    let mut masks = vec![mask];
    check_masks(
        model,
        std::slice::from_ref(image),
        std::slice::from_ref(&input),
        &[(0, target, base)],
        &mut masks,
    )?;
    Ok(masks.pop().unwrap_or_default())
}
