//! The U-Net decoder trained on the CPU with hand-written forward and backward passes.
//!
//! With the encoder frozen (the default), a training step is the decoder's: five blocks of upsampling,
//! concatenation, two 3×3 convolution → BatchNorm (batch statistics) → ReLU, then the 3×3 head, the loss, and
//! the way back. burn's autodiff runs each convolution's weight gradient as a convolution whose kernel is the
//! whole output map, and its input gradient as a transposed convolution; here every convolution, forward and back,
//! is one matrix product over the whole batch through the `gemm` crate:
//!
//! * forward: `Y[C_out, N·H·W] = W[C_out, C_in·9] · cols[C_in·9, N·H·W]`;
//! * weight gradient: `dWᵀ = cols · dYᵀ` (both operands along their rows; `dY · colsᵀ` packs five times slower);
//! * input gradient: `dcols = Wᵀ · dY`, scattered back (col2im), and only for the channels that need one: a
//!   block's skip connection comes from the frozen encoder, so its share of the gradient is never made.
//!
//! Maps are kept channel-major, `[C, N, H, W]`, so that a channel's values over the batch are one run of memory
//! (BatchNorm's statistics) and a concatenation is an append. The function, its gradients, burn's Adam and its
//! BatchNorm running averages are those of [`UNet::decode`] trained with burn (tested against burn's autodiff run
//! in f64, which the host's gradients match to about 1e-6; burn's own f32 ones differ by up to 1e-3).

use super::segmentation::DiceLoss;
use crate::model::inference::{values, InferenceError};
use crate::model::matmul::{product, View};
use crate::model::resnet::Features;
use crate::model::unet::{DecoderBlock, UNet};
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::BatchNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Maps `[C, N, H, W]`, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
struct Planes {
    data: Vec<f32>,
    dims: [usize; 4],
}

impl Planes {
    /// Channel-major copy of an `[N, C, H, W]` tensor's values.
    fn of(x: Tensor<4>) -> Result<Self, InferenceError> {
        let [n, c, h, w] = x.dims();
        let nchw = values(x)?;
        let plane = h * w;
        let mut data = vec![0.0; nchw.len()];
        for (i, image) in nchw.chunks(c * plane).enumerate() {
            for (k, channel) in image.chunks(plane).enumerate() {
                data[(k * n + i) * plane..(k * n + i + 1) * plane].copy_from_slice(channel);
            }
        }
        Ok(Planes {
            data,
            dims: [c, n, h, w],
        })
    }

    /// Values per channel (N·H·W).
    fn run(&self) -> usize {
        let [_, n, h, w] = self.dims;
        n * h * w
    }

    /// Nearest-neighbour ×2 upsampling.
    fn upsample(&self) -> Planes {
        let [c, n, h, w] = self.dims;
        let mut data = vec![0.0; c * n * 4 * h * w];
        data.par_chunks_mut(4 * w)
            .zip(self.data.par_chunks(w))
            .for_each(|(pair, line)| {
                let (top, bottom) = pair.split_at_mut(2 * w);
                for (x, v) in line.iter().enumerate() {
                    top[2 * x] = *v;
                    top[2 * x + 1] = *v;
                }
                bottom.copy_from_slice(top);
            });
        Planes {
            data,
            dims: [c, n, 2 * h, 2 * w],
        }
    }

    /// The adjoint of [`Planes::upsample`]: each pixel the sum of the 2×2 it was copied to.
    fn downsample_sum(&self) -> Planes {
        let [c, n, h, w] = self.dims;
        let (ho, wo) = (h / 2, w / 2);
        let mut data = vec![0.0; c * n * ho * wo];
        data.par_chunks_mut(wo.max(1))
            .zip(self.data.par_chunks(2 * w))
            .for_each(|(line, pair)| {
                let (top, bottom) = pair.split_at(w);
                for (x, v) in line.iter_mut().enumerate() {
                    *v = top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1];
                }
            });
        Planes {
            data,
            dims: [c, n, ho, wo],
        }
    }

    /// These channels followed by `other`'s (same batch and size).
    fn concat(mut self, other: &Planes) -> Planes {
        self.data.extend_from_slice(&other.data);
        self.dims[0] += other.dims[0];
        self
    }
}

/// A trainable tensor with its gradient and Adam's moments.
#[derive(Debug)]
struct Weights {
    value: Vec<f32>,
    grad: Vec<f32>,
    moment_1: Vec<f32>,
    moment_2: Vec<f32>,
}

impl Weights {
    fn new(value: Vec<f32>) -> Self {
        let n = value.len();
        Weights {
            value,
            grad: vec![0.0; n],
            moment_1: vec![0.0; n],
            moment_2: vec![0.0; n],
        }
    }

    fn of(param: &Param<Tensor<1>>) -> Result<Self, InferenceError> {
        Ok(Self::new(values(param.val())?))
    }

    /// burn's Adam step (β = 0.9, 0.999; no weight decay) at step `time` (from 1).
    fn adam(&mut self, rate: f64, time: i32, epsilon: f32) {
        let (beta_1, beta_2) = (0.9f32, 0.999f32);
        let correction_2 = (1.0 - beta_2.powi(time)).sqrt();
        let factor = correction_2 / (1.0 - beta_1.powi(time));
        let epsilon = epsilon * correction_2;
        let rate = rate as f32;
        self.value
            .iter_mut()
            .zip(&self.grad)
            .zip(self.moment_1.iter_mut().zip(self.moment_2.iter_mut()))
            .for_each(|((v, g), (m, s))| {
                *m = *m * beta_1 + g * (1.0 - beta_1);
                *s = *s * beta_2 + g * g * (1.0 - beta_2);
                *v -= rate * (*m * factor / (s.sqrt() + epsilon));
            });
    }
}

/// The same tensor with new values.
fn replaced<const D: usize>(param: Param<Tensor<D>>, value: &[f32]) -> Param<Tensor<D>> {
    param.map(|t| {
        let (dims, device) = (t.dims(), t.device());
        Tensor::from_data(TensorData::new(value.to_vec(), dims), &device)
    })
}

/// The transpose of a row-major `rows`×`columns` matrix.
fn transpose(m: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; rows * columns];
    if rows == 0 || columns == 0 {
        return out;
    }
    // Tiles of TILE output rows (input columns) in parallel; within each, the input read TILE rows at a time.
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(block, chunk)| {
            let c0 = block * TILE;
            let width = chunk.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let source = &m[r * columns + c0..r * columns + c0 + width];
                    for (k, v) in source.iter().enumerate() {
                        chunk[k * rows + r] = *v;
                    }
                }
            }
        });
    out
}

/// The 3×3 taps (padding 1) of every pixel: row `c·9 + 3i + j` of `cols` holds, for each pixel of the batch, the
/// value of channel `c` at offset `(i − 1, j − 1)`, zero outside the map.
fn im2col(x: &Planes, cols: &mut Vec<f32>) {
    let [c, _, h, w] = x.dims;
    let run = x.run();
    cols.resize(c * 9 * run, 0.0);
    cols.par_chunks_mut(run.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let (channel, i, j) = (r / 9, (r / 3) % 3, r % 3);
            let plane = &x.data[channel * run..(channel + 1) * run];
            for (k, line) in row.chunks_mut(w.max(1)).enumerate() {
                let (image, y) = (k / h, k % h);
                let sy = y + i;
                if sy < 1 || sy > h {
                    line.fill(0.0);
                    continue;
                }
                let source = &plane[(image * h + sy - 1) * w..(image * h + sy) * w];
                shift_into(line, source, j, false);
            }
        });
}

/// `line[x] = source[x + j − 1]` (or `+=` with `add`), zero (or unchanged) where that falls outside.
fn shift_into(line: &mut [f32], source: &[f32], j: usize, add: bool) {
    let w = line.len();
    let (to, from) = match j {
        0 => (1..w, 0..w.saturating_sub(1)),
        1 => (0..w, 0..w),
        _ => (0..w.saturating_sub(1), 1..w),
    };
    if !add {
        if j == 0 && w > 0 {
            line[0] = 0.0;
        }
        if j == 2 && w > 0 {
            line[w - 1] = 0.0;
        }
        line[to].copy_from_slice(&source[from]);
    } else {
        line[to]
            .iter_mut()
            .zip(&source[from])
            .for_each(|(v, s)| *v += s);
    }
}

/// The adjoint of [`im2col`] for the first `channels` channels of maps of `dims`: every tap's value added back
/// to the pixel it was read from.
fn col2im(cols: &[f32], channels: usize, dims: [usize; 4]) -> Planes {
    let [_, n, h, w] = dims;
    let run = n * h * w;
    let mut data = vec![0.0; channels * run];
    data.par_chunks_mut(run.max(1))
        .enumerate()
        .for_each(|(channel, plane)| {
            for tap in 0..9 {
                let (i, j) = (tap / 3, tap % 3);
                let row = &cols[(channel * 9 + tap) * run..(channel * 9 + tap + 1) * run];
                for image in 0..n {
                    for y in 0..h {
                        // Output pixel (y, x) read input (y + i − 1, x + j − 1).
                        let sy = y + i;
                        if sy < 1 || sy > h {
                            continue;
                        }
                        let source = &row[(image * h + y) * w..(image * h + y + 1) * w];
                        let line = &mut plane[(image * h + sy - 1) * w..(image * h + sy) * w];
                        // line[x + j − 1] += source[x], i.e. line[x'] += source[x' − j + 1].
                        shift_into(line, source, 2 - j, true);
                    }
                }
            }
        });
    Planes {
        data,
        dims: [channels, n, h, w],
    }
}

/// A 3×3 convolution of stride 1 and padding 1, `weight` `[C_out, C_in·9]`.
#[derive(Debug)]
struct Conv {
    weight: Weights,
    bias: Option<Weights>,
    channels: [usize; 2],
}

impl Conv {
    fn of(conv: &Conv2d) -> Result<Self, InferenceError> {
        let [out, input, kh, kw] = conv.weight.dims();
        if [kh, kw] != [3, 3] || conv.stride != [1, 1] || conv.groups != 1 {
            return Err(InferenceError::Mismatch(format!(
                "the decoder's host trainer takes 3×3 convolutions of stride 1, not {:?} of stride {:?}",
                conv.kernel_size, conv.stride
            )));
        }
        Ok(Conv {
            weight: Weights::new(values(conv.weight.val())?),
            bias: conv.bias.as_ref().map(Weights::of).transpose()?,
            channels: [input, out],
        })
    }

    fn write_into(&self, mut conv: Conv2d) -> Conv2d {
        conv.weight = replaced(conv.weight, &self.weight.value);
        if let (Some(param), Some(bias)) = (conv.bias.take(), &self.bias) {
            conv.bias = Some(replaced(param, &bias.value));
        }
        conv
    }

    fn forward(&self, x: &Planes, cols: &mut Vec<f32>) -> Planes {
        let [input, out] = self.channels;
        let run = x.run();
        im2col(x, cols);
        let mut data = vec![0.0; out * run];
        product(
            [out, run, input * 9],
            &mut data,
            View::rows(&self.weight.value, input * 9),
            View::rows(cols, run),
            false,
            gemm::Parallelism::Rayon(0),
        );
        if let Some(bias) = &self.bias {
            data.par_chunks_mut(run.max(1))
                .zip(&bias.value)
                .for_each(|(plane, b)| plane.iter_mut().for_each(|v| *v += b));
        }
        Planes {
            data,
            dims: [out, x.dims[1], x.dims[2], x.dims[3]],
        }
    }

    /// The gradients of the weights (set) for input `x` and output gradient `dy`; the input gradient of the
    /// first `channels` channels, if any.
    fn backward(
        &mut self,
        x: &Planes,
        dy: &Planes,
        channels: usize,
        cols: &mut Vec<f32>,
    ) -> Option<Planes> {
        let [input, out] = self.channels;
        let run = x.run();
        im2col(x, cols);
        // dWᵀ = cols · dYᵀ: both operands then run along their rows (`dY · colsᵀ` would gather both at a stride of
        // N·H·W, and its packing took five times as long as the product).
        let dy_t = transpose(&dy.data, out, run);
        let mut grad_t = vec![0.0; input * 9 * out];
        product(
            [input * 9, out, run],
            &mut grad_t,
            View::rows(cols, run),
            View::rows(&dy_t, out),
            false,
            gemm::Parallelism::Rayon(0),
        );
        self.weight.grad = transpose(&grad_t, input * 9, out);
        if let Some(bias) = &mut self.bias {
            bias.grad = dy.data.chunks(run.max(1)).map(|p| p.iter().sum()).collect();
        }
        if channels == 0 {
            return None;
        }
        let rows = channels * 9;
        cols.resize(rows * run, 0.0);
        product(
            [rows, run, out],
            cols,
            View::transposed(&self.weight.value, input * 9),
            View::rows(&dy.data, run),
            false,
            gemm::Parallelism::Rayon(0),
        );
        Some(col2im(cols, channels, x.dims))
    }
}

/// BatchNorm with batch statistics, followed by a ReLU.
#[derive(Debug)]
struct Norm {
    gamma: Weights,
    beta: Weights,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    momentum: f64,
    epsilon: f64,
}

/// What a BatchNorm → ReLU keeps for its backward pass.
#[derive(Debug, Default)]
struct NormCache {
    /// The normalised input, `(x − μ)/√(σ² + ε)`.
    normalised: Vec<f32>,
    inverse_std: Vec<f32>,
    /// The output, after the ReLU.
    output: Planes,
}

impl Norm {
    fn of(bn: &BatchNorm) -> Result<Self, InferenceError> {
        Ok(Norm {
            gamma: Weights::of(&bn.gamma)?,
            beta: Weights::of(&bn.beta)?,
            running_mean: values(bn.running_mean.value_sync())?,
            running_var: values(bn.running_var.value_sync())?,
            momentum: bn.momentum,
            epsilon: bn.epsilon,
        })
    }

    fn write_into(&self, mut bn: BatchNorm) -> BatchNorm {
        bn.gamma = replaced(bn.gamma, &self.gamma.value);
        bn.beta = replaced(bn.beta, &self.beta.value);
        let device = bn.running_mean.value_sync().device();
        let tensor =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
        bn.running_mean.update(tensor(&self.running_mean));
        bn.running_var.update(tensor(&self.running_var));
        bn
    }

    /// Normalise by the batch's mean and (biased) variance per channel, scale, shift, ReLU; update the running
    /// averages as burn does (momentum on the biased variance).
    fn forward(&mut self, x: Planes) -> NormCache {
        let run = x.run();
        let count = run.max(1) as f64;
        let stats: Vec<(f64, f64)> = x
            .data
            .par_chunks(run.max(1))
            .map(|plane| {
                let mean = plane.iter().map(|v| f64::from(*v)).sum::<f64>() / count;
                let var = plane
                    .iter()
                    .map(|v| (f64::from(*v) - mean).powi(2))
                    .sum::<f64>()
                    / count;
                (mean, var)
            })
            .collect();
        let inverse_std: Vec<f32> = stats
            .iter()
            .map(|(_, var)| (1.0 / (var + self.epsilon).sqrt()) as f32)
            .collect();
        let mut normalised = x.data;
        let mut output = vec![0.0; normalised.len()];
        normalised
            .par_chunks_mut(run.max(1))
            .zip(output.par_chunks_mut(run.max(1)))
            .enumerate()
            .for_each(|(c, (plane, out))| {
                let (mean, inv) = (stats[c].0 as f32, inverse_std[c]);
                let (g, b) = (self.gamma.value[c], self.beta.value[c]);
                for (v, o) in plane.iter_mut().zip(out.iter_mut()) {
                    *v = (*v - mean) * inv;
                    let y = g * *v + b;
                    *o = if y < 0.0 { 0.0 } else { y };
                }
            });
        let m = self.momentum;
        for (c, (mean, var)) in stats.iter().enumerate() {
            let blend = |old: f32, new: f64| ((1.0 - m) * f64::from(old) + m * new) as f32;
            self.running_mean[c] = blend(self.running_mean[c], *mean);
            self.running_var[c] = blend(self.running_var[c], *var);
        }
        NormCache {
            normalised,
            inverse_std,
            output: Planes {
                data: output,
                dims: x.dims,
            },
        }
    }

    /// From the gradient of the ReLU's output to that of the BatchNorm's input (in place); sets γ's and β's.
    fn backward(&mut self, cache: &NormCache, dy: &mut Planes) {
        let run = dy.run();
        let count = run.max(1) as f64;
        let sums: Vec<(f64, f64)> = dy
            .data
            .par_chunks_mut(run.max(1))
            .zip(cache.output.data.par_chunks(run.max(1)))
            .zip(cache.normalised.par_chunks(run.max(1)))
            .map(|((g, out), xhat)| {
                let (mut dbeta, mut dgamma) = (0.0f64, 0.0f64);
                for ((g, o), x) in g.iter_mut().zip(out).zip(xhat) {
                    if *o <= 0.0 {
                        *g = 0.0;
                    }
                    dbeta += f64::from(*g);
                    dgamma += f64::from(*g) * f64::from(*x);
                }
                (dbeta, dgamma)
            })
            .collect();
        self.beta.grad = sums.iter().map(|s| s.0 as f32).collect();
        self.gamma.grad = sums.iter().map(|s| s.1 as f32).collect();
        // In f64: `count·g − Σg − x̂·Σgx̂` cancels most of each term when few values share a channel.
        dy.data
            .par_chunks_mut(run.max(1))
            .zip(cache.normalised.par_chunks(run.max(1)))
            .enumerate()
            .for_each(|(c, (g, xhat))| {
                let scale =
                    f64::from(self.gamma.value[c]) * f64::from(cache.inverse_std[c]) / count;
                let (dbeta, dgamma) = sums[c];
                for (g, x) in g.iter_mut().zip(xhat) {
                    let v = count * f64::from(*g) - dbeta - f64::from(*x) * dgamma;
                    *g = (scale * v) as f32;
                }
            });
    }
}

/// One decoder block: upsample, concatenate the skip, two conv → BatchNorm → ReLU.
#[derive(Debug)]
struct Block {
    conv1: Conv,
    bn1: Norm,
    conv2: Conv,
    bn2: Norm,
}

/// What a block keeps for its backward pass.
#[derive(Debug)]
struct BlockCache {
    /// conv1's input: the upsampled maps and the skip.
    input: Planes,
    /// Channels of `input` that come from below (the rest are the skip's).
    from_below: usize,
    first: NormCache,
    second: NormCache,
}

impl Block {
    fn of(block: &DecoderBlock) -> Result<Self, InferenceError> {
        Ok(Block {
            conv1: Conv::of(&block.conv1)?,
            bn1: Norm::of(&block.bn1)?,
            conv2: Conv::of(&block.conv2)?,
            bn2: Norm::of(&block.bn2)?,
        })
    }

    fn write_into(&self, block: DecoderBlock) -> DecoderBlock {
        DecoderBlock {
            conv1: self.conv1.write_into(block.conv1),
            bn1: self.bn1.write_into(block.bn1),
            conv2: self.conv2.write_into(block.conv2),
            bn2: self.bn2.write_into(block.bn2),
        }
    }

    fn forward(&mut self, x: &Planes, skip: Option<&Planes>, cols: &mut Vec<f32>) -> BlockCache {
        let up = x.upsample();
        let from_below = up.dims[0];
        let input = match skip {
            Some(skip) => up.concat(skip),
            None => up,
        };
        let first = self.bn1.forward(self.conv1.forward(&input, cols));
        let second = self.bn2.forward(self.conv2.forward(&first.output, cols));
        BlockCache {
            input,
            from_below,
            first,
            second,
        }
    }

    /// Gradients of this block's weights from that of its output; the gradient of its input from below (before
    /// upsampling) when `input_gradient`.
    fn backward(
        &mut self,
        cache: &BlockCache,
        mut dy: Planes,
        input_gradient: bool,
        cols: &mut Vec<f32>,
    ) -> Option<Planes> {
        self.bn2.backward(&cache.second, &mut dy);
        let channels = self.conv2.channels[0];
        let mut d_first = self
            .conv2
            .backward(&cache.first.output, &dy, channels, cols)?;
        self.bn1.backward(&cache.first, &mut d_first);
        let channels = if input_gradient { cache.from_below } else { 0 };
        self.conv1
            .backward(&cache.input, &d_first, channels, cols)
            .map(|d| d.downsample_sum())
    }
}

/// The decoder and head of a [`UNet`], with Adam's state, trained on the host.
#[derive(Debug)]
pub struct HostDecoder {
    blocks: Vec<Block>,
    head: Conv,
    /// Adam's steps so far.
    time: i32,
    epsilon: f32,
    /// The im2col buffer, kept between layers and steps.
    cols: Vec<f32>,
}

/// The encoder's maps of a batch, channel-major: stem, layer1–4.
pub struct HostFeatures(Vec<Planes>);

impl HostFeatures {
    pub fn of(f: Features) -> Result<Self, InferenceError> {
        Ok(HostFeatures(
            [f.stem, f.layer1, f.layer2, f.layer3, f.layer4]
                .into_iter()
                .map(Planes::of)
                .collect::<Result<_, _>>()?,
        ))
    }
}

impl HostDecoder {
    /// The decoder of `unet` as it is, with fresh Adam state (`epsilon` as in burn's `AdamConfig`).
    pub fn of(unet: &UNet, epsilon: f32) -> Result<Self, InferenceError> {
        Ok(HostDecoder {
            blocks: unet
                .blocks
                .iter()
                .map(Block::of)
                .collect::<Result<_, _>>()?,
            head: Conv::of(&unet.head)?,
            time: 0,
            epsilon,
            cols: Vec::new(),
        })
    }

    /// `unet` with this decoder's weights and running averages.
    pub fn write_into(&self, mut unet: UNet) -> UNet {
        let blocks = std::mem::take(&mut unet.blocks);
        unet.blocks = blocks
            .into_iter()
            .zip(&self.blocks)
            .map(|(b, ours)| ours.write_into(b))
            .collect();
        unet.head = self.head.write_into(unet.head);
        unet
    }

    /// Mask logits `[N, H, W]` (training mode: batch statistics; the running averages are updated) and what the
    /// backward pass needs.
    fn forward(&mut self, features: &HostFeatures) -> (Planes, Vec<BlockCache>) {
        let f = &features.0;
        // Skips for blocks 0..4: layer3, layer2, layer1, stem, none.
        let skips = [Some(&f[3]), Some(&f[2]), Some(&f[1]), Some(&f[0]), None];
        let mut caches: Vec<BlockCache> = Vec::with_capacity(self.blocks.len());
        for (block, skip) in self.blocks.iter_mut().zip(skips) {
            let input = caches.last().map_or(&f[4], |c| &c.second.output);
            let cache = block.forward(input, skip, &mut self.cols);
            caches.push(cache);
        }
        let last = caches.last().map_or(&f[4], |c| &c.second.output);
        (self.head.forward(last, &mut self.cols), caches)
    }

    /// One training step on a batch: loss (BCE + soft Dice as [`super::segmentation::segmentation_loss`]),
    /// gradients, an Adam step at `rate`. `target` and `weight` are `[N, H, W]`. Returns the loss.
    pub fn step(
        &mut self,
        features: &HostFeatures,
        target: &[f32],
        weight: &[f32],
        dice: DiceLoss,
        rate: f64,
    ) -> f32 {
        let loss = self.gradients(features, target, weight, dice);
        self.time += 1;
        let (time, epsilon) = (self.time, self.epsilon);
        for w in self.weights_mut() {
            w.adam(rate, time, epsilon);
        }
        loss
    }

    /// Forward and backward: the loss, with every weight's gradient set.
    fn gradients(
        &mut self,
        features: &HostFeatures,
        target: &[f32],
        weight: &[f32],
        dice: DiceLoss,
    ) -> f32 {
        let (logits, caches) = self.forward(features);
        let [_, n, h, w] = logits.dims;
        let (loss, d_logits) = loss_gradient(&logits.data, target, weight, n, h * w, dice);
        let d_logits = Planes {
            data: d_logits,
            dims: logits.dims,
        };
        let last = caches.last().map_or(&features.0[4], |c| &c.second.output);
        let channels = last.dims[0];
        let mut dy = self
            .head
            .backward(last, &d_logits, channels, &mut self.cols);
        for (k, (block, cache)) in self.blocks.iter_mut().zip(&caches).enumerate().rev() {
            if let Some(d) = dy.take() {
                dy = block.backward(cache, d, k > 0, &mut self.cols);
            }
        }
        loss
    }

    fn weights_mut(&mut self) -> Vec<&mut Weights> {
        let mut all = Vec::new();
        for b in &mut self.blocks {
            all.push(&mut b.conv1.weight);
            all.push(&mut b.bn1.gamma);
            all.push(&mut b.bn1.beta);
            all.push(&mut b.conv2.weight);
            all.push(&mut b.bn2.gamma);
            all.push(&mut b.bn2.beta);
        }
        all.push(&mut self.head.weight);
        all.extend(self.head.bias.as_mut());
        all
    }
}

/// The loss of [`super::segmentation::segmentation_loss`] — BCE-with-logits over the counted pixels plus soft
/// Dice, pooled or per image — and its gradient with respect to the logits, for `n` images of `pixels` each.
fn loss_gradient(
    logits: &[f32],
    target: &[f32],
    weight: &[f32],
    n: usize,
    pixels: usize,
    dice: DiceLoss,
) -> (f32, Vec<f32>) {
    let counted = weight.iter().map(|w| f64::from(*w)).sum::<f64>().max(1.0);
    let sigmoid = |z: f32| 1.0 / (1.0 + f64::from(-z).exp());
    let mut bce = 0.0f64;
    let mut grad: Vec<f32> = Vec::with_capacity(logits.len());
    for ((z, t), w) in logits.iter().zip(target).zip(weight) {
        let (z64, t64, w64) = (f64::from(*z), f64::from(*t), f64::from(*w));
        bce += w64 * (z64.max(0.0) - z64 * t64 + (-z64.abs()).exp().ln_1p());
        grad.push((w64 * (sigmoid(*z) - t64) / counted) as f32);
    }
    // Dice groups: every image, or the whole batch as one.
    let groups: Vec<std::ops::Range<usize>> = match dice {
        DiceLoss::PerImage => (0..n).map(|i| i * pixels..(i + 1) * pixels).collect(),
        DiceLoss::Batch => std::iter::once(0..n * pixels).collect(),
    };
    let mut dice_sum = 0.0f64;
    let mut terms = Vec::with_capacity(groups.len());
    for range in &groups {
        let (mut inter, mut p_sum, mut t_sum) = (0.0f64, 0.0f64, 0.0f64);
        for k in range.clone() {
            let p = sigmoid(logits[k]) * f64::from(weight[k]);
            let t = f64::from(target[k] * weight[k]);
            inter += p * t;
            p_sum += p;
            t_sum += t;
        }
        let counts = dice == DiceLoss::Batch || t_sum > 0.0;
        let denominator = p_sum + t_sum + 1.0;
        if counts {
            dice_sum += 1.0 - (2.0 * inter + 1.0) / denominator;
        }
        terms.push((counts, inter, denominator));
    }
    let lesions = terms.iter().filter(|t| t.0).count().max(1) as f64;
    for (range, (counts, inter, denominator)) in groups.into_iter().zip(terms) {
        if !counts {
            continue;
        }
        for k in range {
            let s = sigmoid(logits[k]);
            let (w, t) = (f64::from(weight[k]), f64::from(target[k] * weight[k]));
            let d_p = -(2.0 * t * denominator - (2.0 * inter + 1.0)) / (denominator * denominator);
            grad[k] += (d_p * w * s * (1.0 - s) / lesions) as f32;
        }
    }
    ((bce / counted + dice_sum / lesions) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResNet18;
    use crate::train::segmentation::segmentation_loss;
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};

    /// Largest |a − b| over max |b| (at least 1e-6).
    fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Values drawn from a stream of their own, uniform in `[low, high)`: the tests' inputs and weights do not
    /// depend on burn's global generator, which tests running in parallel share.
    fn draws(stream: &mut rand_chacha::ChaCha8Rng, n: usize, [low, high]: [f32; 2]) -> Vec<f32> {
        use rand::Rng;
        (0..n).map(|_| stream.random_range(low..high)).collect()
    }

    /// Random encoder maps of a batch of `side`×`side` images: the decoder's inputs, independent per pixel so
    /// that every BatchNorm sees spread-out values (a random-weight encoder's maps are nearly constant across a
    /// small map, and then float rounding, amplified by the normalisation, is all the two sides differ by).
    fn maps(side: usize, batch: usize) -> Features {
        let device = crate::device::inference();
        let mut stream = crate::rng::stream(5, "decoder test maps", &[side as u64]);
        let mut map = |channels: usize, down: usize| {
            let shape = [batch, channels, side / down, side / down];
            let n = shape.iter().product();
            let v = draws(&mut stream, n, [-1.7, 1.7]);
            Tensor::<4>::from_data(TensorData::new(v, shape), &device)
        };
        Features {
            stem: map(64, 2),
            layer1: map(64, 4),
            layer2: map(128, 8),
            layer3: map(256, 16),
            layer4: map(512, 32),
        }
    }

    /// `unet` with every parameter and running average drawn from a stream of its own: convolution weights
    /// uniform within ±1/√(fan-in) (as burn initialises them), BatchNorm's in [0.5, 1.5).
    fn drawn(unet: UNet) -> UNet {
        struct Draw(rand_chacha::ChaCha8Rng);
        impl burn::module::ModuleMapper for Draw {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                param.map(|t| {
                    let dims = t.dims();
                    let n: usize = dims.iter().product();
                    let range = match D {
                        4 => {
                            let bound = 1.0 / ((dims[1] * dims[2] * dims[3]) as f32).sqrt();
                            [-bound, bound]
                        }
                        _ => [0.5, 1.5],
                    };
                    let v = draws(&mut self.0, n, range);
                    Tensor::from_data(TensorData::new(v, dims), &t.device())
                })
            }
        }
        unet.map(&mut Draw(crate::rng::stream(
            5,
            "decoder test weights",
            &[],
        )))
    }

    fn copy(f: &Features) -> Features {
        Features {
            stem: f.stem.clone(),
            layer1: f.layer1.clone(),
            layer2: f.layer2.clone(),
            layer3: f.layer3.clone(),
            layer4: f.layer4.clone(),
        }
    }

    fn setup(side: usize, batch: usize) -> (UNet, HostFeatures, Features, Vec<f32>, Vec<f32>) {
        let device = crate::device::inference();
        let unet = drawn(UNet::new(ResNet18::new(4, &device), &device));
        let features = maps(side, batch);
        let host = HostFeatures::of(copy(&features)).expect("host maps");
        let pixels = batch * side * side;
        // A lesion in the first image only (the second has an empty target), some pixels ignored.
        let target: Vec<f32> = (0..pixels)
            .map(|i| f32::from(i < side * side && (i % side) > side / 3 && (i / side) < side / 2))
            .collect();
        let weight: Vec<f32> = (0..pixels).map(|i| f32::from(i % 7 != 3)).collect();
        (unet, host, features, target, weight)
    }

    fn burn_loss(
        unet: &UNet,
        f: Features,
        target: &[f32],
        weight: &[f32],
        dice: DiceLoss,
    ) -> Tensor<1> {
        let train = crate::device::training();
        let dtype = unet.head.weight.val().dtype();
        let move_to = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &train).cast(dtype);
        let f = Features {
            stem: move_to(f.stem),
            layer1: move_to(f.layer1),
            layer2: move_to(f.layer2),
            layer3: move_to(f.layer3),
            layer4: move_to(f.layer4),
        };
        let logits = unet.decode(f);
        let shape = logits.dims();
        let tensor = |v: &[f32]| {
            move_to(Tensor::<4>::from_data(
                TensorData::new(v.to_vec(), shape),
                &train,
            ))
        };
        segmentation_loss(logits, tensor(target), tensor(weight), dice)
    }

    /// The same U-Net in f64: burn's autodiff then gives the reference gradients both f32 implementations are
    /// held to.
    fn in_f64(unet: UNet) -> UNet {
        struct ToF64;
        impl burn::module::ModuleMapper for ToF64 {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                param.map(|t| t.cast(burn::tensor::DType::F64))
            }
        }
        unet.map(&mut ToF64)
    }

    fn on_training(unet: UNet) -> UNet {
        let mut unet = crate::device::from_host(unet, &crate::device::inference()).train();
        unet.encoder = unet.encoder.freeze();
        unet
    }

    /// Every decoder gradient of `grads` (burn's, for `unet`) paired with this decoder's, named.
    fn gradient_pairs<'a>(
        host: &'a HostDecoder,
        unet: &UNet,
        grads: &burn::tensor::Gradients,
    ) -> Vec<(String, &'a [f32], Vec<f32>)> {
        let g4 = |p: &Param<Tensor<4>>| values(p.val().grad(grads).expect("grad")).expect("values");
        let g1 = |p: &Param<Tensor<1>>| values(p.val().grad(grads).expect("grad")).expect("values");
        let mut pairs = Vec::new();
        for (k, (ours, theirs)) in host.blocks.iter().zip(&unet.blocks).enumerate() {
            for (name, ours, theirs) in [
                ("conv1", &ours.conv1, &theirs.conv1),
                ("conv2", &ours.conv2, &theirs.conv2),
            ] {
                pairs.push((
                    format!("block {k} {name}"),
                    &ours.weight.grad[..],
                    g4(&theirs.weight),
                ));
            }
            for (name, ours, theirs) in [
                ("bn1", &ours.bn1, &theirs.bn1),
                ("bn2", &ours.bn2, &theirs.bn2),
            ] {
                pairs.push((
                    format!("block {k} {name}.gamma"),
                    &ours.gamma.grad[..],
                    g1(&theirs.gamma),
                ));
                pairs.push((
                    format!("block {k} {name}.beta"),
                    &ours.beta.grad[..],
                    g1(&theirs.beta),
                ));
            }
        }
        pairs.push((
            "head".into(),
            &host.head.weight.grad[..],
            g4(&unet.head.weight),
        ));
        let bias = host.head.bias.as_ref().expect("bias");
        pairs.push((
            "head bias".into(),
            &bias.grad[..],
            g1(unet.head.bias.as_ref().expect("bias")),
        ));
        pairs
    }

    #[test]
    fn the_host_decoder_has_the_loss_and_gradients_of_burns_autodiff_in_f64() {
        for dice in [DiceLoss::PerImage, DiceLoss::Batch] {
            let (unet, host_features, features, target, weight) = setup(128, 2);
            let reference = on_training(in_f64(unet.valid()));
            let mut host = HostDecoder::of(&on_training(unet), 1e-8).expect("host decoder");
            let ours = host.gradients(&host_features, &target, &weight, dice);
            let loss = burn_loss(&reference, features, &target, &weight, dice);
            let theirs = values(loss.clone()).expect("loss")[0];
            assert!(
                (ours - theirs).abs() < 1e-5 * theirs.abs().max(1.0),
                "{ours} vs {theirs}"
            );
            let grads = loss.backward();
            // burn's own f32 gradients differ from these f64 ones by up to 1e-3 (the deepest block's BatchNorm
            // has few values per channel); the host decoder's, by about 1e-6: its sums run in f64.
            for (name, ours, theirs) in gradient_pairs(&host, &reference, &grads) {
                let d = relative_difference(ours, &theirs);
                assert!(d < 1e-4, "{dice:?} {name}: {d}");
            }
        }
    }

    #[test]
    fn a_gradient_dropped_on_the_way_back_is_caught() {
        // The control for the test above: the same comparison fails when one gradient is off by half.
        let (unet, host_features, features, target, weight) = setup(64, 2);
        let reference = on_training(in_f64(unet.valid()));
        let mut host = HostDecoder::of(&on_training(unet), 1e-8).expect("host decoder");
        host.gradients(&host_features, &target, &weight, DiceLoss::PerImage);
        host.blocks[1]
            .conv1
            .weight
            .grad
            .iter_mut()
            .for_each(|g| *g *= 0.5);
        let loss = burn_loss(&reference, features, &target, &weight, DiceLoss::PerImage);
        let grads = loss.backward();
        let failing: Vec<String> = gradient_pairs(&host, &reference, &grads)
            .into_iter()
            .filter(|(_, ours, theirs)| relative_difference(ours, theirs) >= 1e-4)
            .map(|(name, _, _)| name)
            .collect();
        assert_eq!(failing, vec!["block 1 conv1".to_string()]);
    }

    #[test]
    fn a_host_step_moves_the_weights_and_running_averages_as_burn_does() {
        let (unet, host_features, features, target, weight) = setup(64, 2);
        let reference = on_training(in_f64(unet.valid()));
        let watched = |u: &UNet| {
            [
                u.blocks[0].conv1.weight.val(),
                u.blocks[4].conv2.weight.val(),
                u.head.weight.val(),
            ]
            .map(|t| values(t).expect("values"))
        };
        let before = watched(&reference);
        // A large ε keeps the step continuous in the gradient: with 1e-8, Adam's first step moves a weight whose
        // gradient is float noise by a whole learning rate, in the noise's direction.
        let epsilon = 0.1;
        let mut host = HostDecoder::of(&on_training(unet), epsilon).expect("host decoder");
        host.step(&host_features, &target, &weight, DiceLoss::PerImage, 1e-3);
        let loss = burn_loss(&reference, features, &target, &weight, DiceLoss::PerImage);
        let grads = GradientsParams::from_grads(loss.backward(), &reference);
        let mut optimizer = AdamConfig::new().with_epsilon(epsilon).init();
        let reference = optimizer.step(1e-3, reference, grads);
        let written = host.write_into(reference.clone().valid());
        // What the step moved, compared: the weights themselves would hide a wrong step in their size.
        for ((ours, theirs), start) in watched(&written)
            .iter()
            .zip(watched(&reference))
            .zip(&before)
        {
            let moved =
                |w: &[f32]| -> Vec<f32> { w.iter().zip(start).map(|(a, b)| a - b).collect() };
            let d = relative_difference(&moved(ours), &moved(&theirs));
            assert!(d < 1e-4, "weights moved by a step: {d}");
        }
        let stats = [
            (
                written.blocks[2].bn1.running_mean.value_sync(),
                reference.blocks[2].bn1.running_mean.value_sync(),
            ),
            (
                written.blocks[3].bn2.running_var.value_sync(),
                reference.blocks[3].bn2.running_var.value_sync(),
            ),
            (
                written.blocks[0].bn1.running_var.value_sync(),
                reference.blocks[0].bn1.running_var.value_sync(),
            ),
        ];
        for (a, b) in stats {
            let d = relative_difference(&values(a).expect("v"), &values(b).expect("v"));
            assert!(d < 1e-5, "BatchNorm running averages after a step: {d}");
        }
    }

    #[test]
    fn the_host_adam_is_burns_over_several_steps() {
        use burn::optim::Optimizer;
        let device = crate::device::inference();
        let adam = AdamConfig::new().with_epsilon(1e-8).build();
        let start = vec![0.5f32, -0.25, 0.0, 2.0, 1e-3];
        let mut ours = Weights::new(start.clone());
        let mut tensor = Tensor::<1>::from_data(TensorData::new(start, [5]), &device);
        let mut state = None;
        let gradients = [
            [0.1f32, -0.2, 0.0, 3.0, 1e-6],
            [-0.1, -0.2, 0.5, 2.0, -1e-6],
            [0.3, 0.1, -0.5, 1.0, 1e-6],
        ];
        for (step, (g, rate)) in gradients.iter().zip([1e-2, 5e-3, 2e-2]).enumerate() {
            ours.grad = g.to_vec();
            ours.adam(rate, step as i32 + 1, 1e-8);
            let grad = Tensor::<1>::from_data(TensorData::new(g.to_vec(), [5]), &device);
            (tensor, state) = adam.step(rate, tensor, grad, state);
        }
        let theirs = values(tensor).expect("values");
        assert!(
            relative_difference(&ours.value, &theirs) < 1e-6,
            "{:?} vs {theirs:?}",
            ours.value
        );
    }

    #[test]
    fn upsampling_and_its_adjoint_and_im2col_and_its_adjoint_agree() {
        // <up(x), y> = <x, down_sum(y)> and <im2col(x), c> = <x, col2im(c)>: each pair is an adjoint pair.
        let x = Planes {
            data: (0..2 * 3 * 4 * 5)
                .map(|i| ((i * 37) % 11) as f32 - 5.0)
                .collect(),
            dims: [2, 3, 4, 5],
        };
        let dot =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| f64::from(a * b)).sum::<f64>();
        let up = x.upsample();
        let y: Vec<f32> = (0..up.data.len())
            .map(|i| ((i * 13) % 7) as f32 - 3.0)
            .collect();
        let down = Planes {
            data: y.clone(),
            dims: up.dims,
        }
        .downsample_sum();
        assert!((dot(&up.data, &y) - dot(&x.data, &down.data)).abs() < 1e-6);
        let mut cols = Vec::new();
        im2col(&x, &mut cols);
        let c: Vec<f32> = (0..cols.len())
            .map(|i| ((i * 29) % 13) as f32 - 6.0)
            .collect();
        let back = col2im(&c, 2, x.dims);
        assert!((dot(&cols, &c) - dot(&x.data, &back.data)).abs() < 1e-6);
        // A tap reads its neighbour: channel 0, image 1, pixel (2, 3), offset (−1, +1) → (1, 4).
        let pixel = (4 + 2) * 5 + 3;
        assert_eq!(cols[2 * 60 + pixel], x.data[(4 + 1) * 5 + 4]);
        // And zero beyond the right edge: pixel (2, 4), offset (0, +1).
        assert_eq!(cols[5 * 60 + pixel + 1], 0.0);
    }
}
