//! Convolutions on small maps as one matrix product (im2col + gemm), where that beats burn flex's own
//! convolution on the CPU.
//!
//! burn flex convolves in tiles per image, and computes a weight gradient as a convolution of the input with the
//! output gradient: on layer4's 7×7 maps that means many small products. Written as `W[C_out, C_in·k²] ·
//! cols[C_in·k², N·H_out·W_out]`, forward and both gradients become single large products (burn's autodiff
//! differentiates the matmul and the patch extraction). `cargo bench --bench conv` on the 2-core dev VM
//! (2026-11-27, batch 32): a 1×1/2 downsample 256→512, forward + weight gradient, 45.1 → 7.3 ms; a 3×3/2
//! 256→512 71.6 → 58.5 ms; a 3×3 512→512 forward 53.2 → 42.1 ms, forward + weight gradient 127.2 → 81.6 ms; with
//! an input gradient as well the single convolution is even (242 vs 248 ms), yet a whole finetune step is faster
//! with those on this path too (`bench --mode finetune`: 45–54 against 42 images/s). On 14×14 maps and larger
//! burn's convolution was the faster one in every pass measured, so those keep it. GPU backends keep their own
//! kernels unless `--gpu-conv matmul` sends a CubeCL backend's convolutions, of every size, this way.

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Slice, Tensor};

/// Largest output map (H_out·W_out) that takes the matrix-product path: layer4 of a 224×224 input (7×7).
const MAX_OUTPUT_PIXELS: usize = 49;

/// `conv.forward(x)`, through one matrix product where that is faster (see the module documentation).
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match plan(conv, &x) {
        Some(geometry) => forward_gemm(conv, x, geometry),
        None => conv.forward(x),
    }
}

/// Kernel, stride and padding of a convolution the matrix-product path can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    kernel: usize,
    stride: usize,
    padding: usize,
    out: [usize; 2],
}

fn plan(conv: &Conv2d, x: &Tensor<4>) -> Option<Geometry> {
    let cap = if crate::device::gpu_matmul_convolutions() {
        usize::MAX
    } else if crate::device::backend() == crate::device::Backend::Cpu {
        MAX_OUTPUT_PIXELS
    } else {
        return None;
    };
    geometry(conv, x, cap)
}

/// The geometry of `conv` on `x` where the matrix-product path can compute it with at most `max_output_pixels`
/// output pixels per map.
fn geometry(conv: &Conv2d, x: &Tensor<4>, max_output_pixels: usize) -> Option<Geometry> {
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let padding = match &conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == left && top == bottom && top == right =>
        {
            *top
        }
        PaddingConfig2d::Valid => 0,
        _ => return None,
    };
    if kh != kw || sh != sw || conv.dilation != [1, 1] || conv.groups != 1 || sh == 0 {
        return None;
    }
    let [_, _, h, w] = x.dims();
    if h + 2 * padding < kh || w + 2 * padding < kw {
        return None;
    }
    let out = [
        (h + 2 * padding - kh) / sh + 1,
        (w + 2 * padding - kw) / sw + 1,
    ];
    (out[0] * out[1] <= max_output_pixels).then_some(Geometry {
        kernel: kh,
        stride: sh,
        padding,
        out,
    })
}

fn forward_gemm(conv: &Conv2d, x: Tensor<4>, g: Geometry) -> Tensor<4> {
    let [batch, channels_in, _, _] = x.dims();
    let [ho, wo] = g.out;
    let k = g.kernel;
    let weight = conv.weight.val(); // [C_out, C_in, k, k]
    let channels_out = weight.dims()[0];
    let x = x.swap_dims(0, 1); // [C_in, N, H, W]
    let x = if g.padding > 0 {
        let p = g.padding;
        x.pad((p, p, p, p), burn::tensor::ops::PadMode::Constant(0.0))
    } else {
        x
    };
    let rows = channels_in * k * k;
    let cols = if k == 1 {
        window(x, 0, 0, g).reshape([rows, batch * ho * wo]) // [C_in, N·L]
    } else if x.is_tracked() {
        // The input needs a gradient: k² strided slices, whose backward is a cheap scatter (the strided view of
        // `unfold` differentiates window by window, several times slower here).
        let taps: Vec<Tensor<4>> = (0..k)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .map(|(i, j)| window(x.clone(), i, j, g))
            .collect();
        Tensor::stack::<5>(taps, 1).reshape([rows, batch * ho * wo]) // [C_in·k², N·L]
    } else {
        // No input gradient: `unfold` is a zero-copy view, copied once by the reshape.
        let windows: Tensor<6> = x.unfold::<5, _>(2, k, g.stride).unfold(3, k, g.stride); // [C_in, N, H_out, W_out, k, k]
        windows
            .permute([0, 4, 5, 1, 2, 3]) // [C_in, k, k, N, H_out, W_out]
            .reshape([rows, batch * ho * wo])
    };
    let out = weight
        .reshape([channels_out, rows])
        .matmul(cols) // [C_out, N·L]
        .reshape([channels_out, batch, ho, wo])
        .swap_dims(0, 1); // [N, C_out, H_out, W_out]
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, channels_out, 1, 1]),
        None => out,
    }
}

/// Tap `(i, j)` of every output pixel: `x[:, :, i + s·y, j + s·x]` for the output grid, `[C_in, N, H_out, W_out]`.
fn window(x: Tensor<4>, i: usize, j: usize, g: Geometry) -> Tensor<4> {
    let s = g.stride;
    let [ho, wo] = g.out;
    let tap = |start: usize, len: usize| {
        Slice::new(
            start as isize,
            Some((start + s * (len - 1) + 1) as isize),
            s as isize,
        )
    };
    x.slice([
        Slice::new(0, None, 1),
        Slice::new(0, None, 1),
        tap(i, ho),
        tap(j, wo),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    fn max_difference(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn layer(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        device: &Device,
    ) -> Conv2d {
        Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(
                padding, padding, padding, padding,
            ))
            .with_bias(bias)
            .init(device)
    }

    #[test]
    fn matches_burn_convolution_forward() {
        let device = Device::flex();
        device.seed(3);
        // layer4's three shapes (3×3/2, 1×1/2, 3×3/1), a bias, and an odd map with a 5×5 kernel.
        for (channels, size, kernel, stride, padding, bias) in [
            ([16, 24], 14, 3, 2, 1, false),
            ([16, 24], 14, 1, 2, 0, false),
            ([24, 24], 7, 3, 1, 1, false),
            ([8, 12], 7, 3, 1, 1, true),
            ([6, 10], 9, 5, 2, 2, false),
        ] {
            let conv = layer(channels, kernel, stride, padding, bias, &device);
            let x = Tensor::<4>::random(
                [3, channels[0], size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            assert!(
                plan(&conv, &x).is_some(),
                "{channels:?} {size} takes the product path"
            );
            let ours = forward(&conv, x.clone());
            let theirs = conv.forward(x);
            assert_eq!(ours.dims(), theirs.dims());
            let d = max_difference(ours, theirs);
            assert!(d < 1e-4, "{channels:?} k{kernel}/{stride}: max |Δ| {d}");
        }
    }

    #[test]
    fn the_gpu_route_computes_the_large_maps_too() {
        // `--gpu-conv matmul` on a GPU backend: the same path with no cap on the map size (the stem's 7×7/2,
        // layer1's 3×3, a stride-2 3×3 and a 1×1 downsample, on maps the CPU leaves to burn).
        let device = Device::flex();
        device.seed(5);
        for (channels, size, kernel, stride, padding) in [
            ([3, 8], 32, 7, 2, 3),
            ([8, 8], 28, 3, 1, 1),
            ([8, 16], 28, 3, 2, 1),
            ([8, 16], 28, 1, 2, 0),
        ] {
            let conv = layer(channels, kernel, stride, padding, false, &device);
            let x = Tensor::<4>::random(
                [2, channels[0], size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            assert!(
                plan(&conv, &x).is_none(),
                "the CPU keeps burn's kernel here"
            );
            let g = geometry(&conv, &x, usize::MAX).expect("uncapped, the route takes it");
            let d = max_difference(forward_gemm(&conv, x.clone(), g), conv.forward(x));
            assert!(
                d < 1e-4,
                "{channels:?} k{kernel}/{stride} on {size}: max |Δ| {d}"
            );
        }
    }

    #[test]
    fn gradients_match_burn_convolution() {
        let device = Device::flex().autodiff();
        device.seed(4);
        for (tracked_input, kernel, stride, padding) in [
            (true, 3, 1, 1),
            (false, 3, 2, 1),
            (true, 1, 2, 0),
            (false, 1, 2, 0),
        ] {
            let conv = layer([8, 12], kernel, stride, padding, false, &device);
            let x = Tensor::<4>::random([2, 8, 7, 7], Distribution::Normal(0.0, 1.0), &device);
            let x = if tracked_input { x.require_grad() } else { x };
            assert!(plan(&conv, &x).is_some());
            let upstream = Tensor::<4>::random(
                conv.forward(x.clone()).dims(),
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let grads_of = |y: Tensor<4>| (y * upstream.clone()).sum().backward();
            let ours = grads_of(forward(&conv, x.clone()));
            let theirs = grads_of(conv.forward(x.clone()));
            let weight = |g| conv.weight.val().grad(g).expect("weight gradient");
            let d = max_difference(weight(&ours), weight(&theirs));
            assert!(d < 1e-3, "k{kernel}/{stride} weight gradient: max |Δ| {d}");
            let input = |g| x.grad(g);
            match (input(&ours), input(&theirs)) {
                (Some(a), Some(b)) => {
                    assert!(tracked_input);
                    let d = max_difference(a, b);
                    assert!(d < 1e-3, "k{kernel}/{stride} input gradient: max |Δ| {d}");
                }
                (None, None) => assert!(!tracked_input),
                _ => panic!("k{kernel}/{stride}: only one side has an input gradient"),
            }
        }
    }

    #[test]
    fn large_maps_and_unusual_convolutions_keep_burns_path() {
        let device = Device::flex();
        let conv = layer([4, 4], 3, 1, 1, false, &device);
        let large = Tensor::<4>::zeros([1, 4, 14, 14], &device);
        assert_eq!(
            plan(&conv, &large),
            None,
            "14×14 output: burn's convolution"
        );
        let small = Tensor::<4>::zeros([1, 4, 7, 7], &device);
        assert!(plan(&conv, &small).is_some());
        let dilated = Conv2dConfig::new([4, 4], [3, 3])
            .with_dilation([2, 2])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .init(&device);
        assert_eq!(plan(&dilated, &small), None);
        let grouped = Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(2)
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        assert_eq!(plan(&grouped, &small), None);
    }
}
