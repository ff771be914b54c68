//! Benchmark: layer4's convolutions (batch 32, 224×224 input) through burn's `Conv2d::forward` and through
//! `tumornet::model::conv::forward` (one matrix product), forward alone and forward + backward with and without
//! an input gradient — the measurement behind `src/model/conv.rs`. Best of 5 after one warm-up. Run:
//! `cargo bench --bench conv`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn best_ms(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best * 1e3)
}

fn read(t: Tensor<4>) -> anyhow::Result<()> {
    std::hint::black_box(tumornet::model::inference::values(t)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tumornet::allocator::tune();
    let batch = 32;
    // (name, channels in → out, input size, kernel, stride, padding)
    let shapes = [
        ("layer4.0.conv1 3×3/2", [256, 512], 14, 3, 2, 1),
        ("layer4.0.downsample 1×1/2", [256, 512], 14, 1, 2, 0),
        ("layer4.x.conv 3×3/1", [512, 512], 7, 3, 1, 1),
    ];
    println!("| convolution | pass | burn Conv2d | one matmul |");
    println!("| --- | --- | --- | --- |");
    for (name, channels, size, kernel, stride, padding) in shapes {
        let conv_on = |device: &Device| -> Conv2d {
            device.seed(0);
            Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(
                    padding, padding, padding, padding,
                ))
                .with_bias(false)
                .init(device)
        };
        let plain = Device::flex();
        let conv = conv_on(&plain);
        let x = Tensor::<4>::random(
            [batch, channels[0], size, size],
            Distribution::Normal(0.0, 1.0),
            &plain,
        );
        let burn_ms = best_ms(|| read(conv.forward(x.clone())))?;
        let ours_ms = best_ms(|| read(tumornet::model::conv::forward(&conv, x.clone())))?;
        println!("| {name} | forward | {burn_ms:.1} ms | {ours_ms:.1} ms |");
        let autodiff = plain.clone().autodiff();
        let conv = conv_on(&autodiff);
        for input_gradient in [false, true] {
            let x = Tensor::<4>::random(
                [batch, channels[0], size, size],
                Distribution::Normal(0.0, 1.0),
                &autodiff,
            );
            let x = if input_gradient { x.require_grad() } else { x };
            let step = |forward: &dyn Fn(Tensor<4>) -> Tensor<4>| -> anyhow::Result<()> {
                let grads = forward(x.clone()).sum().backward();
                let weight = conv
                    .weight
                    .val()
                    .grad(&grads)
                    .ok_or_else(|| anyhow::anyhow!("no weight gradient"))?;
                read(weight)
            };
            let burn_ms = best_ms(|| step(&|x| conv.forward(x)))?;
            let ours_ms = best_ms(|| step(&|x| tumornet::model::conv::forward(&conv, x)))?;
            let pass = if input_gradient {
                "forward + backward (weight and input gradients)"
            } else {
                "forward + backward (weight gradient)"
            };
            println!("| {name} | {pass} | {burn_ms:.1} ms | {ours_ms:.1} ms |");
        }
    }
    Ok(())
}
