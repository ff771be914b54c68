//! The classifier's training hyperparameters as data: what `train --config FILE --set KEY=VALUE` resolves. The
//! command line keeps the everyday options (data, output, weights, seed, epochs per stage, resume, time limit);
//! everything else is here, with the seed notebook's values as defaults.

use super::config::{OptimizerKind, RandomErasing, RandomResize, Schedule, Stage, TrainConfig};
use crate::data::preprocess::CLASSIFIER_SIZE;
use crate::settings::{self, SettingsError};
use serde::{Deserialize, Serialize};

/// Per-stage learning rates, optimiser, schedule and the rest of the protocol's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hyperparameters {
    /// Images per step.
    pub batch_size: usize,
    /// Fraction of each class of Training/ held out for validation (best-epoch selection).
    pub validation_fraction: f64,
    /// Learning rate of the `baseline` stage (fc only).
    pub baseline_lr: f64,
    /// Learning rate of the `finetune` stage (layer4 + fc).
    pub finetune_lr: f64,
    /// Learning rate of the `full` stage (every layer).
    pub full_lr: f64,
    /// `adam` or `sgd` (with momentum).
    pub optimizer: OptimizerKind,
    /// SGD's momentum (Adam ignores it).
    pub momentum: f64,
    pub weight_decay: f64,
    /// Cosine decay of each stage's rate down to 1 % (else constant).
    pub cosine_lr: bool,
    /// Re-estimate the frozen layers' BatchNorm statistics on the training images before caching.
    pub recalibrate_batch_norm: bool,
    /// Chance that a `full`-stage training image gets a random black rectangle (torchvision's RandomErasing
    /// ranges); 0 turns it off. Teaches the model that a black patch is not "no tumour", which the occlusion
    /// and deletion checks of the `best` pseudo-mask recipe rely on.
    pub random_erasing: f64,
    /// Smallest side of the `full` stage's randomly resized training batches (each batch is resized to a side
    /// drawn from this up to 224; torchvision v2's `RandomResize`); 0 turns it off. Teaches the backbone
    /// lesions at the scale the U-Net's 128×128 input shows them.
    pub random_resize_min: u32,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            batch_size: 32,
            validation_fraction: 0.1,
            baseline_lr: 1e-3,
            finetune_lr: 1e-4,
            full_lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
            cosine_lr: true,
            recalibrate_batch_norm: false,
            random_erasing: 0.0,
            random_resize_min: 0,
        }
    }
}

impl Hyperparameters {
    /// The defaults, or a TOML file, with `sets` applied, validated.
    pub fn resolve(
        file: Option<&std::path::Path>,
        sets: &[String],
    ) -> Result<Hyperparameters, SettingsError> {
        settings::resolve_file(
            file,
            sets,
            "the training defaults",
            "full_lr=1e-4",
            Hyperparameters::validate,
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err("validation_fraction must lie in [0, 1)".into());
        }
        for (name, rate) in [
            ("baseline_lr", self.baseline_lr),
            ("finetune_lr", self.finetune_lr),
            ("full_lr", self.full_lr),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("{name} must be a positive number"));
            }
        }
        if !(0.0..=1.0).contains(&self.random_erasing) {
            return Err("random_erasing is a chance from 0 to 1".into());
        }
        if self.random_resize_min != 0 && !(32..=CLASSIFIER_SIZE).contains(&self.random_resize_min)
        {
            return Err(format!(
                "random_resize_min is 0 (off) or a side from 32 to {CLASSIFIER_SIZE}"
            ));
        }
        Ok(())
    }

    /// The run's configuration for these epochs per stage (stages of 0 epochs left out).
    pub fn train_config(
        &self,
        seed: u64,
        baseline_epochs: usize,
        finetune_epochs: usize,
        full_epochs: usize,
    ) -> TrainConfig {
        let mut config = TrainConfig::protocol(seed, baseline_epochs, finetune_epochs, full_epochs);
        config.batch_size = self.batch_size;
        config.validation_fraction = self.validation_fraction;
        config.recalibrate_batch_norm = self.recalibrate_batch_norm;
        config.random_erasing =
            (self.random_erasing > 0.0).then(|| RandomErasing::torchvision(self.random_erasing));
        config.random_resize = (self.random_resize_min > 0).then_some(RandomResize {
            min_side: self.random_resize_min,
            max_side: CLASSIFIER_SIZE,
        });
        for stage in &mut config.stages {
            stage.optimizer = self.optimizer;
            stage.weight_decay = self.weight_decay;
            stage.momentum = self.momentum;
            stage.schedule = if self.cosine_lr {
                Schedule::Cosine
            } else {
                Schedule::Constant
            };
            stage.learning_rate = match stage.stage {
                Stage::Baseline => self.baseline_lr,
                Stage::Finetune => self.finetune_lr,
                Stage::Full => self.full_lr,
            };
        }
        config.stages.retain(|s| s.epochs > 0);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_protocol_and_sets_reach_every_stage() {
        let h = Hyperparameters::default();
        let config = h.train_config(3, 5, 5, 0);
        let mut seed = TrainConfig::protocol(3, 5, 5, 0);
        seed.stages.retain(|s| s.epochs > 0);
        assert_eq!(config, seed);
        let h = Hyperparameters::resolve(
            None,
            &[
                "optimizer=sgd".into(),
                "full_lr=1e-4".into(),
                "random_erasing=0.5".into(),
                "cosine_lr=false".into(),
            ],
        )
        .unwrap();
        let config = h.train_config(0, 0, 0, 2);
        assert_eq!(config.stages.len(), 1);
        let full = &config.stages[0];
        assert_eq!(
            (full.optimizer, full.learning_rate),
            (OptimizerKind::Sgd, 1e-4)
        );
        assert_eq!(full.schedule, Schedule::Constant);
        assert_eq!(config.random_erasing, Some(RandomErasing::torchvision(0.5)));
        let text = settings::to_toml(&h).unwrap();
        assert_eq!(settings::parse::<Hyperparameters>(&text, "t").unwrap(), h);
        let e = Hyperparameters::resolve(None, &["full-lr=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("full-lr") && e.contains("full_lr"), "{e}");
        let e = Hyperparameters::resolve(None, &["random_erasing=2".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("random_erasing"), "{e}");
    }

    #[test]
    fn random_resize_reaches_the_config_and_refuses_sides_outside_the_input() {
        assert_eq!(
            Hyperparameters::default()
                .train_config(0, 0, 0, 1)
                .random_resize,
            None
        );
        let h = Hyperparameters::resolve(None, &["random_resize_min=128".into()]).unwrap();
        let resize = h.train_config(0, 0, 0, 1).random_resize;
        assert_eq!(
            resize,
            Some(RandomResize {
                min_side: 128,
                max_side: 224
            })
        );
        for bad in ["random_resize_min=16", "random_resize_min=300"] {
            let e = Hyperparameters::resolve(None, &[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("random_resize_min"), "{bad}: {e}");
        }
    }
}
