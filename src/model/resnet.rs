//! torchvision-exact ResNet18: conv1 7×7/2 → BN → ReLU → maxpool 3×3/2 → layer1..layer4 (BasicBlocks, 1×1
//! downsample) → global average pool → fc. Field names follow torchvision's state-dict keys (`conv1`, `bn1`,
//! `layer1.0.conv1`, …, `fc`); the only difference is `downsample.0/1`, named `downsample.conv/bn` here and
//! remapped when weights are read or written (`super::weights`).
//!
//! The encoder returns its feature list `[stem, layer1, layer2, layer3, layer4]`, which the classifier head,
//! Grad-CAM and the U-Net share.

use super::{conv, pool};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Channels of the feature list `[stem, layer1, layer2, layer3, layer4]`.
pub const FEATURE_CHANNELS: [usize; 5] = [64, 64, 128, 256, 512];

/// torchvision's init for convolutions: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// The 1×1 projection on a block's shortcut when its shape changes (torchvision `downsample`).
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// torchvision's `BasicBlock`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || in_channels != out_channels).then(|| Downsample {
            conv: conv(in_channels, out_channels, 1, stride, 0, device),
            bn: batch_norm(out_channels, device),
        });
        Self {
            conv1: conv(in_channels, out_channels, 3, stride, 1, device),
            bn1: batch_norm(out_channels, device),
            conv2: conv(out_channels, out_channels, 3, 1, 1, device),
            bn2: batch_norm(out_channels, device),
            downsample,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(conv::forward(&d.conv, x.clone())), // [N, C_out, H/s, W/s]
            None => x.clone(),                                          // [N, C, H, W]
        };
        let out = relu(self.bn1.forward(conv::forward(&self.conv1, x))); // [N, C_out, H/s, W/s]
        let out = self.bn2.forward(conv::forward(&self.conv2, out)); // [N, C_out, H/s, W/s]
        relu(out + identity)
    }
}

fn layer(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    device: &Device,
) -> Vec<BasicBlock> {
    vec![
        BasicBlock::new(in_channels, out_channels, stride, device),
        BasicBlock::new(out_channels, out_channels, 1, device),
    ]
}

fn run_layer(blocks: &[BasicBlock], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, block| block.forward(x))
}

/// The feature maps of one forward pass (shapes for a 224×224 input).
pub struct Features {
    /// conv1 → bn1 → ReLU: `[N, 64, 112, 112]`.
    pub stem: Tensor<4>,
    /// `[N, 64, 56, 56]`
    pub layer1: Tensor<4>,
    /// `[N, 128, 28, 28]`
    pub layer2: Tensor<4>,
    /// `[N, 256, 14, 14]`
    pub layer3: Tensor<4>,
    /// `[N, 512, 7, 7]`
    pub layer4: Tensor<4>,
}

/// ResNet18 with an `fc` head of `num_classes` outputs.
#[derive(Module, Debug)]
pub struct ResNet18 {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub fc: Linear,
}

impl ResNet18 {
    /// A randomly initialised network, initialised as torchvision does (`resnet18(weights=None)`): Kaiming-normal
    /// (fan-out) convolutions, BN weight 1 / bias 0, and PyTorch's default `Linear` init for `fc`
    /// (uniform ±1/√512 for weight and bias).
    pub fn new(num_classes: usize, device: &Device) -> Self {
        Self {
            conv1: conv(3, 64, 7, 2, 3, device),
            bn1: batch_norm(64, device),
            layer1: layer(64, 64, 1, device),
            layer2: layer(64, 128, 2, device),
            layer3: layer(128, 256, 2, device),
            layer4: layer(256, 512, 2, device),
            fc: Self::new_fc(num_classes, device),
        }
    }

    /// A fresh `fc` head (PyTorch's default `Linear` init).
    pub fn new_fc(num_classes: usize, device: &Device) -> Linear {
        LinearConfig::new(FEATURE_CHANNELS[4], num_classes)
            .with_initializer(Initializer::KaimingUniform {
                gain: 1.0 / 3f64.sqrt(),
                fan_out_only: false,
            })
            .init(device)
    }

    /// Number of outputs of the head.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }

    /// conv1 → bn1 → ReLU. conv1 goes through [`conv::forward`] like every other convolution, so that
    /// `--gpu-conv matmul` reaches the 7×7 stem too (on the CPU its large maps keep burn's kernel).
    pub fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn1.forward(conv::forward(&self.conv1, x))) // [N, 64, H/2, W/2]
    }

    /// Every feature map, from the normalised image batch `x` (`[N, 3, H, W]`).
    pub fn features(&self, x: Tensor<4>) -> Features {
        let stem = self.stem(x); // [N, 64, H/2, W/2]
        let layer1 = self.stage(1, pool::max_pool_3x3_s2(stem.clone())); // [N, 64, H/4, W/4]
        let layer2 = self.stage(2, layer1.clone()); // [N, 128, H/8, W/8]
        let layer3 = self.stage(3, layer2.clone()); // [N, 256, H/16, W/16]
        let layer4 = self.stage(4, layer3.clone()); // [N, 512, H/32, W/32]
        Features {
            stem,
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// conv1 → bn1 → ReLU → max-pool: the input of layer1.
    pub fn stem_pooled(&self, x: Tensor<4>) -> Tensor<4> {
        pool::max_pool_3x3_s2(self.stem(x)) // [N, 64, H/4, W/4]
    }

    /// Residual stage `k` (1 = layer1 … 4 = layer4) on the previous stage's output; any other `k` returns `x`.
    pub fn stage(&self, k: usize, x: Tensor<4>) -> Tensor<4> {
        match k {
            1 => run_layer(&self.layer1, x), // [N, 64, H/4, W/4]
            2 => run_layer(&self.layer2, x), // [N, 128, H/8, W/8]
            3 => run_layer(&self.layer3, x), // [N, 256, H/16, W/16]
            4 => run_layer(&self.layer4, x), // [N, 512, H/32, W/32]
            _ => x,
        }
    }

    /// conv1 … layer3: the part a `layer4` fine-tune keeps frozen (its output can be cached).
    pub fn to_layer3(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem_pooled(x); // [N, 64, H/4, W/4]
        let x = self.stage(1, x); // [N, 64, H/4, W/4]
        let x = self.stage(2, x); // [N, 128, H/8, W/8]
        self.stage(3, x) // [N, 256, H/16, W/16]
    }

    /// layer4 on layer3's output.
    pub fn layer4(&self, layer3: Tensor<4>) -> Tensor<4> {
        self.stage(4, layer3) // [N, 512, H/32, W/32]
    }

    /// Global average pool of layer4's output: the 512-d feature a frozen backbone gives the head.
    pub fn pool(layer4: Tensor<4>) -> Tensor<2> {
        layer4.mean_dims(&[2, 3]).flatten::<2>(1, 3) // [N, 512]
    }

    /// avgpool → fc on layer4's output.
    pub fn head(&self, layer4: Tensor<4>) -> Tensor<2> {
        self.fc.forward(Self::pool(layer4)) // [N, classes]
    }

    /// Logits for a normalised image batch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head(self.layer4(self.to_layer3(x))) // [N, classes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_shapes_follow_torchvision() {
        let device = Device::flex();
        let model = ResNet18::new(4, &device);
        let x = Tensor::<4>::zeros([1, 3, 64, 64], &device);
        let f = model.features(x.clone());
        assert_eq!(f.stem.dims(), [1, 64, 32, 32]);
        assert_eq!(f.layer1.dims(), [1, 64, 16, 16]);
        assert_eq!(f.layer2.dims(), [1, 128, 8, 8]);
        assert_eq!(f.layer3.dims(), [1, 256, 4, 4]);
        assert_eq!(f.layer4.dims(), [1, 512, 2, 2]);
        assert_eq!(model.forward(x).dims(), [1, 4]);
        assert_eq!(model.num_classes(), 4);
    }

    #[test]
    fn parameter_count_matches_torchvision() {
        // torchvision resnet18(num_classes=4): 11,178,564 parameters (11,689,512 with the 1000-class head).
        // burn also counts BatchNorm running mean and variance (2 × 4,800 channels), which torchvision keeps
        // as buffers.
        let device = Device::flex();
        assert_eq!(ResNet18::new(4, &device).num_params(), 11_178_564 + 9_600);
        assert_eq!(
            ResNet18::new(1000, &device).num_params(),
            11_689_512 + 9_600
        );
    }
}
