//! Segmentation training: the U-Net learns 128×128 masks with BCE-with-logits + soft Dice, both skipping the
//! "ignore" pixels of a pseudo-mask; training images are mirrored at random (image and mask together); the
//! epoch with the best validation Dice (against the current targets) is kept. Self-training rounds are driven by
//! the caller: [`predict_logits`] gives the masks of the next round.

use super::config::Schedule;
use super::decoder::{HostDecoder, HostFeatures};
use super::stage::epoch_draws;
use crate::cam::pseudo::{keep_largest_filled, IGNORE};
use crate::data::batcher::images_to_tensor;
use crate::data::preprocess::hflip;
use crate::metrics::segmentation::{bce_with_logits, MaskCounts, SegmentationSums};
use crate::model::folded::{FoldError, FoldedResNet18};
use crate::model::inference::{values, InferenceError};
use crate::model::unet::UNet;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// burn's Adam ε as the U-Net is trained with it.
pub const ADAM_EPSILON: f32 = 1e-8;

/// Images and their current targets (all `side`×`side`).
pub struct SegData {
    pub side: usize,
    pub images: Vec<RgbImage>,
    /// Targets: 0 background, 255 foreground, [`IGNORE`] skipped.
    pub targets: Vec<Vec<u8>>,
}

impl SegData {
    /// The images of `items` (mirrored where `flips` says) with their targets and weights `[N, side, side]`:
    /// target 1 on foreground, weight 0 on ignored pixels.
    fn batch(&self, items: &[usize], flips: &[bool]) -> (Vec<RgbImage>, Vec<f32>, Vec<f32>) {
        let side = self.side;
        let images: Vec<RgbImage> = items
            .iter()
            .zip(flips)
            .map(|(i, f)| {
                if *f {
                    hflip(&self.images[*i])
                } else {
                    self.images[*i].clone()
                }
            })
            .collect();
        let mut target = Vec::with_capacity(items.len() * side * side);
        let mut weight = Vec::with_capacity(items.len() * side * side);
        for (i, f) in items.iter().zip(flips) {
            let mask = &self.targets[*i];
            for y in 0..side {
                for x in 0..side {
                    let sx = if *f { side - 1 - x } else { x };
                    let v = mask[y * side + sx];
                    target.push(if v > IGNORE { 1.0f32 } else { 0.0 });
                    weight.push(if v == IGNORE { 0.0f32 } else { 1.0 });
                }
            }
        }
        (images, target, weight)
    }
}

/// How the soft Dice term of the segmentation loss is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiceLoss {
    /// One Dice over every pixel of the batch (pooled): a large lesion weighs as much as many small ones.
    #[default]
    Batch,
    /// One Dice per image whose target has foreground, averaged over those images: every lesion weighs the
    /// same, as in the per-image mean Dice runs are scored by. Images with an empty target add only BCE.
    PerImage,
}

/// BCE-with-logits (mean over the pixels that count) + soft Dice (1 − (2Σpt + 1) / (Σp + Σt + 1) over the same
/// pixels, taken over the batch or per image as `dice` says), for logits, targets and weights `[B, 1, H, W]`.
pub fn segmentation_loss(
    logits: Tensor<4>,
    target: Tensor<4>,
    weight: Tensor<4>,
    dice: DiceLoss,
) -> Tensor<1> {
    let counted = weight.clone().sum().clamp_min(1.0); // [1]
    let bce = relu(logits.clone()) - logits.clone() * target.clone()
        + logits.clone().abs().neg().exp().add_scalar(1.0).log(); // [B, 1, H, W]
    let bce = (bce * weight.clone()).sum() / counted; // [1]
    let p = sigmoid(logits) * weight.clone(); // [B, 1, H, W]
    let t = target * weight; // [B, 1, H, W]
    let dice = match dice {
        DiceLoss::Batch => {
            let intersection = (p.clone() * t.clone()).sum(); // [1]
            soft_dice_loss(intersection, p.sum(), t.sum())
        }
        DiceLoss::PerImage => {
            let per_image = |x: Tensor<4>| x.sum_dims_squeeze::<1, usize>(&[1, 2, 3]); // [B]
            let intersection = per_image(p.clone() * t.clone());
            let (p, t) = (per_image(p), per_image(t));
            // In the loss's own float type (`float()` gives the default one).
            let has_lesion = t.clone().greater_elem(0.0).float().cast(t.dtype()); // [B]
            let losses = soft_dice_loss(intersection, p, t) * has_lesion.clone(); // [B]
            losses.sum() / has_lesion.sum().clamp_min(1.0) // [1]
        }
    };
    bce + dice
}

/// 1 − (2·intersection + 1) / (p + t + 1), elementwise.
fn soft_dice_loss(intersection: Tensor<1>, p: Tensor<1>, t: Tensor<1>) -> Tensor<1> {
    (intersection.mul_scalar(2.0).add_scalar(1.0) / (p + t).add_scalar(1.0))
        .neg()
        .add_scalar(1.0)
}

/// Settings of one round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundConfig {
    pub round: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Over the round's steps.
    pub schedule: Schedule,
    pub batch_size: usize,
    pub seed: u64,
    pub threshold: f32,
    /// The loss's Dice term.
    pub dice_loss: DiceLoss,
    /// The encoder is frozen (no gradients, eval-mode BatchNorm): on the CPU its maps then come from the folded
    /// network and the decoder is trained on the host ([`SegTrainer`]).
    pub frozen_encoder: bool,
}

/// One epoch of one round. JSON has no NaN (serde_json writes it as `null`, e.g. the loss of an empty
/// validation split): such a value reads back as NaN, so the run folder still loads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegEpoch {
    pub round: usize,
    pub epoch: usize,
    #[serde(deserialize_with = "null_as_nan")]
    pub train_loss: f64,
    /// Against the round's targets on the validation images.
    #[serde(deserialize_with = "null_as_nan")]
    pub validation_loss: f64,
    pub validation_dice: Option<f64>,
    #[serde(deserialize_with = "null_as_nan")]
    pub seconds: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub images_per_second: f64,
}

/// A number written as `null` (NaN or infinite when saved) read back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// How a U-Net takes its training steps: with a frozen encoder on the CPU, the folded encoder's maps feed the
/// decoder trained on the host ([`HostDecoder`]); otherwise burn's autodiff and Adam on the training device.
pub enum SegTrainer {
    Host {
        encoder: Box<FoldedResNet18>,
        decoder: Box<HostDecoder>,
    },
    Burn(burn::optim::ModuleOptimizer),
}

impl SegTrainer {
    /// The trainer for `unet` as `frozen_encoder` says it is trained (Adam with burn's defaults, ε 1e-8).
    pub fn new(unet: &UNet, frozen_encoder: bool) -> Result<Self, FoldError> {
        let folded = match frozen_encoder {
            true => FoldedResNet18::on_cpu(&unet.encoder)?,
            false => None,
        };
        Ok(match folded {
            Some(encoder) => SegTrainer::Host {
                encoder: Box::new(encoder),
                decoder: Box::new(HostDecoder::of(unet, ADAM_EPSILON)?),
            },
            None => SegTrainer::Burn(AdamConfig::new().with_epsilon(ADAM_EPSILON).init()),
        })
    }

    /// One step at learning rate `rate` on `images` with their targets and weights (`[N, H, W]`): the model after
    /// it and the batch's loss. The host trainer keeps what it learns until [`SegTrainer::model`].
    pub fn step(
        &mut self,
        unet: UNet,
        images: &[RgbImage],
        target: &[f32],
        weight: &[f32],
        dice: DiceLoss,
        rate: f64,
    ) -> Result<(UNet, f32), InferenceError> {
        let tensor_of = |images: &[RgbImage], device: &Device| {
            images_to_tensor(images, device).map_err(|e| InferenceError::Readback(e.to_string()))
        };
        match self {
            SegTrainer::Host { encoder, decoder } => {
                let device = crate::device::inference();
                let features =
                    HostFeatures::of(encoder.features(tensor_of(images, &device)?, &device)?)?;
                let loss = decoder.step(&features, target, weight, dice, rate);
                Ok((unet, loss))
            }
            SegTrainer::Burn(optimizer) => {
                let device = crate::device::training();
                let x = tensor_of(images, &device)?;
                let [n, _, h, w] = x.dims();
                let mask = |v: &[f32]| {
                    Tensor::<4>::from_data(TensorData::new(v.to_vec(), [n, 1, h, w]), &device)
                };
                let loss = segmentation_loss(unet.forward(x), mask(target), mask(weight), dice);
                let value = values(loss.clone())?.first().copied().unwrap_or(f32::NAN);
                let grads = GradientsParams::from_grads(loss.backward(), &unet);
                Ok((optimizer.step(rate, unet, grads), value))
            }
        }
    }

    /// `unet` with what the steps so far learnt.
    pub fn model(&self, unet: UNet) -> UNet {
        match self {
            SegTrainer::Host { decoder, .. } => decoder.write_into(unet),
            SegTrainer::Burn(_) => unet,
        }
    }
}

/// Train `unet` (on the training device, encoder frozen or not as the caller set it) for one round on
/// `data.targets` of `train`, validating on `validation`; returns the best epoch's model in inference mode.
pub fn train_round(
    mut unet: UNet,
    data: &SegData,
    train: &[usize],
    validation: &[usize],
    config: &RoundConfig,
    history: &mut Vec<SegEpoch>,
    progress: &dyn Fn(u64),
) -> anyhow::Result<UNet> {
    let mut trainer = SegTrainer::new(&unet, config.frozen_encoder)?;
    let mut best: Option<(f64, f64, UNet)> = None;
    for epoch in 0..config.epochs {
        let start = Instant::now();
        let (order, augments) = epoch_draws(
            config.seed,
            100 + config.round as u64,
            epoch,
            train.len(),
            None,
        );
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let steps = order.len().div_ceil(config.batch_size.max(1));
        for (step, batch) in order.chunks(config.batch_size.max(1)).enumerate() {
            let items: Vec<usize> = batch.iter().map(|i| train[*i]).collect();
            let flips: Vec<bool> = batch.iter().map(|i| augments[*i].flip).collect();
            let rate =
                config
                    .schedule
                    .rate(config.learning_rate, config.epochs, epoch, step, steps);
            let (images, target, weight) = data.batch(&items, &flips);
            let loss;
            (unet, loss) = trainer.step(unet, &images, &target, &weight, config.dice_loss, rate)?;
            loss_sum += f64::from(loss) * items.len() as f64;
            seen += items.len();
            progress(items.len() as u64);
        }
        unet = trainer.model(unet);
        let model = unet.clone().valid();
        let (validation_loss, sums) = evaluate(&model, data, validation, config.threshold)?;
        let dice = sums.scores().pooled_dice;
        let seconds = start.elapsed().as_secs_f64();
        history.push(SegEpoch {
            round: config.round,
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            validation_loss,
            validation_dice: dice,
            seconds,
            images_per_second: seen as f64 / seconds.max(1e-9),
        });
        tracing::info!(
            "round {} epoch {}/{}: train loss {:.4} | val loss {:.4} Dice {} | {:.1} s",
            config.round,
            epoch + 1,
            config.epochs,
            loss_sum / seen.max(1) as f64,
            validation_loss,
            dice.map_or_else(|| "–".into(), |d| format!("{d:.3}")),
            seconds
        );
        let score = dice.unwrap_or(0.0);
        let so_far = best.as_ref().map(|(d, l, _)| (*d, *l));
        if replaces_best(so_far, score, validation_loss, !validation.is_empty()) {
            best = Some((score, validation_loss, model));
        }
    }
    Ok(best.map(|(_, _, m)| m).unwrap_or_else(|| unet.valid()))
}

/// Whether an epoch with validation Dice `score` and loss `loss` replaces the best so far (`best`: its Dice and
/// loss): a higher Dice, or the same Dice at a lower loss. Without validation images every epoch replaces it, so
/// the round ends with its last epoch (under the cosine schedule, the one at the lowest learning rate).
fn replaces_best(best: Option<(f64, f64)>, score: f64, loss: f64, validated: bool) -> bool {
    !validated || best.is_none_or(|(d, l)| score > d || (score == d && loss < l))
}

/// How a segmentation run turns a U-Net's output into a mask.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskRule {
    /// Probability at which a pixel becomes tumour.
    pub threshold: f32,
    /// Average the logits of each image and of its mirror image (the flip the U-Net was trained with).
    #[serde(default, rename = "flip_tta")]
    pub flip: bool,
    /// When a mask the gate lets through comes out empty, keep the pixels at or above half the image's highest
    /// probability instead (largest component, holes filled): the classifier called the image a tumour, so the
    /// mask shows where the U-Net finds one most likely rather than nothing.
    #[serde(default)]
    pub never_empty: bool,
    /// Expectation–maximisation steps reshaping a non-empty tumour mask by the image's grey levels
    /// ([`image_mask`]), as a pseudo-mask recipe's `appearance:N` does with a CAM (0: the U-Net's probabilities
    /// as they are). Runs saved before the setting existed read as 0.
    #[serde(default)]
    pub refine: u32,
    /// Check each tumour mask against the mask the run's pseudo-mask recipe makes of the same image, and keep the
    /// one the classifier confirms ([`crate::pseudo::masker::Masker::confirm`]). Runs saved before the setting
    /// existed read as `false`.
    #[serde(default)]
    pub confirm: bool,
}

impl MaskRule {
    /// A plain threshold: no flip, no refinement, empty masks stay empty, no check.
    pub fn threshold(threshold: f32) -> Self {
        MaskRule {
            threshold,
            flip: false,
            never_empty: false,
            refine: 0,
            confirm: false,
        }
    }
}

/// Mask logits (`side`×`side` each) of `images` with a U-Net in inference mode, in batches; with `flip`, the
/// mean of the logits of each image and (mirrored back) of its mirror image.
pub fn predict_logits(
    unet: &UNet,
    images: &[RgbImage],
    batch_size: usize,
    flip: bool,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let device = crate::device::inference();
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch_size.max(1)) {
        let x = images_to_tensor(chunk, &device)
            .map_err(|e| InferenceError::Readback(e.to_string()))?;
        let [_, _, h, w] = x.dims();
        let logits = if flip {
            let mirrored = unet.forward(x.clone().flip([3])).flip([3]);
            (unet.forward(x) + mirrored).div_scalar(2.0)
        } else {
            unet.forward(x)
        };
        let logits = values(logits)?; // [B, 1, H, W]
        out.extend(logits.chunks(h * w).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// The binary mask of logits by `rule`, emptied when `tumour` is false; with `cleanup`, the largest component
/// with its holes filled. `rule.never_empty` applies to tumour masks only.
pub fn logits_to_mask(
    logits: &[f32],
    side: usize,
    rule: &MaskRule,
    tumour: bool,
    cleanup: bool,
) -> Vec<bool> {
    if !tumour {
        return vec![false; logits.len()];
    }
    let level = logit(rule.threshold);
    let mut mask: Vec<bool> = logits.iter().map(|z| *z >= level).collect();
    if cleanup {
        keep_largest_filled(&mut mask, side, side);
    }
    if rule.never_empty && !mask.contains(&true) {
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if top.is_finite() {
            let half = logit(0.5 * probability(top));
            mask = logits.iter().map(|z| *z >= half).collect();
            keep_largest_filled(&mut mask, side, side);
        }
    }
    mask
}

/// The mask a segmentation run gives `image` (`side`×`side`, the U-Net's input) from its `logits` by `rule`,
/// emptied when `tumour` is false, its largest component with holes filled. With `rule.refine > 0` a non-empty
/// mask is reshaped by the image: the U-Net's probabilities, as they are, are the prior of the appearance
/// refinement ([`crate::cam::refine`]) inside the head, and the refined posterior is thresholded instead — the
/// U-Net says where the lesion lies, the image's grey levels which pixels belong to it. A mask the U-Net leaves
/// empty stays empty (unless `rule.never_empty`), and one the refinement would empty keeps the U-Net's shape.
pub fn image_mask(logits: &[f32], image: &RgbImage, rule: &MaskRule, tumour: bool) -> Vec<bool> {
    let side = image.width() as usize;
    let plain = logits_to_mask(logits, side, rule, tumour, true);
    if rule.refine == 0 || !plain.contains(&true) {
        return plain;
    }
    let gray = image::imageops::grayscale(image).into_raw();
    let head = crate::cam::pseudo::head_mask(&gray, side, image.height() as usize);
    let prior: Vec<f32> = logits.iter().map(|z| probability(*z)).collect();
    let posterior =
        crate::cam::refine::posterior_of_probabilities(&prior, &gray, Some(&head), rule.refine);
    let refined: Vec<f32> = posterior.iter().map(|q| logit(*q)).collect();
    let refined = logits_to_mask(&refined, side, rule, tumour, true);
    match refined.contains(&true) {
        true => refined,
        false => plain,
    }
}

/// The logit of probability `p`.
fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// The probability of logit `z`.
pub fn probability(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean loss-relevant BCE (over the counted pixels) and the counts of `items` against their targets.
fn evaluate(
    unet: &UNet,
    data: &SegData,
    items: &[usize],
    threshold: f32,
) -> anyhow::Result<(f64, SegmentationSums)> {
    let images: Vec<RgbImage> = items.iter().map(|i| data.images[*i].clone()).collect();
    let logits = predict_logits(unet, &images, 32, false)?;
    let mut sums = SegmentationSums::default();
    for (i, z) in items.iter().zip(&logits) {
        let (sum, pixels, counts) = score_logits(z, &data.targets[*i], data.side, threshold);
        sums.add_counts(&counts, Some((sum, pixels)));
    }
    let bce = sums.scores().bce.unwrap_or(f64::NAN);
    Ok((bce, sums))
}

/// BCE sum, counted pixels and mask counts of logits against a stored target (ignore pixels skipped).
pub fn score_logits(
    logits: &[f32],
    target: &[u8],
    side: usize,
    threshold: f32,
) -> (f64, u64, MaskCounts) {
    let predicted = logits_to_mask(logits, side, &MaskRule::threshold(threshold), true, false);
    let reference: Vec<bool> = target.iter().map(|v| *v > IGNORE).collect();
    let ignore: Vec<bool> = target.iter().map(|v| *v == IGNORE).collect();
    let counts = MaskCounts::from_masks(&predicted, &reference, Some(&ignore));
    let (mut sum, mut pixels) = (0.0, 0u64);
    for ((z, r), skip) in logits.iter().zip(&reference).zip(&ignore) {
        if !skip {
            sum += bce_with_logits(*z, if *r { 1.0 } else { 0.0 });
            pixels += 1;
        }
    }
    (sum, pixels, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_saved_with_a_nan_loss_reads_back() {
        let epoch = SegEpoch {
            round: 1,
            epoch: 1,
            train_loss: 0.5,
            validation_loss: f64::NAN,
            validation_dice: None,
            seconds: 1.0,
            images_per_second: f64::INFINITY,
        };
        let text = serde_json::to_string(&epoch).expect("json");
        let back: SegEpoch = serde_json::from_str(&text).expect("reads back");
        assert!(back.validation_loss.is_nan() && back.images_per_second.is_nan());
        assert_eq!(back.train_loss, 0.5);
    }

    #[test]
    fn the_best_epoch_is_the_best_validated_one_or_without_validation_the_last() {
        assert!(replaces_best(None, 0.0, f64::NAN, true));
        assert!(replaces_best(Some((0.5, 0.2)), 0.6, 0.9, true));
        assert!(replaces_best(Some((0.5, 0.2)), 0.5, 0.1, true));
        assert!(!replaces_best(Some((0.5, 0.2)), 0.5, 0.3, true));
        assert!(!replaces_best(Some((0.5, 0.2)), 0.4, 0.1, true));
        // No validation images: Dice reads 0 and the loss NaN for every epoch, and each later epoch wins.
        assert!(replaces_best(Some((0.0, f64::NAN)), 0.0, f64::NAN, false));
        assert!(!replaces_best(Some((0.0, f64::NAN)), 0.0, f64::NAN, true));
    }

    #[test]
    fn the_cosine_schedule_starts_at_the_rate_and_ends_at_one_percent() {
        let cosine = Schedule::Cosine;
        assert!((cosine.rate(1e-3, 6, 0, 0, 10) - 1e-3).abs() < 1e-15);
        let last = cosine.rate(1e-3, 6, 5, 9, 10);
        // The last step is 59 of 60: just above the floor.
        assert!(last > 1e-5 && last < 1.1e-5, "{last}");
        assert!((Schedule::Constant.rate(1e-3, 6, 5, 9, 10) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn the_loss_matches_hand_computed_bce_and_dice_and_skips_ignored_pixels() {
        let device = crate::device::inference();
        let shape = [1, 1, 1, 4];
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![2.0f32, -1.0, 0.0, 5.0], shape),
            &device,
        );
        let target =
            Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0], shape), &device);
        // The last pixel is ignored.
        let weight =
            Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], shape), &device);
        let loss =
            values(segmentation_loss(logits, target, weight, DiceLoss::Batch)).expect("loss")[0];
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let bce =
            (bce_with_logits(2.0, 1.0) + bce_with_logits(-1.0, 0.0) + bce_with_logits(0.0, 1.0))
                / 3.0;
        let (p, t) = ([sig(2.0), sig(-1.0), sig(0.0)], [1.0, 0.0, 1.0]);
        let intersection: f64 = p.iter().zip(t).map(|(p, t)| p * t).sum();
        let dice = 1.0 - (2.0 * intersection + 1.0) / (p.iter().sum::<f64>() + 2.0 + 1.0);
        assert!(
            (f64::from(loss) - (bce + dice)).abs() < 1e-5,
            "{loss} vs {}",
            bce + dice
        );
    }

    #[test]
    fn the_per_image_dice_averages_the_images_with_a_lesion_and_skips_empty_targets() {
        let device = crate::device::inference();
        // Three 1×4 images: a large lesion (3 pixels) found, a small one (1 pixel) missed, an empty target.
        let shape = [3, 1, 1, 4];
        let logits = [
            3.0f32, 2.0, 4.0, -1.0, 1.0, -2.0, -3.0, -4.0, -4.0, -5.0, -3.0, -4.0,
        ];
        let target = [
            1.0f32, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let tensor =
            |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device);
        let loss = |dice| {
            f64::from(
                values(segmentation_loss(
                    tensor(&logits),
                    tensor(&target),
                    tensor(&[1.0; 12]),
                    dice,
                ))
                .expect("loss")[0],
            )
        };
        let bce = logits
            .iter()
            .zip(target)
            .map(|(z, t)| bce_with_logits(*z, t))
            .sum::<f64>()
            / 12.0;
        let dice_of = |range: std::ops::Range<usize>| {
            let (mut i, mut p, mut t) = (0.0, 0.0, 0.0);
            for k in range {
                let q = f64::from(probability(logits[k]));
                i += q * f64::from(target[k]);
                p += q;
                t += f64::from(target[k]);
            }
            1.0 - (2.0 * i + 1.0) / (p + t + 1.0)
        };
        let per_image = (dice_of(0..4) + dice_of(4..8)) / 2.0;
        let batch = dice_of(0..12);
        assert!((loss(DiceLoss::PerImage) - (bce + per_image)).abs() < 1e-5);
        assert!((loss(DiceLoss::Batch) - (bce + batch)).abs() < 1e-5);
        // The missed small lesion weighs half of the per-image term, a quarter of the batch term's lesion pixels.
        assert!(per_image > batch + 0.05, "{per_image} vs {batch}");
    }

    #[test]
    fn masks_from_logits_follow_the_threshold_and_the_gate() {
        let logits = [-3.0f32, 0.1, 2.0, -0.1];
        let at = MaskRule::threshold;
        assert_eq!(
            logits_to_mask(&logits, 2, &at(0.5), true, false),
            vec![false, true, true, false]
        );
        // p ≥ 0.9 ⇔ z ≥ ln 9 ≈ 2.197.
        assert_eq!(
            logits_to_mask(&logits, 2, &at(0.9), true, false),
            vec![false; 4]
        );
        assert_eq!(
            logits_to_mask(&logits, 2, &at(0.5), false, false),
            vec![false; 4]
        );
    }

    #[test]
    fn a_refined_mask_moves_onto_the_lesion_and_respects_the_gate() {
        // The refinement module's scene, as an image with U-Net logits whose probabilities are its map.
        let (map, gray, lesion) = crate::cam::refine::tests::scene();
        let side = 40usize;
        let image = RgbImage::from_fn(side as u32, side as u32, |x, y| {
            image::Rgb([gray[y as usize * side + x as usize]; 3])
        });
        let logits: Vec<f32> = map.iter().map(|m| logit(0.01 + 0.98 * m)).collect();
        let plain = MaskRule::threshold(0.5);
        assert_eq!(
            image_mask(&logits, &image, &plain, true),
            logits_to_mask(&logits, side, &plain, true, true)
        );
        let refined = MaskRule {
            refine: 10,
            ..plain
        };
        let dice = crate::cam::refine::tests::dice;
        let before = dice(&image_mask(&logits, &image, &plain, true), &lesion);
        let after = dice(&image_mask(&logits, &image, &refined, true), &lesion);
        assert!(after > before + 0.1, "refined {after} vs plain {before}");
        assert!(!image_mask(&logits, &image, &refined, false).contains(&true));
        // Refinement reshapes a mask; it does not make one where the U-Net found nothing.
        let faint: Vec<f32> = map.iter().map(|m| logit(0.01 + 0.3 * m)).collect();
        assert!(!image_mask(&faint, &image, &refined, true).contains(&true));
        let never_empty = MaskRule {
            never_empty: true,
            ..refined
        };
        assert!(image_mask(&faint, &image, &never_empty, true).contains(&true));
    }

    #[test]
    fn never_empty_keeps_the_most_likely_region_of_a_tumour_mask_that_came_out_empty() {
        // 4×4 logits: one blob of p ≈ 0.3 (z = −0.85) at the top left, a lone pixel of p ≈ 0.2 (z = −1.39)
        // at the bottom right, the rest p ≈ 0.05 (z = −2.94). Half the top probability is 0.15 (z = −1.73).
        let mut logits = vec![-2.94f32; 16];
        for i in [0, 1, 4, 5] {
            logits[i] = -0.85;
        }
        logits[15] = -1.39;
        let rule = MaskRule {
            never_empty: true,
            ..MaskRule::threshold(0.5)
        };
        let mask = logits_to_mask(&logits, 4, &rule, true, true);
        let kept: Vec<usize> = (0..16).filter(|i| mask[*i]).collect();
        // Both regions pass half the top probability; the largest component (the blob) is kept.
        assert_eq!(kept, vec![0, 1, 4, 5]);
        // Off, or gated to no tumour, or with a mask that is not empty: the rule changes nothing.
        assert!(!logits_to_mask(&logits, 4, &MaskRule::threshold(0.5), true, true).contains(&true));
        assert!(!logits_to_mask(&logits, 4, &rule, false, true).contains(&true));
        let low = MaskRule {
            never_empty: true,
            ..MaskRule::threshold(0.25)
        };
        assert_eq!(
            logits_to_mask(&logits, 4, &low, true, true),
            logits_to_mask(&logits, 4, &MaskRule::threshold(0.25), true, true)
        );
    }

    #[test]
    fn the_flip_prediction_averages_both_views_and_is_mirror_symmetric() {
        let device = crate::device::inference();
        device.seed(3);
        let unet = UNet::new(crate::model::ResNet18::new(4, &device), &device);
        let side = 64usize;
        let image = RgbImage::from_fn(side as u32, side as u32, |x, y| {
            let v = ((x * 7 + y * 13 + x * y) % 251) as u8;
            image::Rgb([v, v / 2 + x as u8, 255 - v])
        });
        let mirror = |z: &[f32]| -> Vec<f32> {
            (0..side * side)
                .map(|i| z[(i / side) * side + side - 1 - i % side])
                .collect()
        };
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-4);
        let plain = predict_logits(&unet, std::slice::from_ref(&image), 1, false).expect("plain");
        let flipped = hflip(&image);
        let plain_flipped =
            predict_logits(&unet, std::slice::from_ref(&flipped), 1, false).expect("mirrored");
        let tta = predict_logits(&unet, std::slice::from_ref(&image), 1, true).expect("tta");
        let mean: Vec<f32> = plain[0]
            .iter()
            .zip(mirror(&plain_flipped[0]))
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        assert!(close(&tta[0], &mean));
        // The plain U-Net is not mirror-symmetric; with the flip its masks of a mirrored image are the mirrored masks.
        assert!(!close(&plain_flipped[0], &mirror(&plain[0])));
        let tta_flipped = predict_logits(&unet, &[flipped], 1, true).expect("tta mirrored");
        assert!(close(&tta_flipped[0], &mirror(&tta[0])));
    }
}
