//! The seed protocol, fast by design: decode once, cache what frozen layers compute, train what learns.
//!
//! * `baseline` (fc learns): layer3 maps of every training image and its mirror are computed once with the
//!   frozen backbone, then pooled layer4 features once; an epoch is 512→4 logistic regression on those.
//! * `finetune` (layer4 + fc learn): an epoch runs layer4 + fc on the cached layer3 maps.
//! * `full` (everything learns): images from memory, mirrored on the fly.

pub mod cache;
pub mod config;
pub mod data;
pub mod history;
pub mod stage;

use crate::data::batcher::images_to_tensor;
use crate::metrics::ConfusionMatrix;
use crate::model::classifier::Trainable;
use crate::model::inference::{values, InferenceError};
use crate::model::ResNet18;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use cache::FeatureCache;
use config::{Stage, StageConfig, TrainConfig};
use data::Prepared;
use history::EpochRecord;
use stage::{loss_and_correct, run_stage, Score, StageSteps};

/// Test-set predictions of one model.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub labels: Vec<usize>,
    pub probabilities: Vec<Vec<f32>>,
    pub confusion: ConfusionMatrix,
}

impl Evaluation {
    pub fn from_probabilities(
        labels: Vec<usize>,
        probabilities: Vec<Vec<f32>>,
        classes: usize,
    ) -> Evaluation {
        let predicted: Vec<usize> = probabilities.iter().map(|row| argmax(row)).collect();
        let confusion = ConfusionMatrix::from_pairs(classes, &labels, &predicted);
        Evaluation {
            labels,
            probabilities,
            confusion,
        }
    }

    pub fn predicted(&self) -> Vec<usize> {
        self.probabilities.iter().map(|row| argmax(row)).collect()
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .copied()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, p)| if p > b.1 { (i, p) } else { b })
        .0
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

/// Run every stage of `config` from `model` (on the training device). `on_stage` sees each finished stage (to
/// write its checkpoint) before the next begins.
pub fn run_protocol(
    model: ResNet18,
    config: &TrainConfig,
    data: &TrainingData,
    progress: &dyn Progress,
    history: &mut Vec<EpochRecord>,
    on_stage: &mut dyn FnMut(&StageOutcome) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<StageOutcome>> {
    let train_device = crate::device::training();
    let infer_device = crate::device::inference();
    let batch = config.batch_size.max(1);
    let mut model = model;
    if config.recalibrate_batch_norm && config.stages.iter().any(|s| s.stage != Stage::Full) {
        progress.phase("recalibrate", data.train.len() as u64);
        model = recalibrate_batch_norm(model, &data.train, batch, &train_device, progress)?;
    }
    // The frozen prefix (conv1 … layer3) is the same for baseline and finetune: cache its output once.
    let mut layer3: Option<(FeatureCache, FeatureCache, FeatureCache)> = None;
    let mut outcomes = Vec::new();
    for stage_config in &config.stages {
        let start = std::time::Instant::now();
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
        progress.phase(
            stage_config.stage.name(),
            (stage_config.epochs * data.train.len()) as u64,
        );
        let advance = |n| progress.advance(n);
        let best = match stage_config.stage {
            Stage::Baseline => {
                let (train3, val3, _) = layer3.as_ref().context_cache()?;
                let frozen = model.clone().valid();
                let train_pooled =
                    cache::pooled_from_layer3(&frozen, train3, batch, &infer_device)?;
                let val_pooled = cache::pooled_from_layer3(&frozen, val3, batch, &infer_device)?;
                let forward = |fc: &burn::nn::Linear, items: &[usize], flips: &[bool]| {
                    let ids: Vec<usize> = items
                        .iter()
                        .zip(flips)
                        .map(|(i, f)| train_pooled.item(*i, *f))
                        .collect();
                    fc.forward(train_pooled.vectors(&ids, &train_device)) // [B, classes]
                };
                let validate = |fc: &burn::nn::Linear| {
                    let fc = fc.clone().valid();
                    score_batches(&data.validation.labels, batch, &infer_device, &|ids| {
                        fc.forward(val_pooled.vectors(ids, &infer_device))
                    })
                };
                let steps = StageSteps {
                    train_count: data.train.len(),
                    train_labels: &data.train.labels,
                    forward: &forward,
                    validate: &validate,
                };
                let fc = run_stage(
                    model.fc.clone(),
                    stage_config,
                    &steps,
                    batch,
                    config.seed,
                    &train_device,
                    history,
                    &advance,
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
                let cached = layer3
                    .as_ref()
                    .filter(|_| stage_config.stage == Stage::Finetune);
                let forward = |m: &ResNet18, items: &[usize], flips: &[bool]| match cached {
                    Some((train3, _, _)) => {
                        let ids: Vec<usize> = items
                            .iter()
                            .zip(flips)
                            .map(|(i, f)| train3.item(*i, *f))
                            .collect();
                        m.head(m.layer4(train3.maps(&ids, &train_device))) // [B, classes]
                    }
                    None => {
                        let images: Vec<_> = items
                            .iter()
                            .zip(flips)
                            .map(|(i, f)| data.train.image(*i, *f))
                            .collect();
                        m.forward(
                            images_to_tensor(&images, &train_device)
                                .unwrap_or_else(|_| Tensor::zeros([0, 3, 1, 1], &train_device)),
                        )
                    }
                };
                let validate = |m: &ResNet18| {
                    let m = m.clone().valid();
                    score_batches(
                        &data.validation.labels,
                        batch,
                        &infer_device,
                        &|ids| match cached {
                            Some((_, val3, _)) => m.head(m.layer4(val3.maps(ids, &infer_device))),
                            None => {
                                let images: Vec<_> = ids
                                    .iter()
                                    .map(|i| data.validation.images[*i].clone())
                                    .collect();
                                m.forward(
                                    images_to_tensor(&images, &infer_device).unwrap_or_else(|_| {
                                        Tensor::zeros([0, 3, 1, 1], &infer_device)
                                    }),
                                )
                            }
                        },
                    )
                };
                let steps = StageSteps {
                    train_count: data.train.len(),
                    train_labels: &data.train.labels,
                    forward: &forward,
                    validate: &validate,
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
                        best.head(best.layer4(test3.maps(ids, &infer_device)))
                    })?
                }
                _ => probabilities_batches(data.test.len(), batch, &|ids| {
                    let images: Vec<_> = ids.iter().map(|i| data.test.images[*i].clone()).collect();
                    best.forward(
                        images_to_tensor(&images, &infer_device)
                            .unwrap_or_else(|_| Tensor::zeros([0, 3, 1, 1], &infer_device)),
                    )
                })?,
            };
            Some(Evaluation::from_probabilities(
                data.test.labels.clone(),
                probabilities,
                best.num_classes(),
            ))
        };
        let outcome = StageOutcome {
            config: stage_config.clone(),
            model: best.clone(),
            test,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_stage(&outcome)?;
        model = best.train();
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

trait CacheContext<T> {
    fn context_cache(self) -> anyhow::Result<T>;
}

impl<T> CacheContext<T> for Option<T> {
    fn context_cache(self) -> anyhow::Result<T> {
        self.ok_or_else(|| anyhow::anyhow!("the layer3 cache was not built"))
    }
}

/// Mean loss and accuracy over `labels.len()` items, in batches, from a logits function of item indices.
fn score_batches(
    labels: &[usize],
    batch: usize,
    device: &Device,
    logits: &dyn Fn(&[usize]) -> Tensor<2>,
) -> Result<Score, InferenceError> {
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..labels.len()).collect();
    for ids in all.chunks(batch) {
        let batch_labels: Vec<usize> = ids.iter().map(|i| labels[*i]).collect();
        let (loss, c) = loss_and_correct(logits(ids), &batch_labels, device);
        loss_sum +=
            f64::from(values(loss)?.first().copied().unwrap_or(f32::NAN)) * ids.len() as f64;
        correct += c;
    }
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
    logits: &dyn Fn(&[usize]) -> Tensor<2>,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let mut rows = Vec::with_capacity(count);
    let all: Vec<usize> = (0..count).collect();
    for ids in all.chunks(batch) {
        let p = softmax(logits(ids), 1); // [B, classes]
        let classes = p.dims()[1];
        rows.extend(values(p)?.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// Re-estimate every BatchNorm layer's running statistics on the training images: one pass in train mode (batch
/// statistics, running averages updated with momentum 0.1), no parameter changes.
fn recalibrate_batch_norm(
    model: ResNet18,
    train: &Prepared,
    batch: usize,
    device: &Device,
    progress: &dyn Progress,
) -> Result<ResNet18, InferenceError> {
    let model = model.unfreeze();
    let all: Vec<usize> = (0..train.len()).collect();
    for ids in all.chunks(batch) {
        let images: Vec<_> = ids.iter().map(|i| train.images[*i].clone()).collect();
        let _ = model.to_layer3(images_to_tensor(&images, device)?).detach();
        progress.advance(ids.len() as u64);
    }
    Ok(model.valid().train())
}
