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
use super::matmul::{product, View};
use super::pool::{max_pool_at, max_pool_planes, MAX_POOL};
use super::resnet::{BasicBlock, Features, ResNet18};
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

thread_local! {
    /// One im2col buffer per thread, kept between convolutions: resized, not reallocated and zeroed, each time.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let [n, _, h, w] = x.dims;
        let [ho, wo] = self.out_size([h, w]);
        let [_, co] = self.channels;
        let out_len = co * ho * wo;
        // Few images for many threads: parallelise inside each product instead.
        let parallel = if n < rayon::current_num_threads() {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        let in_len = x.image_len();
        let mut data: Vec<f32> = Vec::with_capacity(n * out_len);
        data.spare_capacity_mut()[..n * out_len]
            .par_chunks_mut(out_len.max(1))
            .enumerate()
            .for_each(|(b, out)| {
                let image = &x.data[b * in_len..(b + 1) * in_len];
                let residual = residual.map(|r| &r.data[b * out_len..(b + 1) * out_len]);
                // Taken out while in use: a nested rayon task on this thread (the product's own, or another
                // caller's) finds an empty buffer and makes its own.
                let mut cols = COLUMNS.take();
                let region = Rect::full([ho, wo]);
                self.write_region(
                    image,
                    [h, w],
                    region,
                    residual,
                    relu,
                    out,
                    &mut cols,
                    parallel,
                );
                COLUMNS.set(cols);
            });
        // SAFETY: `write_region` wrote every element of each chunk, and the chunks tile `..n · out_len`.
        unsafe { data.set_len(n * out_len) };
        Maps {
            data,
            dims: [n, co, ho, wo],
        }
    }

    /// `relu?(conv(x) + bias + residual?)` of one image at the output pixels of `region` only, as
    /// `[C_out, pixels of the region]`; `residual` has that shape too.
    fn region_values(
        &self,
        image: &[f32],
        size: [usize; 2],
        region: Rect,
        residual: Option<&[f32]>,
        relu: bool,
        cols: &mut Vec<f32>,
    ) -> Vec<f32> {
        let len = self.channels[1] * region.pixels();
        let mut out = Vec::with_capacity(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        self.write_region(
            image,
            size,
            region,
            residual,
            relu,
            spare,
            cols,
            gemm::Parallelism::None,
        );
        // SAFETY: `write_region` wrote all `len` elements.
        unsafe { out.set_len(len) };
        out
    }

    /// Write `relu?(conv(x) + bias + residual?)` of one image (planes of `size`) at the output pixels of `region`
    /// into every element of `out` (`[C_out, pixels of the region]`, as is `residual`). The buffer is not zeroed
    /// first: bias or residual go in before the product adds to them (at batch 16 the zeroing was a tenth of
    /// the pass).
    #[allow(clippy::too_many_arguments)]
    fn write_region(
        &self,
        image: &[f32],
        size: [usize; 2],
        region: Rect,
        residual: Option<&[f32]>,
        relu: bool,
        out: &mut [std::mem::MaybeUninit<f32>],
        cols: &mut Vec<f32>,
        parallel: gemm::Parallelism,
    ) {
        let pixels = region.pixels();
        for (o, plane) in out.chunks_mut(pixels.max(1)).enumerate() {
            let bias = self.bias[o];
            match residual {
                Some(r) => plane
                    .iter_mut()
                    .zip(&r[o * pixels..(o + 1) * pixels])
                    .for_each(|(v, r)| {
                        v.write(r + bias);
                    }),
                None => plane.iter_mut().for_each(|v| {
                    v.write(bias);
                }),
            }
        }
        // SAFETY: the loop above wrote every element of `out` (its planes tile it), and `MaybeUninit<f32>` has
        // the layout of `f32`.
        let out: &mut [f32] = unsafe { &mut *(std::ptr::from_mut(out) as *mut [f32]) };
        // A 1×1 convolution of stride 1 over the whole map reads the image as it is.
        let whole = region == Rect::full(size);
        let rhs: &[f32] = if whole && self.kernel == 1 && self.stride == 1 && self.padding == 0 {
            image
        } else {
            self.im2col(image, size, region, cols);
            cols
        };
        let rows = self.channels[0] * self.kernel * self.kernel;
        product(
            [self.channels[1], pixels, rows],
            out,
            View::rows(&self.weight, rows),
            View::rows(rhs, pixels),
            true,
            parallel,
        );
        if relu {
            // `max(0)` would turn a NaN into 0; burn's and PyTorch's ReLU keep it. A select, not a branch, so
            // that it vectorises.
            out.iter_mut()
                .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
        }
    }

    /// The patches of one image for the output pixels of `region`, as `[C_in·k², rows·columns of the region]`:
    /// row `(c·k + i)·k + j` holds tap `(i, j)` of channel `c` for each of those pixels, zero where the tap falls in
    /// the padding.
    fn im2col(&self, image: &[f32], [h, w]: [usize; 2], region: Rect, cols: &mut Vec<f32>) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let [rh, rw] = region.size();
        cols.resize(self.channels[0] * k * k * rh * rw, 0.0);
        if rh == 0 || rw == 0 {
            return;
        }
        for (r, row) in cols.chunks_mut(rh * rw).enumerate() {
            let (channel, i, j) = (r / (k * k), (r / k) % k, r % k);
            let plane = &image[channel * h * w..(channel + 1) * h * w];
            // Output columns whose tap lands inside the image, ox·s + j − p ∈ [0, w), as offsets in the region.
            let inside_from = p.saturating_sub(j).div_ceil(s);
            let inside_to = if w + p > j {
                (w + p - j - 1) / s + 1
            } else {
                0
            };
            let [x0, x1] = region.x;
            let first = inside_from.clamp(x0, x1) - x0;
            let end = (inside_to.clamp(x0, x1) - x0).max(first);
            for (dy, line) in row.chunks_mut(rw).enumerate() {
                let y = (region.y[0] + dy) * s + i;
                if y < p || y - p >= h {
                    line.fill(0.0);
                    continue;
                }
                let source = &plane[(y - p) * w..(y - p + 1) * w];
                line[..first].fill(0.0);
                line[end..].fill(0.0);
                let start = (x0 + first) * s + j - p;
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

    /// The output pixels whose taps read a pixel of `changed`: where a change of the input shows in the output
    /// (of size `out`).
    fn reach(&self, changed: Rect, out: [usize; 2]) -> Rect {
        changed.reach([self.kernel, self.stride, self.padding], out)
    }
}

/// Rows `y[0]..y[1]` and columns `x[0]..x[1]` of a feature map (or an image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y: [usize; 2],
    pub x: [usize; 2],
}

impl Rect {
    /// The whole of a map of `[h, w]`.
    pub fn full([h, w]: [usize; 2]) -> Self {
        Rect {
            y: [0, h],
            x: [0, w],
        }
    }

    /// Whether pixel (`y`, `x`) lies inside.
    pub fn contains(&self, y: usize, x: usize) -> bool {
        (self.y[0]..self.y[1]).contains(&y) && (self.x[0]..self.x[1]).contains(&x)
    }

    fn size(&self) -> [usize; 2] {
        [
            self.y[1].saturating_sub(self.y[0]),
            self.x[1].saturating_sub(self.x[0]),
        ]
    }

    fn pixels(&self) -> usize {
        let [h, w] = self.size();
        h * w
    }

    /// Under a sliding window of `[kernel, stride, padding]` with an output of `out`: the output pixels whose
    /// window holds a pixel of `self` (output `o` reads inputs `o·s − p … o·s − p + k − 1`).
    fn reach(&self, [k, s, p]: [usize; 3], [ho, wo]: [usize; 2]) -> Rect {
        let span = |[a, b]: [usize; 2], n: usize| -> [usize; 2] {
            if a >= b || n == 0 {
                return [0, 0];
            }
            let first = (a + p).saturating_sub(k - 1).div_ceil(s);
            let last = ((b - 1 + p) / s).min(n - 1);
            if first > last {
                [0, 0]
            } else {
                [first, last + 1]
            }
        };
        Rect {
            y: span(self.y, ho),
            x: span(self.x, wo),
        }
    }

    /// The values of `map` (`channels` planes of `[h, w]`) inside this region, as `[channels, pixels]`.
    fn gather(&self, map: &[f32], [h, w]: [usize; 2]) -> Vec<f32> {
        map.chunks(h * w)
            .flat_map(|plane| {
                (self.y[0]..self.y[1])
                    .flat_map(move |y| &plane[y * w + self.x[0]..y * w + self.x[1]])
                    .copied()
            })
            .collect()
    }

    /// Write `values` (`[channels, pixels]` of this region) into `map` (`channels` planes of `[h, w]`).
    fn scatter(&self, values: &[f32], map: &mut [f32], [h, w]: [usize; 2]) {
        let [_, rw] = self.size();
        if self.pixels() == 0 {
            return;
        }
        for (plane, part) in map.chunks_mut(h * w).zip(values.chunks(self.pixels())) {
            for (y, line) in (self.y[0]..self.y[1]).zip(part.chunks(rw)) {
                plane[y * w + self.x[0]..y * w + self.x[1]].copy_from_slice(line);
            }
        }
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
        self.forward_traced(x).1
    }

    /// conv1's output and the block's.
    fn forward_traced(&self, x: &Maps) -> (Maps, Maps) {
        let mid = self.conv1.forward(x, None, true);
        let out = match &self.downsample {
            Some(d) => self
                .conv2
                .forward(&mid, Some(&d.forward(x, None, false)), true),
            None => self.conv2.forward(&mid, Some(x), true),
        };
        (mid, out)
    }

    /// The block on one image `x` (planes of `size`) that differs from the input `base` was traced on only
    /// inside `changed`: a copy of `base`'s output with the pixels the change reaches recomputed, and that region.
    fn forward_changed(
        &self,
        x: &[f32],
        size: [usize; 2],
        changed: Rect,
        base: &(Maps, Maps),
        cols: &mut Vec<f32>,
    ) -> (Vec<f32>, Rect, [usize; 2]) {
        let mid_size = self.conv1.out_size(size);
        let reached = self.conv1.reach(changed, mid_size);
        let mut mid = base.0.data.clone();
        let values = self.conv1.region_values(x, size, reached, None, true, cols);
        reached.scatter(&values, &mut mid, mid_size);
        let out_size = self.conv2.out_size(mid_size);
        // conv2's reach covers the shortcut's: a 3×3 window reaches further than a 1×1 one or the identity.
        let reached = self.conv2.reach(reached, out_size);
        let residual = match &self.downsample {
            Some(d) => d.region_values(x, size, reached, None, false, cols),
            None => reached.gather(x, size),
        };
        let mut out = base.1.data.clone();
        let values = self
            .conv2
            .region_values(&mid, mid_size, reached, Some(&residual), true, cols);
        reached.scatter(&values, &mut out, out_size);
        (out, reached, out_size)
    }
}

/// One image's feature maps through the network, kept so that edited copies of the image recompute only what
/// their edit reaches ([`FoldedResNet18::through_edited`]).
pub struct Trace {
    /// conv1's output (before the max-pool) and the max-pool's.
    stem: Maps,
    pooled: Maps,
    /// Each BasicBlock's conv1 output and its own, layer1 … layer4 in order.
    blocks: Vec<(Maps, Maps)>,
    /// The image's `[channels, height, width]`.
    input: [usize; 3],
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

    /// `model` folded when this process computes on the CPU; `None` on a GPU backend, where burn's layers run.
    pub fn on_cpu(model: &ResNet18) -> Result<Option<Self>, FoldError> {
        (crate::device::backend() == crate::device::Backend::Cpu)
            .then(|| Self::new(model))
            .transpose()
    }

    fn stage(&self, k: usize, x: Maps) -> Maps {
        self.layers[k].iter().fold(x, |x, block| block.forward(&x))
    }

    /// Every feature map the U-Net's decoder takes (stem before the max-pool, layer1 … layer4) for a normalised
    /// image batch `x` (`[N, 3, H, W]`), as tensors on `device`: a frozen encoder's output, computed once here
    /// instead of through burn's layers.
    pub fn features(&self, x: Tensor<4>, device: &Device) -> Result<Features, InferenceError> {
        let stem = self.conv1.forward(&Maps::of(x)?, None, true); // [N, 64, H/2, W/2]
        let layer1 = self.stage(0, stem.max_pool()); // [N, 64, H/4, W/4]
        let layer2 = self.stage(1, layer1.clone()); // [N, 128, H/8, W/8]
        let layer3 = self.stage(2, layer2.clone()); // [N, 256, H/16, W/16]
        let layer4 = self.stage(3, layer3.clone()); // [N, 512, H/32, W/32]
        Ok(Features {
            stem: stem.into_tensor(device),
            layer1: layer1.into_tensor(device),
            layer2: layer2.into_tensor(device),
            layer3: layer3.into_tensor(device),
            layer4: layer4.into_tensor(device),
        })
    }

    /// Every feature map of one normalised image (`[1, 3, H, W]`), for [`FoldedResNet18::through_edited`].
    pub fn trace(&self, x: Tensor<4>) -> Result<Trace, InferenceError> {
        let x = Maps::of(x)?;
        let [_, c, h, w] = x.dims;
        let stem = self.conv1.forward(&x, None, true); // [1, 64, H/2, W/2]
        let pooled = stem.max_pool(); // [1, 64, H/4, W/4]
        let mut blocks = Vec::new();
        let mut current = pooled.clone();
        for block in self.layers.iter().flatten() {
            let (mid, out) = block.forward_traced(&current);
            current = out.clone();
            blocks.push((mid, out));
        }
        Ok(Trace {
            stem,
            pooled,
            blocks,
            input: [c, h, w],
        })
    }

    /// layer4's output (`[N, 512, H/32, W/32]`) for `edited` (`[N, 3, H, W]`), copies of the traced image each
    /// changed only inside `changed[i]` (input pixels): per layer only the pixels a change reaches are
    /// recomputed, the rest is the trace's (an occlusion window of a fifth of the side: about half the work of a
    /// whole pass). The same function as [`FoldedResNet18::through`], to float rounding.
    pub fn through_edited(
        &self,
        trace: &Trace,
        edited: Tensor<4>,
        changed: &[Rect],
    ) -> Result<Tensor<4>, InferenceError> {
        let device = edited.device();
        let x = Maps::of(edited)?;
        let [n, c, h, w] = x.dims;
        if [c, h, w] != trace.input || changed.len() != n {
            return Err(InferenceError::Mismatch(format!(
                "edited images {:?} with {} regions against a traced image of {:?}",
                x.dims,
                changed.len(),
                trace.input
            )));
        }
        let outputs: Vec<(Vec<f32>, [usize; 2])> = x
            .data
            .par_chunks(x.image_len())
            .zip(changed)
            .map_init(Vec::new, |cols, (image, changed)| {
                self.edited_one(trace, image, *changed, cols)
            })
            .collect();
        let [ho, wo] = outputs.first().map_or([0, 0], |o| o.1);
        let channels = self.layers[3].last().map_or(0, |b| b.conv2.channels[1]);
        let data: Vec<f32> = outputs.into_iter().flat_map(|o| o.0).collect();
        Ok(Maps {
            data,
            dims: [n, channels, ho, wo],
        }
        .into_tensor(&device))
    }

    /// One edited image through every layer, recomputing what its change reaches.
    fn edited_one(
        &self,
        trace: &Trace,
        image: &[f32],
        changed: Rect,
        cols: &mut Vec<f32>,
    ) -> (Vec<f32>, [usize; 2]) {
        let [_, h, w] = trace.input;
        let [.., sh, sw] = trace.stem.dims;
        let reached = self.conv1.reach(changed, [sh, sw]);
        let mut stem = trace.stem.data.clone();
        let values = self
            .conv1
            .region_values(image, [h, w], reached, None, true, cols);
        reached.scatter(&values, &mut stem, [sh, sw]);
        let [.., ph, pw] = trace.pooled.dims;
        let reached = reached.reach(MAX_POOL, [ph, pw]);
        let mut x = trace.pooled.data.clone();
        let values = max_pool_at(&stem, [sh, sw], reached.y, reached.x);
        reached.scatter(&values, &mut x, [ph, pw]);
        let (mut changed, mut size) = (reached, [ph, pw]);
        for (block, base) in self.layers.iter().flatten().zip(&trace.blocks) {
            (x, changed, size) = block.forward_changed(&x, size, changed, base, cols);
        }
        (x, size)
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
            let ours = folded.features(x.clone(), &device).expect("features");
            let theirs = model.features(x.clone());
            for (name, a, b) in [
                ("stem", ours.stem, theirs.stem),
                ("layer2", ours.layer2, theirs.layer2),
                ("layer4", ours.layer4, theirs.layer4),
            ] {
                let d = relative_difference(a, b);
                assert!(d < 1e-4, "features {name} {dims:?}: relative max |Δ| {d}");
            }
            let logits = model.head(folded.through(x.clone(), 4).expect("layer4"));
            let reference = model.forward(x);
            let d = (logits - reference).abs().max().into_scalar::<f32>();
            assert!(d < 1e-4, "logits {dims:?}: max |Δ| {d}");
        }
    }

    #[test]
    fn edited_copies_recompute_what_their_change_reaches_and_match_whole_passes() {
        let device = Device::flex();
        let model = model(&device);
        let folded = FoldedResNet18::new(&model).expect("folds");
        let [h, w] = [96usize, 80];
        let x = Tensor::<4>::random([1, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
        let trace = folded.trace(x.clone()).expect("trace");
        let image = super::values(x).expect("values");
        // Corners, an odd interior window, the whole image, and a region of no pixels (nothing changed).
        let regions = [
            Rect {
                y: [0, 20],
                x: [0, 20],
            },
            Rect {
                y: [41, 62],
                x: [33, 50],
            },
            Rect {
                y: [90, 96],
                x: [71, 80],
            },
            Rect::full([h, w]),
            Rect {
                y: [10, 10],
                x: [5, 9],
            },
        ];
        let edit = |region: &Rect| -> Vec<f32> {
            let mut copy = image.clone();
            for plane in copy.chunks_mut(h * w) {
                for y in region.y[0]..region.y[1] {
                    plane[y * w + region.x[0]..y * w + region.x[1]].fill(-1.7);
                }
            }
            copy
        };
        let edited: Vec<f32> = regions.iter().flat_map(edit).collect();
        let edited =
            Tensor::<4>::from_data(TensorData::new(edited, [regions.len(), 3, h, w]), &device);
        let ours = folded
            .through_edited(&trace, edited.clone(), &regions)
            .expect("edited");
        let whole = folded.through(edited.clone(), 4).expect("whole");
        assert_eq!(ours.dims(), whole.dims());
        let d = relative_difference(ours, whole.clone());
        assert!(d < 1e-5, "relative max |Δ| {d}");
        // Told that nothing changed, an edited copy keeps the traced maps: the edit is missed.
        let missed = folded
            .through_edited(&trace, edited, &[regions[4]; 5])
            .expect("edited");
        assert!(relative_difference(missed, whole) > 1e-2);
    }

    #[test]
    fn the_reach_of_a_change_follows_the_window() {
        let rect = |y, x| Rect { y, x };
        let one = rect([5, 6], [5, 6]);
        // 3×3, stride 1, padding 1: the pixel and its neighbours.
        assert_eq!(one.reach([3, 1, 1], [10, 10]), rect([4, 7], [4, 7]));
        // 7×7, stride 2, padding 3: outputs 1…4 read input 5 (o·2 − 3 ≤ 5 ≤ o·2 + 3).
        assert_eq!(one.reach([7, 2, 3], [5, 5]), rect([1, 5], [1, 5]));
        // 1×1, stride 2: an odd pixel is read by no output; clamped at the far edge.
        assert_eq!(one.reach([1, 2, 0], [5, 5]).pixels(), 0);
        let edge = rect([8, 10], [0, 1]);
        assert_eq!(edge.reach([3, 2, 1], [5, 5]), rect([4, 5], [0, 1]));
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
