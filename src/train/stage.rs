//! One training stage: epochs of shuffled, mirrored-at-random batches, validation after each epoch, the best
//! epoch's weights kept. What a step computes is given by the caller, so the same loop serves the cached
//! (`baseline`, `finetune`) and uncached (`full`) stages.

use super::config::{OptimizerKind, RandomErasing, RandomResize, StageConfig};
use super::history::EpochRecord;
use crate::data::preprocess::EraseBox;
use crate::model::inference::{values, InferenceError};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Instant;

/// The optimizer a stage asks for, with PyTorch's defaults where burn's differ (Adam ε = 1e-8, SGD momentum
/// without dampening).
pub fn optimizer(config: &StageConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0),
            ))
            .with_weight_decay(decay)
            .init(),
    }
}

/// Loss and accuracy of a pass over data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub loss: f64,
    pub accuracy: f64,
}

/// How one training image is altered in one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Mirrored left–right (`RandomHorizontalFlip(p=0.5)`).
    pub flip: bool,
    /// Blacked out there ([`RandomErasing`]), when the stage erases.
    pub erase: Option<EraseBox>,
    /// Resized to this side ([`RandomResize`]), when the stage resizes; one side for a whole batch.
    pub side: Option<u32>,
}

/// The draws of one epoch: the order of the training images and how each is altered. Named streams, so an
/// epoch's draws do not depend on earlier epochs, and the flips do not depend on whether the stage erases.
pub fn epoch_draws(
    seed: u64,
    stage: u64,
    epoch: usize,
    count: usize,
    erasing: Option<&RandomErasing>,
) -> (Vec<usize>, Vec<Augment>) {
    let ids = [stage, epoch as u64];
    let mut order: Vec<usize> = (0..count).collect();
    order.shuffle(&mut crate::rng::stream(seed, "shuffle", &ids));
    let mut flips = crate::rng::stream(seed, "augment", &ids);
    let mut erases = crate::rng::stream(seed, "erase", &ids);
    let augments = (0..count)
        .map(|_| Augment {
            flip: flips.random_bool(0.5),
            erase: erasing.and_then(|e| e.draw(&mut erases)),
            side: None,
        })
        .collect();
    (order, augments)
}

/// One side per batch of `order` (every image of a batch gets it, so that the batch stacks into one tensor),
/// drawn by the seed's `resize` stream: an epoch's sides do not depend on its flips or erasures.
pub fn draw_sides(
    resize: &RandomResize,
    seed: u64,
    stage: u64,
    epoch: usize,
    order: &[usize],
    batch_size: usize,
    augments: &mut [Augment],
) {
    let mut sides = crate::rng::stream(seed, "resize", &[stage, epoch as u64]);
    for batch in order.chunks(batch_size.max(1)) {
        let side = resize.draw(&mut sides);
        for i in batch {
            augments[*i].side = Some(side);
        }
    }
}

/// Cross-entropy loss (`[1]`) and the number of correct predictions (`[1]`) of a batch of logits, both left on
/// the device: reading either back waits for the computation, so callers add them up and read once per pass.
pub fn loss_and_correct(
    logits: Tensor<2>,
    labels: &[usize],
    device: &Device,
) -> (Tensor<1>, Tensor<1, Int>) {
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|l| *l as i64).collect::<Vec<_>>(),
            [labels.len()],
        ),
        device,
    );
    let predicted = logits.clone().argmax(1).flatten::<1>(0, 1); // [B]
    let correct = predicted.equal(targets.clone()).int().sum();
    let loss = CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits, targets); // [1]
    (loss, correct)
}

/// Loss and correct-count totals of a pass, summed on the device and read once at the end: a read per batch
/// would make a GPU wait every step.
#[derive(Default)]
pub struct PassTotals {
    totals: Option<(Tensor<1>, Tensor<1, Int>)>,
}

impl PassTotals {
    /// Add a batch's mean loss (weighted by its `size`) and correct count, as [`loss_and_correct`] gives them.
    pub fn add(&mut self, loss: Tensor<1>, correct: Tensor<1, Int>, size: usize) {
        let loss = loss.detach().mul_scalar(size as f32);
        self.totals = Some(match self.totals.take() {
            Some((l, c)) => (l + loss, c + correct),
            None => (loss, correct),
        });
    }

    /// The summed (size-weighted) loss and the number correct.
    pub fn read(self) -> Result<(f64, usize), InferenceError> {
        Ok(match self.totals {
            Some((loss, correct)) => (
                f64::from(values(loss)?.first().copied().unwrap_or(f32::NAN)),
                correct.into_scalar::<i64>().max(0) as usize,
            ),
            None => (0.0, 0),
        })
    }
}

/// Whether `deadline` (if any) has passed.
pub fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Logits of a training batch: (model, image indices, their alterations) → `[B, classes]` on the autodiff
/// device.
pub type BatchForward<'a, M> =
    &'a dyn Fn(&M, &[usize], &[Augment]) -> Result<Tensor<2>, InferenceError>;

/// What a stage needs from its caller.
pub struct StageSteps<'a, M> {
    /// Training images (indices into whatever the closures read).
    pub train_count: usize,
    pub train_labels: &'a [usize],
    pub forward: BatchForward<'a, M>,
    /// Random erasing of the training images (only for a `forward` that reads images, not cached features).
    pub erasing: Option<RandomErasing>,
    /// Random resizing of the training batches (likewise only for a `forward` that reads images).
    pub resize: Option<RandomResize>,
    /// Validation loss and accuracy of the model (in inference mode).
    pub validate: &'a dyn Fn(&M) -> Result<Score, InferenceError>,
    /// No epoch starts after this instant (`train --time-limit`); the stage keeps its best epoch so far.
    pub deadline: Option<Instant>,
}

/// Where a stage starts: from scratch, or from a checkpoint after `epochs_done` epochs.
pub struct StageStart<M> {
    pub epochs_done: usize,
    /// Best validation score so far and that epoch's model (inference mode).
    pub best: Option<(Score, M)>,
    pub optimizer: ModuleOptimizer,
}

impl<M> StageStart<M> {
    pub fn fresh(config: &StageConfig) -> StageStart<M> {
        StageStart {
            epochs_done: 0,
            best: None,
            optimizer: optimizer(config),
        }
    }
}

/// What a stage shows its caller after each epoch (to write a checkpoint).
pub struct EpochEnd<'a, M> {
    pub epochs_done: usize,
    pub model: &'a M,
    pub best: &'a (Score, M),
    pub optimizer: &'a ModuleOptimizer,
    pub history: &'a [EpochRecord],
}

/// Run one stage from `model`; returns the best validation epoch's model (highest accuracy, then lowest loss)
/// in inference mode, and appends one record per epoch to `history`.
///
/// The snapshot is taken with `clone().valid()`, not `clone()`: a burn module's clones share their BatchNorm
/// running statistics, so a plain clone would keep following the training after its epoch.
#[allow(clippy::too_many_arguments)]
pub fn run_stage<M: Module + Clone>(
    mut model: M,
    config: &StageConfig,
    steps: &StageSteps<'_, M>,
    batch_size: usize,
    seed: u64,
    device: &Device,
    history: &mut Vec<EpochRecord>,
    progress: &dyn Fn(u64),
    start_from: StageStart<M>,
    on_epoch: &mut dyn FnMut(EpochEnd<'_, M>) -> anyhow::Result<()>,
) -> anyhow::Result<M> {
    let StageStart {
        epochs_done,
        mut best,
        optimizer: mut optim,
    } = start_from;
    let batch_size = batch_size.max(1);
    let steps_per_epoch = steps.train_count.div_ceil(batch_size);
    progress((epochs_done * steps.train_count) as u64);
    for epoch in epochs_done..config.epochs {
        if past(steps.deadline) {
            tracing::warn!(
                "time limit reached: stage {} stops after {epoch} of {} epochs",
                config.stage.name(),
                config.epochs
            );
            break;
        }
        let start = Instant::now();
        let stage = config.stage.index();
        let (order, mut augments) = epoch_draws(
            seed,
            stage,
            epoch,
            steps.train_count,
            steps.erasing.as_ref(),
        );
        if let Some(resize) = &steps.resize {
            draw_sides(
                resize,
                seed,
                stage,
                epoch,
                &order,
                batch_size,
                &mut augments,
            );
        }
        let mut totals = PassTotals::default();
        let mut seen = 0usize;
        let mut learning_rate = config.learning_rate;
        for (step, batch) in order.chunks(batch_size).enumerate() {
            learning_rate = config.learning_rate_at(epoch, step, steps_per_epoch);
            let alter: Vec<Augment> = batch.iter().map(|i| augments[*i]).collect();
            let labels: Vec<usize> = batch.iter().map(|i| steps.train_labels[*i]).collect();
            let logits = (steps.forward)(&model, batch, &alter)?; // [B, classes]
            let (loss, batch_correct) = loss_and_correct(logits, &labels, device);
            totals.add(loss.clone(), batch_correct, batch.len());
            seen += batch.len();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(learning_rate, model, grads);
            progress(batch.len() as u64);
        }
        let (loss_sum, correct) = totals.read()?;
        let score = (steps.validate)(&model)?;
        let seconds = start.elapsed().as_secs_f64();
        history.push(EpochRecord {
            stage: config.stage.name().into(),
            epoch: epoch + 1,
            learning_rate,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            validation_loss: score.loss,
            validation_accuracy: score.accuracy,
            seconds,
            images_per_second: seen as f64 / seconds.max(1e-9),
        });
        tracing::info!(
            "{} epoch {}/{}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | {:.1} s",
            config.stage.name(),
            epoch + 1,
            config.epochs,
            loss_sum / seen.max(1) as f64,
            correct as f64 / seen.max(1) as f64,
            score.loss,
            score.accuracy,
            seconds
        );
        let better = match &best {
            None => true,
            Some((b, _)) => {
                score.accuracy > b.accuracy || (score.accuracy == b.accuracy && score.loss < b.loss)
            }
        };
        if better {
            best = Some((score, model.clone().valid()));
        }
        if let Some(best) = &best {
            on_epoch(EpochEnd {
                epochs_done: epoch + 1,
                model: &model,
                best,
                optimizer: &optim,
                history,
            })?;
        }
    }
    Ok(best.map(|(_, m)| m).unwrap_or_else(|| model.valid()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{Schedule, Stage};
    use burn::nn::{Linear, LinearConfig};
    use std::cell::Cell;
    use std::time::Duration;

    /// Epochs run with `deadline`; each batch's forward pass first waits until `busy_until` (if any) has passed.
    fn run_with(deadline: Option<Instant>, busy_until: Option<Instant>) -> usize {
        let device = crate::device::training();
        let model = LinearConfig::new(2, 4).init(&device);
        let config = StageConfig {
            stage: Stage::Baseline,
            epochs: 3,
            optimizer: OptimizerKind::Adam,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: Schedule::Cosine,
        };
        let labels = vec![0usize, 1, 2, 3];
        let forward = |m: &Linear, items: &[usize], _: &[Augment]| {
            while busy_until.is_some_and(|t| Instant::now() < t) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(m.forward(Tensor::<2>::ones([items.len(), 2], &device)))
        };
        let validate = |_: &Linear| {
            Ok(Score {
                loss: 1.0,
                accuracy: 0.25,
            })
        };
        let steps = StageSteps {
            train_count: labels.len(),
            train_labels: &labels,
            forward: &forward,
            erasing: None,
            resize: None,
            validate: &validate,
            deadline,
        };
        let mut history = Vec::new();
        let ends = Cell::new(0usize);
        run_stage(
            model,
            &config,
            &steps,
            2,
            0,
            &device,
            &mut history,
            &|_| {},
            StageStart::fresh(&config),
            &mut |_| {
                ends.set(ends.get() + 1);
                Ok(())
            },
        )
        .expect("stage");
        assert_eq!(history.len(), ends.get());
        history.len()
    }

    #[test]
    fn erasing_leaves_order_and_flips_as_they_were() {
        let erasing = RandomErasing::torchvision(0.5);
        let (order, plain) = epoch_draws(7, 2, 3, 200, None);
        let (order_e, erased) = epoch_draws(7, 2, 3, 200, Some(&erasing));
        assert_eq!(order, order_e);
        assert!(plain.iter().zip(&erased).all(|(p, e)| p.flip == e.flip));
        assert!(plain.iter().all(|p| p.erase.is_none()));
        let boxes = erased.iter().filter(|e| e.erase.is_some()).count();
        assert!((70..130).contains(&boxes), "{boxes} of 200");
        // Another epoch erases other images.
        let (_, next) = epoch_draws(7, 2, 4, 200, Some(&erasing));
        assert_ne!(erased, next);
    }

    #[test]
    fn random_resize_gives_each_batch_one_side_in_range_and_leaves_the_rest() {
        let resize = RandomResize {
            min_side: 128,
            max_side: 224,
        };
        let draws = |epoch| {
            let (order, mut augments) = epoch_draws(7, 2, epoch, 100, None);
            let plain = augments.clone();
            draw_sides(&resize, 7, 2, epoch, &order, 16, &mut augments);
            // Flips and erasures are untouched; every image gets a side.
            assert!(plain
                .iter()
                .zip(&augments)
                .all(|(p, a)| p.flip == a.flip && p.erase == a.erase));
            let sides: Vec<Vec<u32>> = order
                .chunks(16)
                .map(|batch| {
                    batch
                        .iter()
                        .map(|i| augments[*i].side.expect("side"))
                        .collect()
                })
                .collect();
            sides
        };
        let epoch3 = draws(3);
        assert_eq!(epoch3.len(), 7); // 100 images in batches of 16
        for batch in &epoch3 {
            assert!(batch.iter().all(|s| *s == batch[0]), "{batch:?}");
            assert!((128..=224).contains(&batch[0]), "{batch:?}");
        }
        // Reproducible for a seed, different in another epoch, spread over the range.
        assert_eq!(draws(3), epoch3);
        assert_ne!(draws(4), epoch3);
        let firsts: Vec<u32> = (0..40)
            .flat_map(|e| draws(e).into_iter().map(|b| b[0]))
            .collect();
        assert!(
            firsts.iter().any(|s| *s < 150) && firsts.iter().any(|s| *s > 200),
            "{firsts:?}"
        );
    }

    #[test]
    fn no_epoch_starts_after_the_deadline() {
        // Epoch 1 starts before the deadline (two seconds ahead: far more than a tiny model's set-up takes, even on
        // a loaded machine) and its batches run until the deadline has passed: epochs 2 and 3 never start.
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(run_with(Some(deadline), Some(deadline)), 1);
        // A deadline already passed: nothing runs. No deadline: every epoch runs.
        assert_eq!(run_with(Some(Instant::now()), None), 0);
        assert_eq!(run_with(None, None), 3);
    }
}
