//! `tumornet bench`: ResNet18 images/s on the chosen device, with random images and labels, so a GPU build can
//! be measured where only the binary travels. Eval = forward pass in eval mode; train = forward, cross-entropy,
//! backward and an Adam step with every layer learning (PyTorch's `model.train()` on a full fine-tune); prefix and
//! finetune = the two costs of `train` (the cached conv1 … layer3 pass, a layer4 + fc step on cached maps). The
//! warm-up steps (kernel compilation and autotuning on a GPU) are timed separately and reported.

use crate::cli::{BenchArgs, BenchMode};
use crate::model::classifier::Trainable;
use crate::model::inference::{values, Predictor};
use crate::model::ResNet18;
use crate::train::stage::loss_and_correct;
use anyhow::Context;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use std::io::Write;
use std::time::Instant;

/// One measured batch size.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub device: crate::device::Backend,
    /// The float type the measured step ran in (f16 only for `--mode eval` on a GPU backend with `--precision
    /// f16`).
    pub precision: crate::device::Precision,
    /// Whether convolutions took the matrix-product route on a GPU backend (`--gpu-conv matmul`).
    pub gpu_matmul_convolutions: bool,
    pub mode: BenchMode,
    pub batch: usize,
    pub warmup_steps: usize,
    /// Wall time of the warm-up steps (first-run kernel compilation lands here).
    pub warmup_s: f64,
    pub steps: usize,
    /// Median seconds per timed step.
    pub median_step_s: f64,
    pub images_per_s: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(
        args.batch.iter().all(|&b| b > 0),
        "batch sizes must be at least 1"
    );
    for &batch in &args.batch {
        let result = match args.mode {
            BenchMode::Eval => bench_eval(batch, args.warmup, args.steps),
            BenchMode::EvalLayers => bench_eval_layers(batch, args.warmup, args.steps),
            BenchMode::Train => bench_train(batch, args.warmup, args.steps),
            BenchMode::Seg => bench_seg(batch, args.warmup, args.steps),
            BenchMode::Prefix => bench_prefix(batch, args.warmup, args.steps),
            BenchMode::Finetune => bench_finetune(batch, args.warmup, args.steps),
        }?;
        println!(
            "{}{}{} {:?} batch={}: {:.1} images/s (median step {:.1} ms; warm-up {} steps {:.1} s)",
            result.device,
            if result.precision == crate::device::Precision::F16 {
                " f16"
            } else {
                ""
            },
            if result.gpu_matmul_convolutions {
                " matmul-conv"
            } else {
                ""
            },
            result.mode,
            result.batch,
            result.images_per_s,
            result.median_step_s * 1e3,
            result.warmup_steps,
            result.warmup_s
        );
        if let Some(path) = &args.json {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            writeln!(file, "{}", serde_json::to_string(&result)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Time `steps` steps after `warmup` untimed ones; each step takes the state the last one returned (the model a
/// training step updated, or nothing).
fn measure<S>(
    mode: BenchMode,
    batch: usize,
    warmup: usize,
    steps: usize,
    mut state: S,
    mut step: impl FnMut(S) -> anyhow::Result<S>,
) -> anyhow::Result<BenchResult> {
    let start = Instant::now();
    for _ in 0..warmup {
        state = step(state)?;
    }
    let warmup_s = start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        state = step(state)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(BenchResult {
        device: crate::device::backend(),
        // Half precision reaches classifier inference only (`Predictor`), i.e. `--mode eval`.
        precision: match mode {
            BenchMode::Eval => crate::device::precision(),
            _ => crate::device::Precision::F32,
        },
        gpu_matmul_convolutions: crate::device::gpu_matmul_convolutions(),
        mode,
        batch,
        warmup_steps: warmup,
        warmup_s,
        steps: times.len(),
        median_step_s: median,
        images_per_s: batch as f64 / median,
    })
}

/// Inference images/s at `batch` as `predict` and `evaluate` run it (on the CPU with BatchNorm folded; also
/// what `cargo bench --bench eval` reports).
pub fn bench_eval(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    let mut predictor = None;
    bench_inference(BenchMode::Eval, batch, warmup, steps, |model, x| {
        let predictor = predictor.get_or_insert_with(|| Predictor::new(model));
        Ok(predictor.logits(x)?)
    })
}

/// Inference images/s at `batch` through burn's own layers (BatchNorm as a pass of its own): the reference
/// the folded path is measured against.
pub fn bench_eval_layers(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    bench_inference(BenchMode::EvalLayers, batch, warmup, steps, |model, x| {
        Ok(model.forward(x))
    })
}

/// Images/s through the frozen prefix (conv1 … layer3, eval mode): the cache pass of `train`.
pub fn bench_prefix(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    bench_inference(BenchMode::Prefix, batch, warmup, steps, |model, x| {
        Ok(model.to_layer3(x))
    })
}

/// Training-step images/s at `batch`: forward, cross-entropy, backward, Adam, every layer learning.
pub fn bench_train(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    let device = crate::device::training();
    device.seed(0);
    let model = ResNet18::new(4, &device);
    let x = random_batch([batch, 3, 224, 224], &device);
    bench_step(BenchMode::Train, warmup, steps, model, x, |model, x| {
        model.forward(x)
    })
}

/// `finetune` step images/s at `batch` on cached layer3 maps: layer4 + fc learn, the input needs no gradient.
pub fn bench_finetune(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    let device = crate::device::training();
    device.seed(0);
    let model = Trainable::Layer4AndHead.apply(ResNet18::new(4, &device));
    let maps = random_batch([batch, 256, 14, 14], &device);
    bench_step(
        BenchMode::Finetune,
        warmup,
        steps,
        model,
        maps,
        |model, maps| model.head(model.layer4(maps)),
    )
}

fn random_batch(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Time `run` on a random 224×224 batch with an inference-mode model.
fn bench_inference<const D: usize>(
    mode: BenchMode,
    batch: usize,
    warmup: usize,
    steps: usize,
    mut run: impl FnMut(&ResNet18, Tensor<4>) -> anyhow::Result<Tensor<D>>,
) -> anyhow::Result<BenchResult> {
    let device = crate::device::inference();
    device.seed(0);
    let model = ResNet18::new(4, &device);
    let x = random_batch([batch, 3, 224, 224], &device);
    // Reading the output back waits for the device, so a step's time is its whole work.
    measure(mode, batch, warmup, steps, (), |()| {
        values(run(&model, x.clone())?)?;
        Ok(())
    })
}

/// Time training steps (forward by `logits`, cross-entropy, backward, Adam) on the fixed batch `input`.
fn bench_step(
    mode: BenchMode,
    warmup: usize,
    steps: usize,
    model: ResNet18,
    input: Tensor<4>,
    logits: impl Fn(&ResNet18, Tensor<4>) -> Tensor<2>,
) -> anyhow::Result<BenchResult> {
    let device = input.device();
    let batch = input.dims()[0];
    let labels: Vec<usize> = (0..batch).map(|i| i % 4).collect();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    measure(mode, batch, warmup, steps, model, |model| {
        let (loss, _) = loss_and_correct(logits(&model, input.clone()), &labels, &device);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(1e-4, model, grads);
        // Reading a weight back waits for the step to finish.
        values(model.fc.weight.val())?;
        Ok(model)
    })
}

/// U-Net training-step images/s at `batch`, 128×128, encoder frozen, as `train-seg` trains by default (its
/// [`SegTrainer`]: on the CPU the folded encoder and the host-trained decoder, on a GPU burn's autodiff).
pub fn bench_seg(batch: usize, warmup: usize, steps: usize) -> anyhow::Result<BenchResult> {
    use crate::model::unet::UNet;
    use crate::train::segmentation::{DiceLoss, SegTrainer};
    use burn::module::Module;
    use rand::Rng;
    let device = crate::device::inference();
    device.seed(0);
    let mut unet = UNet::new(ResNet18::new(4, &device), &device).train();
    unet.encoder = unet.encoder.freeze();
    let mut trainer = SegTrainer::new(&unet, true)?;
    let mut draws = crate::rng::stream(0, "bench seg", &[]);
    let images: Vec<image::RgbImage> = (0..batch)
        .map(|_| image::RgbImage::from_fn(128, 128, |_, _| image::Rgb(draws.random())))
        .collect();
    let target: Vec<f32> = (0..batch * 128 * 128)
        .map(|_| f32::from(draws.random_bool(0.05)))
        .collect();
    let weight = vec![1.0f32; target.len()];
    measure(BenchMode::Seg, batch, warmup, steps, unet, |unet| {
        let (unet, _) = trainer.step(unet, &images, &target, &weight, DiceLoss::Batch, 1e-3)?;
        // Reading a weight back waits for the step to finish (on a GPU).
        values(unet.head.weight.val())?;
        Ok(unet)
    })
}
