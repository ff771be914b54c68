//! Where a classifier's backbone comes from: ImageNet weights (a file, or the cached `weights fetch` download),
//! TumorNet's phantom-trained ResNet18 (shipped inside the binary, the offline stand-in for ImageNet, asked for
//! by name only), or torchvision's random init.

use super::resnet::ResNet18;
use super::run::WeightsOrigin;
use super::weights::{self, LoadReport, WeightsError};
use std::path::{Path, PathBuf};

/// The phantom-trained ResNet18 without its head (f16 safetensors, torchvision layout). How it was made:
/// `assets/phantom-resnet18.md`; `tools/make_phantom_backbone.sh` makes it again.
pub const PHANTOM_BACKBONE: &[u8] = include_bytes!("../../assets/phantom-resnet18.safetensors");
/// What `--weights` calls the phantom-trained backbone.
pub const PHANTOM_NAME: &str = "phantom";
/// What `--weights` calls torchvision's random init (even when ImageNet weights are cached).
pub const RANDOM_NAME: &str = "none";
/// Lesion sizes (× the realistic ranges) of the phantom the backbone was trained on: models that start from it
/// see their best on a phantom drawn at the same scale.
pub const PHANTOM_LESION_SCALE: f32 = 2.0;

/// Which weights a classifier starts from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackboneChoice {
    /// The cached ImageNet weights if `weights fetch` downloaded them, else torchvision's random init.
    #[default]
    Auto,
    /// A torchvision-layout file (ImageNet weights, or a model trained elsewhere).
    File(PathBuf),
    /// The phantom-trained backbone shipped with TumorNet.
    Phantom,
    /// torchvision's random init.
    RandomInit,
}

impl BackboneChoice {
    /// `phantom`, `none`, or a file path (what `--weights` takes).
    pub fn parse(text: &str) -> BackboneChoice {
        match text {
            PHANTOM_NAME => BackboneChoice::Phantom,
            RANDOM_NAME => BackboneChoice::RandomInit,
            path => BackboneChoice::File(PathBuf::from(path)),
        }
    }
}

/// A choice made concrete: `Auto` looked up in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backbone {
    File(PathBuf),
    Phantom,
    RandomInit,
}

impl Backbone {
    pub fn resolve(choice: &BackboneChoice) -> anyhow::Result<Backbone> {
        Ok(match choice {
            BackboneChoice::Auto => match super::fetch::resolve_imagenet(None)? {
                Some(path) => Backbone::File(path),
                None => Backbone::RandomInit,
            },
            BackboneChoice::File(path) => Backbone::File(path.clone()),
            BackboneChoice::Phantom => Backbone::Phantom,
            BackboneChoice::RandomInit => Backbone::RandomInit,
        })
    }

    /// Load into `fresh` (whose head is kept when the file's has another number of classes, and always for the
    /// phantom backbone, which ships without one).
    pub fn load(
        &self,
        fresh: ResNet18,
        seed: u64,
    ) -> Result<(ResNet18, WeightsOrigin, Option<LoadReport>), WeightsError> {
        match self {
            Backbone::File(path) => {
                let (model, report) = weights::load_torchvision(fresh, path)?;
                let sha256 = super::fetch::sha256_file(path).map_err(|e| WeightsError::Read {
                    path: path.clone(),
                    message: format!("{e:#}"),
                })?;
                let origin = WeightsOrigin::File {
                    path: path.clone(),
                    sha256,
                };
                Ok((model, origin, Some(report)))
            }
            Backbone::Phantom => {
                let (model, report) = load_phantom(fresh)?;
                let origin = WeightsOrigin::Phantom {
                    sha256: phantom_sha256(),
                };
                Ok((model, origin, Some(report)))
            }
            Backbone::RandomInit => Ok((fresh, WeightsOrigin::RandomInit { seed }, None)),
        }
    }
}

/// The shipped phantom backbone loaded into `fresh`; the file has no head, so `fresh`'s own (untrained) one
/// stays.
pub fn load_phantom(fresh: ResNet18) -> Result<(ResNet18, LoadReport), WeightsError> {
    weights::load_torchvision_bytes(
        fresh,
        PHANTOM_BACKBONE,
        Path::new("<built-in phantom backbone>"),
    )
}

/// SHA-256 (hex) of the shipped file.
pub fn phantom_sha256() -> String {
    super::fetch::sha256_hex(PHANTOM_BACKBONE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inference::values;

    #[test]
    fn the_built_in_backbone_loads_every_tensor_but_the_head_as_stored_and_keeps_a_fresh_head() {
        let device = crate::device::host();
        device.seed(3);
        let fresh = ResNet18::new(4, &device);
        let head = values(fresh.fc.weight.val()).expect("head");
        let (model, report) = load_phantom(fresh).expect("the built-in backbone loads");
        // 102 tensors in a torchvision ResNet18 state dict without num_batches_tracked; the file has no head.
        assert_eq!(report.applied, 100);
        let mut missing = report.missing.clone();
        missing.sort();
        assert_eq!(missing, ["fc.bias", "fc.weight"]);
        assert_eq!(values(model.fc.weight.val()).expect("head"), head);
        // conv1 holds the file's f16 values, widened to f32 exactly; the file holds halves only.
        let file = safetensors::SafeTensors::deserialize(PHANTOM_BACKBONE).expect("safetensors");
        assert!(file
            .tensors()
            .iter()
            .all(|(_, view)| view.dtype() == safetensors::Dtype::F16));
        let stored: Vec<f32> = file
            .tensor("conv1.weight")
            .expect("conv1.weight")
            .data()
            .chunks_exact(2)
            .map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(values(model.conv1.weight.val()).expect("conv1"), stored);
        assert_eq!(phantom_sha256().len(), 64);
    }

    #[test]
    fn names_select_the_phantom_and_random_init_anything_else_is_a_file() {
        assert_eq!(BackboneChoice::parse("phantom"), BackboneChoice::Phantom);
        assert_eq!(BackboneChoice::parse("none"), BackboneChoice::RandomInit);
        assert_eq!(
            BackboneChoice::parse("./phantom"),
            BackboneChoice::File(PathBuf::from("./phantom"))
        );
    }
}
