//! The segmentation network: a U-Net whose encoder is the classifier's ResNet18 (its weights copied from a run)
//! and whose decoder is segmentation_models_pytorch's `Unet("resnet18")` decoder: five blocks of nearest ×2
//! upsampling, concatenation with the encoder feature of that size (layer3, layer2, layer1, stem; none for the
//! last), and two 3×3 conv–BN–ReLU; decoder channels (256, 128, 64, 32, 16); a 3×3 head to one channel of mask
//! logits. Input sides must be multiples of 32 (128×128 → 128×128).

use super::resnet::{Features, ResNet18, FEATURE_CHANNELS};
use super::weights::{self, WeightsError};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use std::path::Path;

/// smp's decoder channels for a five-stage encoder.
pub const DECODER_CHANNELS: [usize; 5] = [256, 128, 64, 32, 16];

fn conv3x3(in_channels: usize, out_channels: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(device)
}

/// Nearest-neighbour ×2 upsampling (PyTorch's `F.interpolate(scale_factor=2, mode="nearest")`: output pixel
/// (i, j) takes input pixel (⌊i/2⌋, ⌊j/2⌋)) as a broadcast and a reshape, whose backward pass is a plain sum.
pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1]) // [N, C, h, 1, w, 1]
        .expand([n, c, h, 2, w, 2]) // [N, C, h, 2, w, 2]
        .reshape([n, c, 2 * h, 2 * w]) // [N, C, 2h, 2w]
}

/// Upsample, concatenate the skip, two conv–BN–ReLU.
#[derive(Module, Debug)]
pub struct DecoderBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
}

impl DecoderBlock {
    pub fn new(
        in_channels: usize,
        skip_channels: usize,
        out_channels: usize,
        device: &Device,
    ) -> Self {
        DecoderBlock {
            conv1: conv3x3(in_channels + skip_channels, out_channels, false, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv3x3(out_channels, out_channels, false, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
        }
    }

    /// `x` `[N, C, h, w]` (and `skip` `[N, S, 2h, 2w]`) → `[N, out, 2h, 2w]`.
    pub fn forward(&self, x: Tensor<4>, skip: Option<Tensor<4>>) -> Tensor<4> {
        let up = upsample_nearest_2x(x); // [N, C, 2h, 2w]
        let x = match skip {
            Some(skip) => Tensor::cat(vec![up, skip], 1), // [N, C + S, 2h, 2w]
            None => up,
        };
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        relu(self.bn2.forward(self.conv2.forward(x)))
    }
}

/// ResNet18 encoder + U-Net decoder + 1-channel head.
#[derive(Module, Debug)]
pub struct UNet {
    pub encoder: ResNet18,
    pub blocks: Vec<DecoderBlock>,
    pub head: Conv2d,
}

impl UNet {
    /// A U-Net around `encoder` (typically the fine-tuned classifier of a run; its weights are kept as they are),
    /// with a freshly initialised decoder on `device`.
    pub fn new(encoder: ResNet18, device: &Device) -> Self {
        // Skips for blocks 0..4: layer3, layer2, layer1, stem, none.
        let skips = [
            FEATURE_CHANNELS[3],
            FEATURE_CHANNELS[2],
            FEATURE_CHANNELS[1],
            FEATURE_CHANNELS[0],
            0,
        ];
        let mut in_channels = FEATURE_CHANNELS[4];
        let blocks = DECODER_CHANNELS
            .iter()
            .zip(skips)
            .map(|(&out, skip)| {
                let block = DecoderBlock::new(in_channels, skip, out, device);
                in_channels = out;
                block
            })
            .collect();
        UNet {
            encoder,
            blocks,
            head: conv3x3(DECODER_CHANNELS[4], 1, true, device),
        }
    }

    /// Mask logits `[N, 1, H, W]` for a normalised batch `[N, 3, H, W]` (H and W multiples of 32).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.decode(self.encoder.features(x))
    }

    /// Mask logits `[N, 1, H, W]` from the encoder's feature maps (of an `[N, 3, H, W]` batch).
    pub fn decode(&self, f: Features) -> Tensor<4> {
        let skips = [
            Some(f.layer3),
            Some(f.layer2),
            Some(f.layer1),
            Some(f.stem),
            None,
        ];
        let mut d = f.layer4; // [N, 512, H/32, W/32]
        for (block, skip) in self.blocks.iter().zip(skips) {
            d = block.forward(d, skip);
        }
        self.head.forward(d) // [N, 1, H, W]
    }
}

/// Save a U-Net as safetensors: the encoder under `encoder.` with torchvision's key names and layouts, the decoder
/// under `blocks.N.` and `head.`; `metadata` goes into the header. Written to a temporary file and renamed.
pub fn save_unet(
    unet: &UNet,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<(), WeightsError> {
    weights::save_safetensors(unet, path, metadata)
}

/// segmentation_models_pytorch's names for the decoder and head (`Unet("resnet18", classes=1)`); the encoder's
/// are torchvision's under `encoder.` in both.
const OURS_TO_SMP: [(&str, &str); 5] = [
    (r"^blocks\.(\d+)\.conv1\.", "decoder.blocks.${1}.conv1.0."),
    (r"^blocks\.(\d+)\.bn1\.", "decoder.blocks.${1}.conv1.1."),
    (r"^blocks\.(\d+)\.conv2\.", "decoder.blocks.${1}.conv2.0."),
    (r"^blocks\.(\d+)\.bn2\.", "decoder.blocks.${1}.conv2.1."),
    (r"^head\.", "segmentation_head.0."),
];
const SMP_TO_OURS: [(&str, &str); 5] = [
    (r"^decoder\.blocks\.(\d+)\.conv1\.0\.", "blocks.${1}.conv1."),
    (r"^decoder\.blocks\.(\d+)\.conv1\.1\.", "blocks.${1}.bn1."),
    (r"^decoder\.blocks\.(\d+)\.conv2\.0\.", "blocks.${1}.conv2."),
    (r"^decoder\.blocks\.(\d+)\.conv2\.1\.", "blocks.${1}.bn2."),
    (r"^segmentation_head\.0\.", "head."),
];

/// Save a U-Net as segmentation_models_pytorch names it: `smp.Unet("resnet18", encoder_weights=None, classes=1)`
/// loads the file with `load_state_dict(safetensors.torch.load_file(path))`, strictly (the encoder's unused
/// classifier head is left out; every BatchNorm gets the `num_batches_tracked` PyTorch expects, 0).
pub fn save_unet_smp(
    unet: &UNet,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<(), WeightsError> {
    let write_error = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let staged = weights::temporary_path(&path.with_extension("staged"));
    let without_head: fn(&str, &str) -> bool = |tensor, _| !tensor.starts_with("encoder.fc.");
    weights::write_safetensors(unet, &staged, metadata, Some(without_head), &OURS_TO_SMP)?;
    let bytes = std::fs::read(&staged).map_err(|e| write_error(e.to_string()));
    let _ = std::fs::remove_file(&staged);
    let bytes = bytes?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| write_error(e.to_string()))?;
    let file =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| write_error(e.to_string()))?;
    let zero = 0i64.to_le_bytes();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = file.tensors();
    for (name, _) in file.tensors() {
        if let Some(layer) = name.strip_suffix(".running_mean") {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![], &zero)
                .map_err(|e| write_error(e.to_string()))?;
            tensors.push((format!("{layer}.num_batches_tracked"), view));
        }
    }
    let temporary = weights::temporary_path(path);
    safetensors::serialize_to_file(tensors, header.metadata().clone(), &temporary)
        .map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| write_error(e.to_string()))
}

/// Load a U-Net saved by [`save_unet`] (an encoder with `classes` outputs) onto `device`, or one in
/// segmentation_models_pytorch's names ([`save_unet_smp`], or trained with smp: `Unet("resnet18", classes=1)`),
/// whose encoder has no classifier head (it keeps a fresh one; the U-Net does not use it). Every other tensor
/// must be there with its shape, and nothing else.
pub fn load_unet(path: &Path, classes: usize, device: &Device) -> Result<UNet, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::NotFound(path.to_path_buf()));
    }
    let smp = weights::safetensors_keys(path)?
        .iter()
        .any(|key| key.starts_with("decoder.blocks."));
    let renames: &[(&str, &str)] = if smp { &SMP_TO_OURS } else { &[] };
    let mut unet = UNet::new(ResNet18::new(classes, device), device);
    let mut store = weights::TORCHVISION_TO_OURS
        .iter()
        .chain(renames)
        .fold(SafetensorsStore::from_file(path), |s, (from, to)| {
            s.with_key_remapping(*from, *to)
        })
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false);
    let result = unet.load_from(&mut store).map_err(|e| WeightsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !result.errors.is_empty() {
        return Err(WeightsError::Shape {
            path: path.to_path_buf(),
            tensors: result.errors.iter().map(|e| format!("{e:?}")).collect(),
        });
    }
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(t, _)| t.clone())
        .filter(|t| !(smp && t.starts_with("encoder.fc.")))
        .collect();
    if !missing.is_empty() {
        return Err(WeightsError::Missing {
            path: path.to_path_buf(),
            tensors: missing,
        });
    }
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|t| !t.ends_with("num_batches_tracked"))
        .cloned()
        .collect();
    if !unused.is_empty() {
        return Err(WeightsError::Unexpected {
            path: path.to_path_buf(),
            tensors: unused,
        });
    }
    // A half-precision file (a U-Net exported from PyTorch after `.half()`) computes in f32 like ours.
    Ok(weights::cast_floats(unet, burn::tensor::DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inference::values;
    use burn::tensor::Distribution;

    #[test]
    fn a_128_pixel_batch_gives_128_pixel_logits_and_the_encoder_is_the_classifiers() {
        let device = crate::device::inference();
        device.seed(11);
        let classifier = ResNet18::new(4, &device);
        let unet = UNet::new(classifier.clone(), &device);
        let x = Tensor::<4>::random([2, 3, 128, 128], Distribution::Normal(0.0, 1.0), &device);
        let logits = unet.forward(x.clone());
        assert_eq!(logits.dims(), [2, 1, 128, 128]);
        assert_eq!(unet.blocks.len(), 5);
        // The encoder computes exactly what the classifier computes.
        let a = values(unet.encoder.features(x.clone()).layer4).expect("unet");
        let b = values(classifier.features(x).layer4).expect("classifier");
        assert_eq!(a, b);
        // The decoder's size: segmentation_models_pytorch 0.6.0's Unet("resnet18") decoder + head has
        // 3,151,552 + 145 parameters (counted at dev time); ours counts BatchNorm running statistics too
        // (2 × 992 channels).
        let decoder: usize =
            unet.blocks.iter().map(|b| b.num_params()).sum::<usize>() + unet.head.num_params();
        assert_eq!(decoder, 3_151_552 + 145 + 2 * 992);
    }

    #[test]
    fn upsampling_matches_nearest_interpolation() {
        use burn::tensor::module::interpolate;
        use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
        let device = crate::device::inference();
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let reference = interpolate(
            x.clone(),
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([10, 14]),
        );
        assert_eq!(
            values(upsample_nearest_2x(x)).expect("ours"),
            values(reference).expect("interpolate")
        );
    }

    #[test]
    fn a_saved_unet_loads_back_with_every_tensor_and_the_same_output() {
        let device = crate::device::inference();
        device.seed(5);
        let unet = UNet::new(ResNet18::new(4, &device), &device);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("unet.safetensors");
        save_unet(&unet, &path, &[("k", "v".into())]).expect("save");
        let loaded = load_unet(&path, 4, &device).expect("load");
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(
            values(unet.forward(x.clone())).expect("a"),
            values(loaded.forward(x)).expect("b")
        );
        // A classifier file is not a U-Net: the decoder is missing.
        let classifier = dir.path().join("classifier.safetensors");
        crate::model::weights::save_torchvision(&ResNet18::new(4, &device), &classifier, &[])
            .expect("save classifier");
        assert!(matches!(
            load_unet(&classifier, 4, &device),
            Err(WeightsError::Missing { .. })
        ));
    }
}
