//! The U-Net's training settings as data: what `train-seg --config FILE --set KEY=VALUE` resolves, stored in the
//! segmentation run. The defaults are the best measured chain (one round of ten epochs, cosine learning rate,
//! per-image Dice loss, masks refined by the image's grey levels).

use super::segmentation::{DiceLoss, MaskRule};
use crate::settings::{self, SettingsError};
use serde::{Deserialize, Serialize};

/// What the U-Net learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Supervision {
    /// CAM pseudo-masks (the weakly supervised pipeline).
    Pseudo,
    /// The dataset's true masks (a fully supervised reference; needs a `masks/` tree).
    #[serde(rename = "true", alias = "true_masks")]
    True,
}

/// How the U-Net is trained and how its output becomes a mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegConfig {
    /// `pseudo` (CAM pseudo-masks) or `true` (the dataset's masks, a fully supervised reference).
    pub supervision: Supervision,
    /// Self-training rounds: after each, the U-Net's own (gated) masks become the next round's targets.
    pub rounds: usize,
    /// Epochs of the first round.
    pub epochs: usize,
    /// Epochs of each later round.
    pub round_epochs: usize,
    /// EM iterations reshaping every non-empty tumour mask the U-Net gives by the image's grey levels (its
    /// Testing masks, the next round's targets, `segment` and `serve`), as the `best` recipe's `appearance:10`
    /// refines a CAM (0: the U-Net's probabilities as they are).
    pub refine: u32,
    /// Check every tumour mask the run gives of a 2-D image (its Testing masks, `segment`, `serve`; not the next
    /// round's targets, nor the slices of a volume) against the pseudo-mask recipe's mask of the same image: each
    /// is blacked out of the image and the one the classifier confirms is kept, by the recipe's own deletion rule
    /// — the smaller of two whose removal halves the class probability, else the one whose removal lowers it
    /// most. The U-Net's mask then stands only where the classifier's evidence lies in it. Runs saved before the
    /// setting existed read as `false`.
    #[serde(default)]
    pub confirm: bool,
    pub learning_rate: f64,
    /// Cosine decay of the learning rate over each round down to 1 % (else constant).
    pub cosine_lr: bool,
    /// The loss's soft Dice: `batch` (pooled over the batch) or `per_image` (every lesion weighs the same).
    pub dice_loss: DiceLoss,
    /// Leave out Training images whose pseudo-mask, blacked out, left more than this fraction of the class
    /// probability (needs masks checked by deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_unconfirmed: Option<f32>,
    pub batch_size: usize,
    /// Train the encoder too (else it stays the classifier's, frozen, BatchNorm in eval mode).
    pub train_encoder: bool,
    /// Fraction of each class of Training/ held out for validation.
    pub validation_fraction: f64,
    /// Probability at which the U-Net's output becomes a mask.
    pub threshold: f32,
    /// Predict with a test-time flip (each image's logits averaged with its mirror image's).
    pub flip_tta: bool,
    /// A tumour mask the gate lets through that comes out empty becomes the U-Net's most likely region.
    pub never_empty: bool,
}

impl Default for SegConfig {
    fn default() -> Self {
        SegConfig {
            supervision: Supervision::Pseudo,
            rounds: 1,
            epochs: 10,
            round_epochs: 3,
            refine: 10,
            confirm: true,
            learning_rate: 1e-3,
            cosine_lr: true,
            dice_loss: DiceLoss::PerImage,
            drop_unconfirmed: None,
            batch_size: 16,
            train_encoder: false,
            validation_fraction: 0.2,
            threshold: 0.5,
            flip_tta: false,
            never_empty: false,
        }
    }
}

impl SegConfig {
    /// The defaults, or a TOML file, with `sets` applied, validated.
    pub fn resolve(
        file: Option<&std::path::Path>,
        sets: &[String],
    ) -> Result<SegConfig, SettingsError> {
        settings::resolve_file(
            file,
            sets,
            "the U-Net defaults",
            "epochs=10",
            SegConfig::validate,
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rounds < 1 {
            return Err("rounds must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err("threshold must lie in (0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err("validation_fraction must lie in [0, 1)".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if let Some(f) = self.drop_unconfirmed {
            if !(f.is_finite() && f > 0.0) {
                return Err("drop_unconfirmed must be a positive fraction".into());
            }
            if self.supervision == Supervision::True {
                return Err(
                    "drop_unconfirmed selects pseudo-masks; with supervision = \"true\" there are none".into(),
                );
            }
        }
        Ok(())
    }

    /// How the U-Net's output becomes a mask.
    pub fn mask_rule(&self) -> MaskRule {
        MaskRule {
            threshold: self.threshold,
            flip: self.flip_tta,
            never_empty: self.never_empty,
            refine: self.refine,
            confirm: self.confirm,
        }
    }

    /// Epochs of round `round` (from 1).
    pub fn epochs_of(&self, round: usize) -> usize {
        if round == 1 {
            self.epochs
        } else {
            self.round_epochs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_sets_are_checked() {
        let text = settings::to_toml(&SegConfig::default()).unwrap();
        let back: SegConfig = settings::parse(&text, "round trip").unwrap();
        assert_eq!(back, SegConfig::default());
        // A run saved before `confirm` existed reads as unchecked, whatever today's default.
        let old: SegConfig = settings::parse("epochs = 3", "old run").unwrap();
        assert!(SegConfig::default().confirm && !old.confirm);
        let c = SegConfig::resolve(None, &["epochs=2".into(), "dice_loss=batch".into()]).unwrap();
        assert_eq!((c.epochs, c.dice_loss), (2, DiceLoss::Batch));
        let e = SegConfig::resolve(None, &["epoch=2".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch=2") && e.contains("epochs"), "{e}");
        let e = SegConfig::resolve(None, &["threshold=1.5".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold must lie in (0, 1)"), "{e}");
        let e = SegConfig::resolve(
            None,
            &["supervision=true".into(), "drop_unconfirmed=0.1".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("drop_unconfirmed"), "{e}");
    }
}
