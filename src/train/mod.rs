//! The seed protocol, fast by design: decode once, cache what frozen layers compute, train what learns.
//!
//! * `baseline` (fc learns): layer3 maps of every training image and its mirror are computed once with the
//!   frozen backbone, then pooled layer4 features once; an epoch is 512→4 logistic regression on those.
//! * `finetune` (layer4 + fc learn): an epoch runs layer4 + fc on the cached layer3 maps.
//! * `full` (everything learns): images from memory, mirrored on the fly.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod decoder;
pub mod history;
pub mod hyper;
pub mod segmentation;
pub mod segrun;
pub mod stage;
pub mod unet_config;

use crate::data::batcher::images_to_tensor;
use crate::model::classifier::Trainable;
use crate::model::inference::{values, InferenceError};
use crate::model::ResNet18;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use cache::FeatureCache;
use checkpoint::{CompletedStage, CurrentStage, ProtocolState};
use config::{Stage, StageConfig, TrainConfig};
use data::Prepared;
use history::EpochRecord;
use stage::{loss_and_correct, run_stage, Augment, Score, StageStart, StageSteps};

/// Test-set predictions of one model (scored by `metrics::report`).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub labels: Vec<usize>,
    pub probabilities: Vec<Vec<f32>>,
}

/// Everything the protocol needs, prepared once.
pub struct TrainingData {
    pub train: Prepared,
    pub validation: Prepared,
    pub test: Prepared,
}

/// One finished stage.
pub struct StageOutcome {
    pub config: StageConfig,
    /// Best-validation model, inference mode.
    pub model: ResNet18,
    pub test: Option<Evaluation>,
    pub seconds: f64,
}

/// Progress callbacks: (phase name, total units) when a phase starts, then units done.
pub trait Progress {
    fn phase(&self, name: &str, total: u64);
    fn advance(&self, units: u64);
}

/// Where checkpoints go and what to resume from.
pub struct Checkpointing<'a> {
    /// The run folder (`checkpoint/` and `<stage>/` are written inside).
    pub run: &'a std::path::Path,
    /// A saved state to continue from (`--resume`).
    pub resume: Option<ProtocolState>,
    /// Where the starting weights came from (recorded in the state).
    pub weights_origin: crate::model::run::WeightsOrigin,
    /// Called after each epoch's checkpoint is written (tests use it to interrupt a run).
    pub after_epoch: &'a mut dyn FnMut(&str, usize) -> anyhow::Result<()>,
    /// No epoch starts after this instant (`train --time-limit`): the running stage keeps its best epoch so far
    /// and later stages are skipped, then the run finishes as usual (test evaluation, figures, model).
    pub deadline: Option<std::time::Instant>,
}

/// Run every stage of `config` from `model` (on the training device), writing a checkpoint after every epoch.
/// `on_stage` sees each finished stage (to write its run folder) before the next begins.
pub fn run_protocol(
    model: ResNet18,
    config: &TrainConfig,
    data: &TrainingData,
    progress: &dyn Progress,
    history: &mut Vec<EpochRecord>,
    checkpointing: Checkpointing<'_>,
    on_stage: &mut dyn FnMut(&StageOutcome) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<StageOutcome>> {
    let train_device = crate::device::training();
    let infer_device = crate::device::inference();
    let batch = config.batch_size.max(1);
    let run = checkpointing.run;
    let after_epoch = checkpointing.after_epoch;
    let deadline = checkpointing.deadline;
    let mut state = checkpointing.resume.unwrap_or_else(|| ProtocolState {
        config: config.clone(),
        weights_origin: checkpointing.weights_origin.clone(),
        recalibrated: false,
        completed: Vec::new(),
        current: None,
        history: Vec::new(),
    });
    *history = state.history.clone();
    let mut model = model;
    let fresh_start = state.completed.is_empty() && state.current.is_none();
    if config.recalibrate_batch_norm
        && fresh_start
        && config.stages.iter().any(|s| s.stage != Stage::Full)
    {
        progress.phase("recalibrate", data.train.len() as u64);
        model = recalibrate_batch_norm(model, &data.train, batch, &train_device, progress)?;
        state.recalibrated = true;
    }
    // The frozen prefix (conv1 … layer3) is the same for baseline and finetune: cache its output once.
    let mut layer3: Option<(FeatureCache, FeatureCache, FeatureCache)> = None;
    let mut outcomes = Vec::new();
    for stage_config in &config.stages {
        let name = stage_config.stage.name();
        if let Some(done) = state.completed.iter().find(|c| c.stage == name).cloned() {
            // Finished before the interruption: its model is in RUN/<stage>/.
            let path = run.join(name).join(crate::model::run::MODEL_FILE);
            let (loaded, _) = crate::model::weights::load_torchvision(
                ResNet18::new(model.num_classes(), &train_device),
                &path,
            )?;
            let best = loaded.clone().valid();
            let test = (!done.test_labels.is_empty()).then(|| Evaluation {
                labels: done.test_labels.clone(),
                probabilities: done.test_probabilities.clone(),
            });
            outcomes.push(StageOutcome {
                config: stage_config.clone(),
                model: best,
                test,
                seconds: done.seconds,
            });
            model = loaded;
            continue;
        }
        let current = state.current.take().filter(|c| c.stage == name);
        if current.is_none() && stage::past(deadline) {
            tracing::warn!("time limit reached: stage {name} and any after it are skipped");
            break;
        }
        let previous_seconds = current.as_ref().map_or(0.0, |c| c.seconds_so_far);
        let start = std::time::Instant::now();
        // Resuming inside this stage: the learner and the best model so far come from the checkpoint.
        let mut resumed_best: Option<(Score, ResNet18)> = None;
        if let Some(c) = &current {
            let folder = run.join(checkpoint::CHECKPOINT_DIR).join(&c.folder);
            checkpoint::verify_folder(&folder, &c.checksums)?;
            let classes = model.num_classes();
            let load = |file: &str| {
                crate::model::weights::load_torchvision(
                    ResNet18::new(classes, &train_device),
                    &folder.join(file),
                )
                .map(|(m, _)| m)
            };
            model = load("learner.safetensors")?;
            if let Some(score) = c.best_score() {
                resumed_best = Some((score, load("best.safetensors")?.valid()));
            }
        }
        let needs_cache = stage_config.stage != Stage::Full;
        if needs_cache && layer3.is_none() {
            let frozen = model.clone().valid();
            let total = (2 * data.train.len() + data.validation.len() + data.test.len()) as u64;
            progress.phase("cache layer3", total);
            let advance = |n| progress.advance(n);
            layer3 = Some((
                cache::layer3_maps(&frozen, &data.train, true, batch, &infer_device, &advance)?,
                cache::layer3_maps(
                    &frozen,
                    &data.validation,
                    false,
                    batch,
                    &infer_device,
                    &advance,
                )?,
                cache::layer3_maps(&frozen, &data.test, false, batch, &infer_device, &advance)?,
            ));
        }
        progress.phase(name, (stage_config.epochs * data.train.len()) as u64);
        let advance = |n| progress.advance(n);
        let optimizer_state = |c: &CurrentStage| -> anyhow::Result<burn::optim::ModuleOptimizer> {
            let path = run
                .join(checkpoint::CHECKPOINT_DIR)
                .join(&c.folder)
                .join("optimizer.bpk");
            stage::optimizer(stage_config)
                .load(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))
        };
        // Write one epoch's checkpoint: the learner and best as full networks, optimizer, ids; then the state.
        let mut save_epoch = |epochs_done: usize,
                              learner: &ResNet18,
                              best: &(Score, ResNet18),
                              optimizer: &burn::optim::ModuleOptimizer,
                              ids: Vec<u64>,
                              records: &[EpochRecord]|
         -> anyhow::Result<()> {
            let (folder, path) = checkpoint::epoch_folder(run, name, epochs_done)?;
            crate::model::weights::save_torchvision(
                learner,
                &path.join("learner.safetensors"),
                &[],
            )?;
            crate::model::weights::save_torchvision(&best.1, &path.join("best.safetensors"), &[])?;
            optimizer
                .save(path.join("optimizer.bpk"))
                .map_err(|e| anyhow::anyhow!("saving the optimizer: {e:?}"))?;
            let checksums = checkpoint::checksum_folder(&path)?;
            state.current = Some(CurrentStage {
                stage: name.to_string(),
                epochs_done,
                best: Some((best.0.accuracy, best.0.loss)),
                folder,
                parameter_ids: ids,
                seconds_so_far: previous_seconds + start.elapsed().as_secs_f64(),
                checksums,
            });
            state.history = records.to_vec();
            checkpoint::write_state(run, &state)?;
            after_epoch(name, epochs_done)
        };
        let best = match stage_config.stage {
            Stage::Baseline => {
                let (train3, val3, _) = layer3
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("the layer3 cache was not built"))?;
                let frozen = model.clone().valid();
                let train_pooled =
                    cache::pooled_from_layer3(&frozen, train3, batch, &infer_device)?;
                let val_pooled = cache::pooled_from_layer3(&frozen, val3, batch, &infer_device)?;
                let forward = |fc: &burn::nn::Linear, items: &[usize], alter: &[Augment]| {
                    let ids: Vec<usize> = items
                        .iter()
                        .zip(alter)
                        .map(|(i, a)| train_pooled.item(*i, a.flip))
                        .collect();
                    Ok(fc.forward(train_pooled.vectors(&ids, &train_device))) // [B, classes]
                };
                let validate = |fc: &burn::nn::Linear| {
                    let fc = fc.clone().valid();
                    score_batches(&data.validation.labels, batch, &infer_device, &|ids| {
                        Ok(fc.forward(val_pooled.vectors(ids, &infer_device)))
                    })
                };
                let steps = StageSteps {
                    train_count: data.train.len(),
                    train_labels: &data.train.labels,
                    forward: &forward,
                    erasing: None,
                    resize: None,
                    validate: &validate,
                    deadline,
                };
                let start_from = match &current {
                    Some(c) => StageStart {
                        epochs_done: c.epochs_done,
                        best: resumed_best.take().map(|(s, m)| (s, m.fc)),
                        optimizer: optimizer_state(c)?,
                    },
                    None => StageStart::fresh(stage_config),
                };
                let learner = match &current {
                    Some(c) => {
                        checkpoint::assign_parameter_ids(model.fc.clone(), &c.parameter_ids)?
                    }
                    None => model.fc.clone(),
                };
                let base = model.clone();
                let mut on_epoch = |e: stage::EpochEnd<'_, burn::nn::Linear>| {
                    let mut learner = base.clone();
                    learner.fc = e.model.clone();
                    let mut best = base.clone().valid();
                    best.fc = e.best.1.clone();
                    let ids = checkpoint::parameter_ids(e.model);
                    save_epoch(
                        e.epochs_done,
                        &learner,
                        &(e.best.0, best),
                        e.optimizer,
                        ids,
                        e.history,
                    )
                };
                let fc = run_stage(
                    learner,
                    stage_config,
                    &steps,
                    batch,
                    config.seed,
                    &train_device,
                    history,
                    &advance,
                    start_from,
                    &mut on_epoch,
                )?;
                model.fc = fc.train();
                Trainable::Head.apply(model.clone()).valid()
            }
            Stage::Finetune | Stage::Full => {
                let policy = if stage_config.stage == Stage::Finetune {
                    Trainable::Layer4AndHead
                } else {
                    Trainable::All
                };
                let learner = policy.apply(model.clone());
                let learner = match &current {
                    Some(c) => checkpoint::assign_parameter_ids(learner, &c.parameter_ids)?,
                    None => learner,
                };
                let cached = layer3
                    .as_ref()
                    .filter(|_| stage_config.stage == Stage::Finetune);
                let forward = |m: &ResNet18, items: &[usize], alter: &[Augment]| match cached {
                    Some((train3, _, _)) => {
                        let ids: Vec<usize> = items
                            .iter()
                            .zip(alter)
                            .map(|(i, a)| train3.item(*i, a.flip))
                            .collect();
                        Ok(m.head(m.layer4(train3.maps(&ids, &train_device)))) // [B, classes]
                    }
                    None => {
                        let images: Vec<_> = items
                            .iter()
                            .zip(alter)
                            .map(|(i, a)| data.train.augmented(*i, a))
                            .collect::<Result<_, _>>()?;
                        Ok(m.forward(images_to_tensor(&images, &train_device)?))
                        // [B, classes]
                    }
                };
                let validate =
                    |m: &ResNet18| {
                        let m = m.clone().valid();
                        score_batches(&data.validation.labels, batch, &infer_device, &|ids| {
                            match cached {
                                Some((_, val3, _)) => {
                                    Ok(m.head(m.layer4(val3.maps(ids, &infer_device))))
                                }
                                None => {
                                    let images: Vec<_> = ids
                                        .iter()
                                        .map(|i| data.validation.images[*i].clone())
                                        .collect();
                                    Ok(m.forward(images_to_tensor(&images, &infer_device)?))
                                }
                            }
                        })
                    };
                let steps = StageSteps {
                    train_count: data.train.len(),
                    train_labels: &data.train.labels,
                    forward: &forward,
                    // Cached layer3 maps cannot be erased: only the full stage reads images.
                    erasing: config.random_erasing.filter(|_| cached.is_none()),
                    resize: config.random_resize.filter(|_| cached.is_none()),
                    validate: &validate,
                    deadline,
                };
                let start_from = match &current {
                    Some(c) => StageStart {
                        epochs_done: c.epochs_done,
                        best: resumed_best.take(),
                        optimizer: optimizer_state(c)?,
                    },
                    None => StageStart::fresh(stage_config),
                };
                let mut on_epoch = |e: stage::EpochEnd<'_, ResNet18>| {
                    let ids = checkpoint::parameter_ids(e.model);
                    save_epoch(e.epochs_done, e.model, e.best, e.optimizer, ids, e.history)
                };
                run_stage(
                    learner,
                    stage_config,
                    &steps,
                    batch,
                    config.seed,
                    &train_device,
                    history,
                    &advance,
                    start_from,
                    &mut on_epoch,
                )?
            }
        };
        // Test-set evaluation of the stage's best model.
        let test = if data.test.is_empty() {
            None
        } else {
            let probabilities = match (stage_config.stage, layer3.as_ref()) {
                (Stage::Baseline | Stage::Finetune, Some((_, _, test3))) => {
                    probabilities_batches(data.test.len(), batch, &|ids| {
                        Ok(best.head(best.layer4(test3.maps(ids, &infer_device))))
                    })?
                }
                _ => probabilities_batches(data.test.len(), batch, &|ids| {
                    let images: Vec<_> = ids.iter().map(|i| data.test.images[*i].clone()).collect();
                    Ok(best.forward(images_to_tensor(&images, &infer_device)?))
                })?,
            };
            Some(Evaluation {
                labels: data.test.labels.clone(),
                probabilities,
            })
        };
        let seconds = previous_seconds + start.elapsed().as_secs_f64();
        let outcome = StageOutcome {
            config: stage_config.clone(),
            model: best.clone(),
            test,
            seconds,
        };
        on_stage(&outcome)?;
        state.completed.push(CompletedStage {
            stage: name.to_string(),
            seconds,
            test_labels: outcome
                .test
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
            test_probabilities: outcome
                .test
                .as_ref()
                .map(|t| t.probabilities.clone())
                .unwrap_or_default(),
        });
        state.current = None;
        state.history = history.clone();
        checkpoint::write_state(run, &state)?;
        model = best.train();
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Mean loss and accuracy over `labels.len()` items, in batches, from a logits function of item indices.
fn score_batches(
    labels: &[usize],
    batch: usize,
    device: &Device,
    logits: &dyn Fn(&[usize]) -> Result<Tensor<2>, InferenceError>,
) -> Result<Score, InferenceError> {
    let mut totals = stage::PassTotals::default();
    let all: Vec<usize> = (0..labels.len()).collect();
    for ids in all.chunks(batch) {
        let batch_labels: Vec<usize> = ids.iter().map(|i| labels[*i]).collect();
        let (loss, c) = loss_and_correct(logits(ids)?, &batch_labels, device);
        totals.add(loss, c, ids.len());
    }
    let (loss_sum, correct) = totals.read()?;
    let n = labels.len().max(1) as f64;
    Ok(Score {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
    })
}

/// Softmax rows for `count` items, in batches.
fn probabilities_batches(
    count: usize,
    batch: usize,
    logits: &dyn Fn(&[usize]) -> Result<Tensor<2>, InferenceError>,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let mut rows = Vec::with_capacity(count);
    let all: Vec<usize> = (0..count).collect();
    for ids in all.chunks(batch) {
        let p = softmax(logits(ids)?, 1); // [B, classes]
        let classes = p.dims()[1];
        rows.extend(values(p)?.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// Re-estimate every BatchNorm layer's running statistics on the training images: one pass in train mode (batch
/// statistics, running averages updated with momentum 0.1), no parameter changes. `no_grad()` keeps BatchNorm in
/// train mode but tracks no gradients, so no autograd graph is built (with tracked parameters, the pass kept
/// every batch's graph alive and ran out of memory at 1,080 images).
fn recalibrate_batch_norm(
    model: ResNet18,
    train: &Prepared,
    batch: usize,
    device: &Device,
    progress: &dyn Progress,
) -> Result<ResNet18, InferenceError> {
    let model = model.unfreeze().no_grad();
    let all: Vec<usize> = (0..train.len()).collect();
    for ids in all.chunks(batch) {
        let images: Vec<_> = ids.iter().map(|i| train.images[*i].clone()).collect();
        let out = model.layer4(model.to_layer3(images_to_tensor(&images, device)?)); // [B, 512, 7, 7]
        values(out.sum())?; // run the pass now, batch by batch
        progress.advance(ids.len() as u64);
    }
    // `train()` keeps `no_grad()`; `unfreeze()` makes every parameter trainable again (stages then apply their
    // own policy).
    Ok(model.valid().train().unfreeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inference::values;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    fn images(device: &Device) -> Tensor<4> {
        device.seed(3);
        Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn recalibration_moves_running_statistics_and_nothing_else() {
        let device = crate::device::training();
        device.seed(5);
        let model = ResNet18::new(4, &device);
        let images: Vec<image::RgbImage> = (0..6u8)
            .map(|k| {
                image::RgbImage::from_fn(32, 32, |x, y| {
                    image::Rgb([(x as u8).wrapping_mul(k + 3), y as u8 * 5, 90])
                })
            })
            .collect();
        let data = Prepared {
            labels: vec![0; 6],
            paths: vec![Default::default(); 6],
            images,
        };
        struct Quiet;
        impl Progress for Quiet {
            fn phase(&self, _: &str, _: u64) {}
            fn advance(&self, _: u64) {}
        }
        let stats =
            |m: &ResNet18| values(m.layer2[0].bn1.running_mean.value_sync()).expect("stats");
        let weights = |m: &ResNet18| values(m.layer2[0].conv1.weight.val()).expect("weights");
        let (stats_before, weights_before) = (stats(&model), weights(&model));
        let after = recalibrate_batch_norm(model, &data, 4, &device, &Quiet).expect("recalibrate");
        assert!(max_difference(&stats_before, &stats(&after)) > 1e-4);
        assert_eq!(weights_before, weights(&after));
        // And the model can still learn afterwards.
        assert!(
            after.fc.weight.val().is_require_grad()
                && after.layer4[0].conv1.weight.val().is_require_grad()
        );
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// One finetune step from images through the frozen prefix equals one step from cached layer3 maps.
    #[test]
    fn cached_and_uncached_finetune_steps_agree() {
        let train_device = crate::device::training();
        let infer_device = crate::device::inference();
        train_device.seed(1);
        let model = Trainable::Layer4AndHead.apply(ResNet18::new(4, &train_device));
        let labels = [0usize, 1, 2, 3];
        let x = images(&train_device);

        // Uncached: the whole network, frozen prefix in eval mode.
        let (loss_a, _) = loss_and_correct(model.forward(x.clone()), &labels, &train_device);
        let grads = GradientsParams::from_grads(loss_a.backward(), &model);
        let a = AdamConfig::new().init().step(1e-3, model.clone(), grads);

        // Cached: layer3 maps from an inference-mode copy, then layer4 + fc on the training device.
        let frozen = model.clone().valid();
        let maps = values(frozen.to_layer3(x.inner())).expect("maps");
        let maps = Tensor::<4>::from_data(TensorData::new(maps, [4, 256, 4, 4]), &train_device);
        let (loss_b, _) = loss_and_correct(model.head(model.layer4(maps)), &labels, &train_device);
        let grads = GradientsParams::from_grads(loss_b.backward(), &model);
        let b = AdamConfig::new().init().step(1e-3, model.clone(), grads);

        let la = values(loss_a).expect("loss")[0];
        let lb = values(loss_b).expect("loss")[0];
        assert!((la - lb).abs() < 1e-5, "{la} vs {lb}");
        let wa = values(a.layer4[1].conv2.weight.val()).expect("w");
        let wb = values(b.layer4[1].conv2.weight.val()).expect("w");
        assert!(
            max_difference(&wa, &wb) < 1e-6,
            "{}",
            max_difference(&wa, &wb)
        );
        let fa = values(a.fc.weight.val()).expect("fc");
        let fb = values(b.fc.weight.val()).expect("fc");
        assert!(max_difference(&fa, &fb) < 1e-6);
        // And the step did something.
        let w0 = values(model.layer4[1].conv2.weight.val()).expect("w");
        assert!(max_difference(&w0, &wa) > 1e-5);
        let _ = infer_device;
    }

    /// One baseline step on cached pooled features equals one step of the frozen network from images.
    #[test]
    fn cached_and_uncached_baseline_steps_agree() {
        let train_device = crate::device::training();
        train_device.seed(2);
        let model = Trainable::Head.apply(ResNet18::new(4, &train_device));
        let labels = [3usize, 1, 1, 0];
        let x = images(&train_device);

        let (loss_a, _) = loss_and_correct(model.forward(x.clone()), &labels, &train_device);
        let grads = GradientsParams::from_grads(loss_a.backward(), &model);
        let a = AdamConfig::new().init().step(1e-3, model.clone(), grads);

        let frozen = model.clone().valid();
        let pooled =
            values(ResNet18::pool(frozen.layer4(frozen.to_layer3(x.inner())))).expect("pooled");
        let pooled = Tensor::<2>::from_data(TensorData::new(pooled, [4, 512]), &train_device);
        let fc = model.fc.clone();
        let (loss_b, _) = loss_and_correct(fc.forward(pooled), &labels, &train_device);
        let grads = GradientsParams::from_grads(loss_b.backward(), &fc);
        let b = AdamConfig::new().init().step(1e-3, fc, grads);

        let fa = values(a.fc.weight.val()).expect("fc");
        let fb = values(b.weight.val()).expect("fc");
        assert!(
            max_difference(&fa, &fb) < 1e-6,
            "{}",
            max_difference(&fa, &fb)
        );
        // The frozen backbone did not move.
        let ca = values(a.layer4[0].conv1.weight.val()).expect("w");
        let c0 = values(model.layer4[0].conv1.weight.val()).expect("w");
        assert_eq!(ca, c0);
    }
}
