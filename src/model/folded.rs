//! ResNet18 inference on the CPU with every BatchNorm folded into the convolution before it.
//!
//! In eval mode a BatchNorm is an affine map per channel, `y = γ·(x − μ)/√(σ² + ε) + β`, so it folds into the
//! convolution that feeds it: `W' = W·s` and `b' = β − μ·s` per output channel, with `s = γ/√(σ² + ε)`. What is
//! left of a BasicBlock is two convolutions with a bias, a residual and two ReLUs. Each convolution here is one
//! matrix product per image — `W'[C_out, C_in·k²] · cols[C_in·k², H_out·W_out]`, the 7×7 stem included — through
//! the `gemm` crate (the kernels burn flex uses for its own products), with the bias, the residual and the ReLU
//! written into the product's output as it is made, and the images of a batch in parallel. burn flex instead
//! runs BatchNorm, ReLU and the residual sum as passes of their own, converts every convolution's input to
//! NHWC on one thread, and convolves the 3-channel stem with scalar loops.
//!
//! The result is the same function as [`ResNet18`] in eval mode, to float rounding (tested to 1e-4); training,
//! Grad-CAM's backward pass and the GPU backends keep burn's layers.

use super::inference::{values, InferenceError};
use super::pool::max_pool_planes;
use super::resnet::{BasicBlock, ResNet18};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// Why a model cannot be folded (its inference then keeps burn's layers).
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Readback(#[from] InferenceError),
    #[error("no folded form here for a convolution with {0}")]
    Unsupported(String),
}

/// A batch of feature maps in host memory, `[N, C, H, W]`, row-major.
#[derive(Clone, Debug)]
struct Maps {
    data: Vec<f32>,
    dims: [usize; 4],
}

impl Maps {
    fn of(x: Tensor<4>) -> Result<Self, InferenceError> {
        let dims = x.dims();
        Ok(Self {
            data: values(x)?,
            dims,
        })
    }

    fn into_tensor(self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.data, self.dims), device)
    }

    /// Values of one image.
    fn image_len(&self) -> usize {
        let [_, c, h, w] = self.dims;
        c * h * w
    }

    fn max_pool(&self) -> Maps {
        let [n, c, h, w] = self.dims;
        if h == 0 || w == 0 {
            return self.clone();
        }
        let (data, [ho, wo]) = max_pool_planes(&self.data, [h, w]);
        Maps {
            data,
            dims: [n, c, ho, wo],
        }
    }
}

/// A convolution with its BatchNorm folded in: `weight` `[C_out, C_in·k²]` row-major, `bias` `[C_out]`.
#[derive(Debug)]
struct FoldedConv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl FoldedConv {
    fn fold(conv: &Conv2d, bn: &BatchNorm) -> Result<Self, FoldError> {
        let padding = match &conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && t == b && t == r => *t,
            PaddingConfig2d::Valid => 0,
            other => Err(FoldError::Unsupported(format!("padding {other:?}")))?,
        };
        let [kh, kw] = conv.kernel_size;
        let [sh, sw] = conv.stride;
        if kh != kw || sh != sw || sh == 0 || conv.dilation != [1, 1] || conv.groups != 1 {
            return Err(FoldError::Unsupported(format!(
                "kernel {:?}, stride {:?}, dilation {:?}, {} groups",
                conv.kernel_size, conv.stride, conv.dilation, conv.groups
            )));
        }
        let [channels_out, channels_in, _, _] = conv.weight.dims();
        let mut weight = values(conv.weight.val())?;
        let gamma = values(bn.gamma.val())?;
        let beta = values(bn.beta.val())?;
        let mean = values(bn.running_mean.value())?;
        let var = values(bn.running_var.value())?;
        let conv_bias = match &conv.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; channels_out],
        };
        let row = weight.len() / channels_out.max(1);
        let mut bias = Vec::with_capacity(channels_out);
        for (o, w) in weight.chunks_mut(row).enumerate() {
            // In f64, as PyTorch's fusion utilities do, so folding adds no rounding of its own.
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + bn.epsilon).sqrt();
            w.iter_mut()
                .for_each(|v| *v = (f64::from(*v) * scale) as f32);
            bias.push(
                (f64::from(beta[o]) + (f64::from(conv_bias[o]) - f64::from(mean[o])) * scale)
                    as f32,
            );
        }
        Ok(Self {
            weight,
            bias,
            channels: [channels_in, channels_out],
            kernel: kh,
            stride: sh,
            padding,
        })
    }

    fn out_size(&self, [h, w]: [usize; 2]) -> [usize; 2] {
        let span = |n: usize| (n + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1;
        [span(h), span(w)]
    }

    /// `relu?(conv(x) + bias + residual?)`.
    fn forward(&self, x: &Maps, residual: Option<&Maps>, relu: bool) -> Maps {
        let [n, c, h, w] = x.dims;
        let [ho, wo] = self.out_size([h, w]);
        let [_, co] = self.channels;
        let pixels = ho * wo;
        let rows = c * self.kernel * self.kernel;
        let pointwise = self.kernel == 1 && self.stride == 1 && self.padding == 0;
        // Few images for many threads: parallelise inside each product instead.
        let parallel = if n < rayon::current_num_threads() {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        let in_len = x.image_len();
        let mut data = vec![0.0f32; n * co * pixels];
        data.par_chunks_mut(co * pixels.max(1))
            .enumerate()
            .for_each_init(Vec::new, |cols, (b, out)| {
                let image = &x.data[b * in_len..(b + 1) * in_len];
                for (o, plane) in out.chunks_mut(pixels.max(1)).enumerate() {
                    match residual {
                        Some(r) => {
                            let from = (b * co + o) * pixels;
                            plane
                                .iter_mut()
                                .zip(&r.data[from..from + pixels])
                                .for_each(|(v, r)| *v = r + self.bias[o]);
                        }
                        None => plane.fill(self.bias[o]),
                    }
                }
                let rhs: &[f32] = if pointwise {
                    image
                } else {
                    self.im2col(image, [h, w], [ho, wo], cols);
                    cols
                };
                accumulate_product([co, pixels, rows], out, &self.weight, rhs, parallel);
                if relu {
                    // `max(0)` would turn a NaN into 0; burn's and PyTorch's ReLU keep it. A select, not a
                    // branch, so that it vectorises.
                    out.iter_mut()
                        .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
                }
            });
        Maps {
            data,
            dims: [n, co, ho, wo],
        }
    }

    /// The patches of one image as `[C_in·k², H_out·W_out]`: row `(c·k + i)·k + j` holds tap `(i, j)` of channel
    /// `c` for every output pixel, zero where the tap falls in the padding.
    fn im2col(&self, image: &[f32], [h, w]: [usize; 2], [ho, wo]: [usize; 2], cols: &mut Vec<f32>) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        cols.resize(self.channels[0] * k * k * ho * wo, 0.0);
        for (r, row) in cols.chunks_mut(ho * wo).enumerate() {
            let (channel, i, j) = (r / (k * k), (r / k) % k, r % k);
            let plane = &image[channel * h * w..(channel + 1) * h * w];
            // Output columns whose tap lands inside the image: ox·s + j − p ∈ [0, w).
            let first = p.saturating_sub(j).div_ceil(s).min(wo);
            let end = if w + p > j {
                ((w + p - j - 1) / s + 1).min(wo)
            } else {
                0
            }
            .max(first);
            for (oy, line) in row.chunks_mut(wo).enumerate() {
                let y = oy * s + i;
                if y < p || y - p >= h {
                    line.fill(0.0);
                    continue;
                }
                let source = &plane[(y - p) * w..(y - p + 1) * w];
                line[..first].fill(0.0);
                line[end..].fill(0.0);
                let start = first * s + j - p;
                if s == 1 {
                    line[first..end].copy_from_slice(&source[start..start + end - first]);
                } else {
                    line[first..end]
                        .iter_mut()
                        .zip(source[start..].iter().step_by(s))
                        .for_each(|(v, x)| *v = *x);
                }
            }
        }
    }
}

/// `dst[m×n] += lhs[m×k] · rhs[k×n]`, all row-major.
fn accumulate_product(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    parallelism: gemm::Parallelism,
) {
    // The shapes come from the convolution that made these buffers; a mismatch is a bug here, and these checks
    // are what keeps the raw-pointer product below inside the slices.
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: every index the product touches, row·stride + column with the strides given, lies below m·n in
    // `dst`, m·k in `lhs` and k·n in `rhs`, which the assert checked; `dst` is borrowed mutably, so it aliases
    // neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A BasicBlock with both BatchNorms (and the shortcut's) folded.
#[derive(Debug)]
struct FoldedBlock {
    conv1: FoldedConv,
    conv2: FoldedConv,
    downsample: Option<FoldedConv>,
}

impl FoldedBlock {
    fn fold(block: &BasicBlock) -> Result<Self, FoldError> {
        Ok(Self {
            conv1: FoldedConv::fold(&block.conv1, &block.bn1)?,
            conv2: FoldedConv::fold(&block.conv2, &block.bn2)?,
            downsample: block
                .downsample
                .as_ref()
                .map(|d| FoldedConv::fold(&d.conv, &d.bn))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Maps) -> Maps {
        let out = self.conv1.forward(x, None, true);
        match &self.downsample {
            Some(d) => self
                .conv2
                .forward(&out, Some(&d.forward(x, None, false)), true),
            None => self.conv2.forward(&out, Some(x), true),
        }
    }
}

/// ResNet18's convolutional part (conv1 … layer4) with BatchNorm folded, for inference on the CPU. Built once
/// per model ([`FoldedResNet18::new`]); the head stays the model's own.
#[derive(Debug)]
pub struct FoldedResNet18 {
    conv1: FoldedConv,
    layers: [Vec<FoldedBlock>; 4],
}

impl FoldedResNet18 {
    /// Fold `model`'s BatchNorms (their running statistics: eval mode) into its convolutions.
    pub fn new(model: &ResNet18) -> Result<Self, FoldError> {
        let layer = |blocks: &[BasicBlock]| -> Result<Vec<FoldedBlock>, FoldError> {
            blocks.iter().map(FoldedBlock::fold).collect()
        };
        Ok(Self {
            conv1: FoldedConv::fold(&model.conv1, &model.bn1)?,
            layers: [
                layer(&model.layer1)?,
                layer(&model.layer2)?,
                layer(&model.layer3)?,
                layer(&model.layer4)?,
            ],
        })
    }

    fn stage(&self, k: usize, x: Maps) -> Maps {
        self.layers[k].iter().fold(x, |x, block| block.forward(&x))
    }

    /// The output of stage `last` (1 = layer1 … 4 = layer4) for a normalised image batch `x` (`[N, 3, H, W]`):
    /// layer4's is what [`ResNet18::head`] takes, layer3's what a `layer4` fine-tune caches.
    pub fn through(&self, x: Tensor<4>, last: usize) -> Result<Tensor<4>, InferenceError> {
        let device = x.device();
        let stem = self.conv1.forward(&Maps::of(x)?, None, true); // [N, 64, H/2, W/2]
        let out = (0..last.min(4)).fold(stem.max_pool(), |x, k| self.stage(k, x)); // [N, C, H/2^(last+1), …]
        Ok(out.into_tensor(&device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Param, RunningState};
    use burn::tensor::Distribution;

    /// BatchNorm with statistics and affine parameters far from the identity, so a folding error shows.
    fn randomise(bn: &mut BatchNorm, device: &Device) {
        let [c] = bn.gamma.dims();
        let uniform = |lo, hi| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
        bn.gamma = Param::from_tensor(uniform(0.5, 1.5));
        bn.beta = Param::from_tensor(uniform(-0.5, 0.5));
        bn.running_mean = RunningState::new(uniform(-0.3, 0.3));
        bn.running_var = RunningState::new(uniform(0.5, 2.0));
    }

    fn model(device: &Device) -> ResNet18 {
        device.seed(11);
        let mut model = ResNet18::new(4, device);
        randomise(&mut model.bn1, device);
        for block in [
            &mut model.layer1,
            &mut model.layer2,
            &mut model.layer3,
            &mut model.layer4,
        ]
        .into_iter()
        .flatten()
        {
            randomise(&mut block.bn1, device);
            randomise(&mut block.bn2, device);
            if let Some(d) = block.downsample.as_mut() {
                randomise(&mut d.bn, device);
            }
        }
        model
    }

    /// Largest |a − b| relative to the largest |b|.
    fn relative_difference(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    #[test]
    fn folded_features_equal_burns_layers_in_eval_mode() {
        let device = Device::flex();
        let model = model(&device);
        let folded = FoldedResNet18::new(&model).expect("folds");
        // Batch 3 (images in parallel) and batch 1 (parallel products), an even and an odd size.
        for dims in [[3, 3, 64, 64], [1, 3, 45, 37]] {
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let theirs = model.features(x.clone());
            for (last, b) in [theirs.layer1, theirs.layer2, theirs.layer3, theirs.layer4]
                .into_iter()
                .enumerate()
            {
                let a = folded.through(x.clone(), last + 1).expect("stage");
                assert_eq!(a.dims(), b.dims(), "layer{} {dims:?}", last + 1);
                let d = relative_difference(a, b);
                assert!(d < 1e-4, "layer{} {dims:?}: relative max |Δ| {d}", last + 1);
            }
            let logits = model.head(folded.through(x.clone(), 4).expect("layer4"));
            let reference = model.forward(x);
            let d = (logits - reference).abs().max().into_scalar::<f32>();
            assert!(d < 1e-4, "logits {dims:?}: max |Δ| {d}");
        }
    }

    #[test]
    fn a_nan_input_stays_nan_through_relu() {
        let device = Device::flex();
        let model = model(&device);
        let folded = FoldedResNet18::new(&model).expect("folds");
        let mut values = vec![0.5f32; 3 * 32 * 32];
        values[0] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 32, 32]), &device);
        let out = folded.through(x.clone(), 1).expect("layer1");
        let ours = super::values(out).expect("values");
        let theirs = super::values(model.features(x).layer1).expect("values");
        assert_eq!(
            ours.iter().filter(|v| v.is_nan()).count(),
            theirs.iter().filter(|v| v.is_nan()).count()
        );
        assert!(ours.iter().any(|v| v.is_nan()));
    }
}
