//! ResNet's stem max-pool (3×3, stride 2, padding 1) for inference on the CPU, where burn flex's pooling is slow.
//!
//! burn flex pools with scalar loops that also build an `i64` index tensor for every output, even when the
//! indices are thrown away: ≈ 30 ms of a 251 ms conv1…layer3 pass at batch 8 on the 2-core dev VM. Here the
//! window is separable (a row max, then a column max), one plane per rayon task, no indices. On a training
//! (autodiff) tensor, or any GPU backend, burn's own `MaxPool2d` runs, so gradients are burn's.

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// torchvision's `maxpool` as `[kernel, stride, padding]`.
pub(crate) const MAX_POOL: [usize; 3] = [3, 2, 1];

/// torchvision's `maxpool` (3×3, stride 2, padding 1), as burn builds it.
pub fn max_pool_module() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init()
}

/// Max-pool 3×3 / 2 / padding 1 of `x` (`[N, C, H, W]` → `[N, C, ⌈H/2⌉, ⌈W/2⌉]`); NaN propagates as in burn
/// and PyTorch.
pub fn max_pool_3x3_s2(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let on_host = crate::device::backend() == crate::device::Backend::Cpu
        && !x.is_autodiff()
        && h > 0
        && w > 0;
    // Not f32 (a half-precision model) reads back as an error: burn's pooling handles every dtype.
    let input = on_host
        .then(|| x.clone().into_data().try_into_vec::<f32>().ok())
        .flatten();
    let Some(input) = input else {
        return max_pool_module().forward(x);
    };
    let (output, [ho, wo]) = max_pool_planes(&input, [h, w]);
    Tensor::<4>::from_data(TensorData::new(output, [n, c, ho, wo]), &x.device())
}

/// Max-pool 3×3 / 2 / padding 1 of every `[H, W]` plane in `input` (`H, W > 0`), one plane per rayon task; returns
/// the pooled planes and their size `[⌈H/2⌉, ⌈W/2⌉]`.
pub(crate) fn max_pool_planes(input: &[f32], [h, w]: [usize; 2]) -> (Vec<f32>, [usize; 2]) {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut output = vec![0.0f32; input.len() / (h * w) * ho * wo];
    output
        .par_chunks_mut(ho * wo)
        .zip(input.par_chunks(h * w))
        // One row-maxima buffer per rayon worker, not per plane.
        .for_each_init(
            || vec![0.0f32; h * wo],
            |rows, (out, plane)| pool_plane(plane, [h, w], rows, out, [ho, wo]),
        );
    (output, [ho, wo])
}

/// Max-pool 3×3 / 2 / padding 1 of `input` (planes of `[H, W]`) at the output rows `ys[0]..ys[1]` and columns
/// `xs[0]..xs[1]` only, as `[planes, pixels]`: the same values as [`max_pool_planes`] there.
pub(crate) fn max_pool_at(
    input: &[f32],
    [h, w]: [usize; 2],
    ys: [usize; 2],
    xs: [usize; 2],
) -> Vec<f32> {
    if h == 0 || w == 0 {
        return Vec::new();
    }
    input
        .chunks(h * w)
        .flat_map(|plane| {
            (ys[0]..ys[1]).flat_map(move |oy| {
                (xs[0]..xs[1]).map(move |ox| {
                    // Row maxima first, then the column's: the order of `pool_plane`.
                    window_max(oy, h, |y| window_max(ox, w, |x| plane[y * w + x]))
                })
            })
        })
        .collect()
}

/// NaN-propagating maximum (`f32::max` would drop a NaN).
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// Max over the window `[2·o − 1, 2·o + 1]` of `len` values read by `at`, clipped to the valid range.
fn window_max(o: usize, len: usize, at: impl Fn(usize) -> f32) -> f32 {
    let first = (2 * o).saturating_sub(1);
    let last = (2 * o + 1).min(len - 1);
    (first + 1..=last).fold(at(first), |m, i| max_nan(m, at(i)))
}

/// Pool one `[H, W]` plane into `out` (`[H_out, W_out]`), through `rows` (`[H, W_out]`, the row maxima).
fn pool_plane(
    plane: &[f32],
    [h, w]: [usize; 2],
    rows: &mut [f32],
    out: &mut [f32],
    [ho, wo]: [usize; 2],
) {
    for y in 0..h {
        let line = &plane[y * w..(y + 1) * w];
        for (ox, value) in rows[y * wo..(y + 1) * wo].iter_mut().enumerate() {
            *value = window_max(ox, w, |i| line[i]);
        }
    }
    for oy in 0..ho {
        for ox in 0..wo {
            out[oy * wo + ox] = window_max(oy, h, |i| rows[i * wo + ox]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn matches_burns_max_pool_on_even_and_odd_sizes() {
        let device = Device::flex();
        device.seed(5);
        for [h, w] in [[112, 112], [7, 9], [1, 1], [2, 3]] {
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            let ours = max_pool_3x3_s2(x.clone());
            let theirs = max_pool_module().forward(x);
            assert_eq!(ours.dims(), theirs.dims(), "{h}×{w}");
            let (a, b) = (ours.into_data(), theirs.into_data());
            assert_eq!(
                a.try_to_vec::<f32>().expect("f32"),
                b.try_to_vec::<f32>().expect("f32"),
                "{h}×{w}"
            );
        }
    }

    #[test]
    fn a_nan_in_the_window_wins() {
        let device = Device::flex();
        let mut values = vec![1.0f32; 16];
        values[5] = f32::NAN; // row 1, column 1: inside all four output windows
        values[15] = 7.0;
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 4, 4]), &device);
        let out = max_pool_3x3_s2(x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert!(out[0].is_nan() && out[1].is_nan() && out[2].is_nan() && out[3].is_nan());
        let x = Tensor::<4>::from_data(
            TensorData::new((0..16).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 4, 4]),
            &device,
        );
        // Windows: rows/cols {0,1}, {1,2,3}: maxima 5, 7, 13, 15.
        let out = max_pool_3x3_s2(x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(out, vec![5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn training_tensors_keep_burns_differentiable_pool() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([1, 2, 6, 6], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let grads = max_pool_3x3_s2(x.clone()).sum().backward();
        let grad = x.grad(&grads).expect("gradient through the pool");
        // Each of the 9 outputs routes its gradient to one input.
        assert_eq!(grad.sum().into_scalar::<f32>(), 2.0 * 9.0);
    }
}
