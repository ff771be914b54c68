//! Class probabilities for preprocessed images.

use super::resnet::ResNet18;
use crate::data::batcher::{images_to_tensor, BatchError};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use image::RgbImage;

/// Why inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("reading results back from the device: {0}")]
    Readback(String),
}

/// A tensor's values as f32, in row-major order.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, InferenceError> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| InferenceError::Readback(format!("{e:?}")))
}

/// Softmax probabilities for each image (already resized to the model's input size), one row per image.
pub fn probabilities(
    model: &ResNet18,
    images: &[RgbImage],
    device: &Device,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let classes = model.num_classes();
    let x = images_to_tensor(images, device)?; // [N, 3, 224, 224]
    let p = softmax(model.forward(x), 1); // [N, classes]
    Ok(values(p)?.chunks(classes).map(<[f32]>::to_vec).collect())
}
