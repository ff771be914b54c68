//! The only image → tensor step: preprocessed RGB images become a normalised `[N, 3, H, W]` batch.

use super::preprocess::normalize_imagenet_into;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

/// Why a batch could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("an empty batch has no shape")]
    Empty,
    #[error("image {index} is {got:?}, the batch's first image is {want:?}")]
    MixedSizes {
        index: usize,
        got: (u32, u32),
        want: (u32, u32),
    },
    #[error(transparent)]
    Preprocess(#[from] super::preprocess::PreprocessError),
}

/// Stack same-sized images into an ImageNet-normalised `[N, 3, H, W]` tensor on `device`.
pub fn images_to_tensor(images: &[RgbImage], device: &Device) -> Result<Tensor<4>, BatchError> {
    let first = images.first().ok_or(BatchError::Empty)?;
    let (width, height) = first.dimensions();
    let mut data = Vec::with_capacity(images.len() * 3 * (width * height) as usize);
    for (index, image) in images.iter().enumerate() {
        if image.dimensions() != (width, height) {
            return Err(BatchError::MixedSizes {
                index,
                got: image.dimensions(),
                want: (width, height),
            });
        }
        normalize_imagenet_into(image, &mut data);
    }
    let shape = [images.len(), 3, height as usize, width as usize];
    Ok(Tensor::<4>::from_data(TensorData::new(data, shape), device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::{IMAGENET_MEAN, IMAGENET_STD};

    #[test]
    fn batch_has_nchw_layout_and_normalised_values() {
        let device = Device::flex();
        let a = RgbImage::from_pixel(4, 3, image::Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(4, 3, image::Rgb([0, 0, 255]));
        let batch = images_to_tensor(&[a, b], &device).expect("batch");
        assert_eq!(batch.dims(), [2, 3, 3, 4]);
        let values = batch.into_data().try_to_vec::<f32>().expect("f32 data");
        let red_of_a = values[0];
        let blue_of_b = values[12 * 3 + 12 * 2];
        assert!((red_of_a - (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs() < 1e-5);
        assert!((blue_of_b - (1.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]).abs() < 1e-5);
    }

    #[test]
    fn mixed_sizes_are_refused() {
        let device = Device::flex();
        let a = RgbImage::new(4, 3);
        let b = RgbImage::new(3, 4);
        assert!(matches!(
            images_to_tensor(&[a, b], &device),
            Err(BatchError::MixedSizes { index: 1, .. })
        ));
        assert!(matches!(
            images_to_tensor(&[], &device),
            Err(BatchError::Empty)
        ));
    }
}
