//! What a frozen prefix computes, computed once: layer3 maps (for `finetune`) and pooled layer4 features (for
//! `baseline`), for every image and its mirror image.

use super::data::Prepared;
use crate::data::batcher::images_to_tensor;
use crate::model::inference::{values, InferenceError, Predictor};
use crate::model::ResNet18;
use burn::tensor::{Device, Tensor, TensorData};

/// Per-item feature blocks; item `2·i` is image `i`, item `2·i + 1` its mirror (when mirrors were cached).
#[derive(Debug, Clone)]
pub struct FeatureCache {
    /// Shape of one item (e.g. `[256, 14, 14]` or `[512]`).
    pub item_shape: Vec<usize>,
    pub data: Vec<f32>,
    pub with_mirrors: bool,
}

impl FeatureCache {
    fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }

    /// Item index of image `image`, mirrored or not.
    pub fn item(&self, image: usize, mirrored: bool) -> usize {
        if self.with_mirrors {
            2 * image + usize::from(mirrored)
        } else {
            image
        }
    }

    fn gather(&self, items: &[usize]) -> Vec<f32> {
        let n = self.item_len();
        let mut out = Vec::with_capacity(items.len() * n);
        for item in items {
            out.extend_from_slice(&self.data[item * n..(item + 1) * n]);
        }
        out
    }

    /// A `[B, C, H, W]` batch of cached maps.
    pub fn maps(&self, items: &[usize], device: &Device) -> Tensor<4> {
        let s = &self.item_shape;
        Tensor::<4>::from_data(
            TensorData::new(self.gather(items), [items.len(), s[0], s[1], s[2]]),
            device,
        )
    }

    /// A `[B, D]` batch of cached vectors.
    pub fn vectors(&self, items: &[usize], device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(
            TensorData::new(self.gather(items), [items.len(), self.item_len()]),
            device,
        )
    }
}

/// layer3 maps of every image (and its mirror when `mirrors`), by an inference-mode model.
pub fn layer3_maps(
    model: &ResNet18,
    data: &Prepared,
    mirrors: bool,
    batch_size: usize,
    device: &Device,
    progress: &dyn Fn(u64),
) -> Result<FeatureCache, InferenceError> {
    let mut cache = FeatureCache {
        item_shape: Vec::new(),
        data: Vec::new(),
        with_mirrors: mirrors,
    };
    let copies: Vec<(usize, bool)> = (0..data.len())
        .flat_map(|i| {
            if mirrors {
                vec![(i, false), (i, true)]
            } else {
                vec![(i, false)]
            }
        })
        .collect();
    let predictor = Predictor::new(model);
    for chunk in copies.chunks(batch_size.max(1)) {
        let images: Vec<_> = chunk
            .iter()
            .map(|(i, flip)| data.image(*i, *flip))
            .collect();
        let maps = predictor.to_layer3(images_to_tensor(&images, device)?)?; // [B, 256, H/16, W/16]
        if cache.item_shape.is_empty() {
            cache.item_shape = maps.dims()[1..].to_vec();
        }
        cache.data.extend(values(maps)?);
        progress(chunk.len() as u64);
    }
    Ok(cache)
}

/// Pooled layer4 features `[512]` of every cached layer3 item, by an inference-mode model.
pub fn pooled_from_layer3(
    model: &ResNet18,
    layer3: &FeatureCache,
    batch_size: usize,
    device: &Device,
) -> Result<FeatureCache, InferenceError> {
    let items = layer3.data.len() / layer3.item_len().max(1);
    let mut data = Vec::with_capacity(items * 512);
    let all: Vec<usize> = (0..items).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        data.extend(values(ResNet18::pool(
            model.layer4(layer3.maps(chunk, device)),
        ))?); // [B, 512]
    }
    Ok(FeatureCache {
        item_shape: vec![512],
        data,
        with_mirrors: layer3.with_mirrors,
    })
}
