//! Training configuration: data, so a run folder can store it and a run can be repeated from it.

use crate::data::preprocess::EraseBox;
use serde::{Deserialize, Serialize};

/// A training stage of the seed protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Backbone frozen, `fc` learns (trained on cached pooled features).
    Baseline,
    /// `layer4` and `fc` learn (trained on cached layer3 maps).
    Finetune,
    /// Everything learns (for users without ImageNet weights).
    Full,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Baseline => "baseline",
            Stage::Finetune => "finetune",
            Stage::Full => "full",
        }
    }

    pub fn index(self) -> u64 {
        self as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    /// SGD with (heavy-ball) momentum.
    Sgd,
}

/// Learning-rate schedule over a stage's epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Cosine from the stage's rate down to 1 % of it over the stage's steps.
    Cosine,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
}

/// One stage's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    pub stage: Stage,
    pub epochs: usize,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Momentum for SGD (ignored by Adam).
    pub momentum: f64,
    pub schedule: Schedule,
}

impl Schedule {
    /// The rate at `epoch` (0-based), step `step` of `steps_per_epoch`, of `epochs` epochs that start at `base`.
    pub fn rate(
        self,
        base: f64,
        epochs: usize,
        epoch: usize,
        step: usize,
        steps_per_epoch: usize,
    ) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let total = (epochs * steps_per_epoch).max(1) as f64;
                let t = (epoch * steps_per_epoch + step) as f64 / total;
                let floor = base * 0.01;
                floor + 0.5 * (base - floor) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
        }
    }
}

impl StageConfig {
    /// Learning rate at `epoch` (0-based), step `step` of `steps_per_epoch`.
    pub fn learning_rate_at(&self, epoch: usize, step: usize, steps_per_epoch: usize) -> f64 {
        self.schedule.rate(
            self.learning_rate,
            self.epochs,
            epoch,
            step,
            steps_per_epoch,
        )
    }
}

/// The whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub batch_size: usize,
    /// Fraction of each class of `Training/` held out for validation (best-epoch selection).
    pub validation_fraction: f64,
    /// Before caching, re-estimate the frozen layers' BatchNorm running statistics on the training images
    /// (what PyTorch's `model.train()` does to a "frozen" backbone over its first epoch).
    pub recalibrate_batch_norm: bool,
    pub stages: Vec<StageConfig>,
    /// Random erasing for the stages that learn from images (`full`; the cached stages reuse fixed features).
    #[serde(default)]
    pub random_erasing: Option<RandomErasing>,
    /// Random resizing of the `full` stage's training batches (the cached stages reuse fixed features).
    #[serde(default)]
    pub random_resize: Option<RandomResize>,
}

/// torchvision v2's `RandomResize(min_size, max_size)` for square inputs, drawn once per batch so that a batch
/// stacks: each training batch is resized from the input size to a side drawn uniformly from
/// `min_side..=max_side`. The network pools globally, so it takes any side; validation and inference stay at
/// the input size. Teaches the backbone lesions at smaller scales than the input size shows them, as the
/// U-Net's 128×128 input does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomResize {
    pub min_side: u32,
    pub max_side: u32,
}

impl RandomResize {
    /// One side from `min_side..=max_side`.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> u32 {
        let (low, high) = (
            self.min_side.min(self.max_side),
            self.max_side.max(self.min_side),
        );
        rng.random_range(low..=high)
    }
}

/// torchvision's `RandomErasing(p, scale, ratio)` with one difference: the rectangle is filled with black
/// pixels before normalisation (torchvision's default `value=0` after normalisation is the mean colour), as
/// black is what occlusion maps and the deletion check put over an image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomErasing {
    /// Chance that an image gets a rectangle.
    pub probability: f64,
    /// Range of the rectangle's area, as fractions of the image.
    pub scale: (f64, f64),
    /// Range of its aspect ratio (height / width), drawn log-uniformly.
    pub ratio: (f64, f64),
}

impl RandomErasing {
    /// torchvision's defaults (`scale=(0.02, 0.33)`, `ratio=(0.3, 3.3)`) with chance `probability`.
    pub fn torchvision(probability: f64) -> RandomErasing {
        RandomErasing {
            probability,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3),
        }
    }

    /// One draw, as torchvision's `get_params`: up to ten tries for a rectangle that fits, else none.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> Option<EraseBox> {
        if !rng.random_bool(self.probability.clamp(0.0, 1.0)) {
            return None;
        }
        let (low, high) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let area = self.scale.0 + rng.random::<f64>() * (self.scale.1 - self.scale.0);
            let ratio = (low + rng.random::<f64>() * (high - low)).exp();
            let (height, width) = ((area * ratio).sqrt(), (area / ratio).sqrt());
            if height < 1.0 && width < 1.0 {
                return Some(EraseBox {
                    top: rng.random::<f64>() * (1.0 - height),
                    left: rng.random::<f64>() * (1.0 - width),
                    width,
                    height,
                });
            }
        }
        None
    }
}

impl TrainConfig {
    /// The seed protocol: baseline (fc, Adam 1e-3) then finetune (layer4 + fc, Adam 1e-4), and optionally full.
    pub fn protocol(
        seed: u64,
        baseline_epochs: usize,
        finetune_epochs: usize,
        full_epochs: usize,
    ) -> TrainConfig {
        let stage = |stage, epochs, learning_rate| StageConfig {
            stage,
            epochs,
            optimizer: OptimizerKind::Adam,
            learning_rate,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: Schedule::Cosine,
        };
        let mut stages = vec![
            stage(Stage::Baseline, baseline_epochs, 1e-3),
            stage(Stage::Finetune, finetune_epochs, 1e-4),
        ];
        if full_epochs > 0 {
            stages.push(stage(Stage::Full, full_epochs, 1e-3));
        }
        TrainConfig {
            seed,
            batch_size: 32,
            validation_fraction: 0.1,
            recalibrate_batch_norm: false,
            stages,
            random_erasing: None,
            random_resize: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let mut s = StageConfig {
            stage: Stage::Finetune,
            epochs: 4,
            optimizer: OptimizerKind::Sgd,
            learning_rate: 0.1,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: Schedule::Cosine,
        };
        assert!((s.learning_rate_at(0, 0, 10) - 0.1).abs() < 1e-12);
        assert!((s.learning_rate_at(2, 0, 10) - (0.001 + 0.5 * 0.099)).abs() < 1e-12);
        assert!(s.learning_rate_at(3, 9, 10) < 0.0012);
        s.schedule = Schedule::Step {
            every: 2,
            gamma: 0.1,
        };
        assert!((s.learning_rate_at(1, 5, 10) - 0.1).abs() < 1e-12);
        assert!((s.learning_rate_at(2, 0, 10) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn random_erasing_draws_fitting_rectangles_within_the_ranges() {
        let erasing = RandomErasing::torchvision(0.5);
        let mut rng = crate::rng::stream(3, "test", &[]);
        let draws: Vec<_> = (0..2000).map(|_| erasing.draw(&mut rng)).collect();
        let boxes: Vec<_> = draws.iter().flatten().collect();
        // About half the images get a rectangle (binomial sd ≈ 22 of 2000).
        assert!((900..1100).contains(&boxes.len()), "{}", boxes.len());
        for b in &boxes {
            let (area, ratio) = (b.width * b.height, b.height / b.width);
            assert!((0.02 - 1e-9..=0.33 + 1e-9).contains(&area), "{b:?}");
            assert!((0.3 - 1e-9..=3.3 + 1e-9).contains(&ratio), "{b:?}");
            assert!(b.left >= 0.0 && b.top >= 0.0, "{b:?}");
            assert!(b.left + b.width <= 1.0 && b.top + b.height <= 1.0, "{b:?}");
        }
        // Log-uniform ratio: as many tall rectangles as wide ones.
        let tall = boxes.iter().filter(|b| b.height > b.width).count();
        assert!(
            (tall as f64 / boxes.len() as f64 - 0.5).abs() < 0.06,
            "{tall}"
        );
        // Chance 0 and 1.
        assert!((0..50).all(|_| RandomErasing::torchvision(0.0).draw(&mut rng).is_none()));
        assert!((0..50).all(|_| RandomErasing::torchvision(1.0).draw(&mut rng).is_some()));
    }
}
