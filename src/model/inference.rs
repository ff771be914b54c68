//! Class probabilities for preprocessed images.

use super::folded::{FoldedResNet18, Rect};
use super::resnet::ResNet18;
use super::weights::cast_floats;
use crate::data::batcher::{images_to_tensor, BatchError};
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Device, Tensor};
use image::RgbImage;

/// Why inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("reading results back from the device: {0}")]
    Readback(String),
    #[error("inputs that do not fit together: {0}")]
    Mismatch(String),
}

/// A tensor's values as f32, in row-major order.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, InferenceError> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| InferenceError::Readback(format!("{e:?}")))
}

/// A classifier ready for inference, prepared once: on the CPU its BatchNorms folded into the convolutions
/// ([`FoldedResNet18`]); on a GPU backend, or for a model on a training device, burn's own layers.
pub struct Predictor {
    model: ResNet18,
    folded: Option<FoldedResNet18>,
    /// `model` in half precision, where inference runs in it ([`crate::device::precision`]).
    half: Option<ResNet18>,
}

impl Predictor {
    /// Prepare `model` for inference, in the process's precision.
    pub fn new(model: &ResNet18) -> Self {
        Self::with_precision(model, crate::device::precision())
    }

    /// Prepare `model` for inference in `precision` (f16 on burn's layers, never on the folded CPU path).
    pub fn with_precision(model: &ResNet18, precision: crate::device::Precision) -> Self {
        if precision == crate::device::Precision::F16 {
            return Self {
                model: model.clone(),
                folded: None,
                half: Some(cast_floats(model.clone(), DType::F16)),
            };
        }
        let on_host = crate::device::backend() == crate::device::Backend::Cpu
            && !model.conv1.weight.val().is_autodiff();
        let folded = on_host
            .then(|| FoldedResNet18::new(model))
            .and_then(|folded| {
                folded
                    .map_err(|e| tracing::debug!("inference keeps burn's layers: {e}"))
                    .ok()
            });
        Self {
            model: model.clone(),
            folded,
            half: None,
        }
    }

    /// Logits for a normalised image batch (`[N, 3, H, W]` → `[N, classes]`), in f32.
    pub fn logits(&self, x: Tensor<4>) -> Result<Tensor<2>, InferenceError> {
        match (&self.folded, &self.half) {
            (Some(folded), _) => Ok(self.model.head(folded.through(x, 4)?)),
            (None, Some(half)) => Ok(half.forward(x.cast(DType::F16)).cast(DType::F32)),
            (None, None) => Ok(self.model.forward(x)),
        }
    }

    /// conv1 … layer3 (`[N, 3, H, W]` → `[N, 256, H/16, W/16]`): what a `layer4` fine-tune caches, in f32.
    pub fn to_layer3(&self, x: Tensor<4>) -> Result<Tensor<4>, InferenceError> {
        match (&self.folded, &self.half) {
            (Some(folded), _) => folded.through(x, 3),
            (None, Some(half)) => Ok(half.to_layer3(x.cast(DType::F16)).cast(DType::F32)),
            (None, None) => Ok(self.model.to_layer3(x)),
        }
    }

    /// Softmax probabilities of `edited`, copies of `image` each changed only inside `changed[i]` (pixels of the
    /// image, which is at the model's input size), `batch` at a time. On the CPU each copy recomputes only the
    /// parts of the feature maps its change reaches and takes the rest from `image`'s own pass
    /// ([`FoldedResNet18::through_edited`]); elsewhere each copy is a whole pass.
    pub fn probabilities_of_edits(
        &self,
        image: &RgbImage,
        edited: &[RgbImage],
        changed: &[Rect],
        batch: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let Some(folded) = &self.folded else {
            return edited
                .chunks(batch.max(1))
                .map(|chunk| self.probabilities(chunk, device))
                .collect::<Result<Vec<_>, _>>()
                .map(|parts| parts.concat());
        };
        let classes = self.model.num_classes();
        let trace = folded.trace(images_to_tensor(std::slice::from_ref(image), device)?)?;
        let mut out = Vec::with_capacity(edited.len());
        for (chunk, regions) in edited
            .chunks(batch.max(1))
            .zip(changed.chunks(batch.max(1)))
        {
            let x = images_to_tensor(chunk, device)?; // [B, 3, H, W]
            let layer4 = folded.through_edited(&trace, x, regions)?;
            let p = softmax(self.model.head(layer4), 1); // [B, classes]
            out.extend(values(p)?.chunks(classes).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Softmax probabilities for each image (already resized to the model's input size), one row per image.
    pub fn probabilities(
        &self,
        images: &[RgbImage],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let classes = self.model.num_classes();
        let x = images_to_tensor(images, device)?; // [N, 3, 224, 224]
        let p = softmax(self.logits(x)?, 1); // [N, classes]
        Ok(values(p)?.chunks(classes).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Precision;
    use burn::tensor::Distribution;

    #[test]
    fn half_precision_logits_stay_close_to_the_f32_ones_and_come_back_as_f32() {
        let device = crate::device::host();
        device.seed(21);
        let model = ResNet18::new(4, &device);
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let full = Predictor::with_precision(&model, Precision::F32)
            .logits(x.clone())
            .expect("f32 logits");
        let half = Predictor::with_precision(&model, Precision::F16)
            .logits(x)
            .expect("f16 logits");
        assert_eq!(half.dtype(), DType::F32);
        let (full, half) = (values(full).expect("f32"), values(half).expect("f16"));
        let scale = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let gap = full
            .iter()
            .zip(&half)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        // Rounded to 11 significant bits on the way: not equal, but within a percent.
        assert!(gap > 0.0 && gap < 1e-2, "relative gap {gap:.2e}");
    }
}
