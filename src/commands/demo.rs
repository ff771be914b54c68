//! `tumornet demo`: the whole job on a generated phantom set, into one folder: generate the set (`data/`),
//! inspect it (`inspect/`), train the seed protocol (`run/`; plus the `full` stage when no ImageNet weights are
//! at hand), explain the test images with Grad-CAM and score the maps against the true masks (`cam/`), and write
//! `summary.md`. Segmentation and the HTML report join as they land.

use crate::cli::{CamArgs, DemoArgs, InspectArgs, RawFormat, SynthArgs, TrainArgs};
use anyhow::Context;
use std::time::Instant;

/// Sizes of a demo run.
struct Plan {
    train_per_class: usize,
    test_per_class: usize,
    baseline_epochs: usize,
    finetune_epochs: usize,
    /// Epochs of the `full` stage when no ImageNet weights are available.
    offline_full_epochs: usize,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            train_per_class: 12,
            test_per_class: 6,
            baseline_epochs: 2,
            finetune_epochs: 2,
            offline_full_epochs: 2,
        }
    } else {
        Plan {
            train_per_class: 150,
            test_per_class: 50,
            baseline_epochs: 5,
            finetune_epochs: 3,
            offline_full_epochs: 5,
        }
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let plan = plan(args.quick);
    let data = args.out.join("data");
    let mut timings = Vec::new();

    let t = Instant::now();
    super::synth::run(&SynthArgs {
        out: data.clone(),
        train: plan.train_per_class,
        test: plan.test_per_class,
        seed: args.seed,
        min_size: 256,
        max_size: 512,
        jpeg_quality: 90,
        force: true,
    })
    .context("demo: generating the phantom set")?;
    timings.push(("phantom set", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    super::inspect::run(&InspectArgs {
        data: data.clone(),
        out: args.out.join("inspect"),
        strict: true,
        near_threshold: crate::data::audit::DEFAULT_NEAR_THRESHOLD,
        samples: 6,
    })
    .context("demo: inspecting the phantom set")?;
    timings.push(("inspect", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let run = args.out.join("run");
    let imagenet = super::weights::resolve_imagenet(None)?;
    let full_epochs = if imagenet.is_some() {
        0
    } else {
        plan.offline_full_epochs
    };
    let report = super::train::train(&TrainArgs {
        data: data.clone(),
        out: run.clone(),
        seed: args.seed,
        weights: None,
        baseline_epochs: plan.baseline_epochs,
        finetune_epochs: plan.finetune_epochs,
        full_epochs: Some(full_epochs),
        baseline_lr: 1e-3,
        finetune_lr: 1e-4,
        full_lr: 1e-3,
        sgd: false,
        momentum: 0.9,
        weight_decay: 0.0,
        constant_lr: false,
        batch_size: 32,
        validation_fraction: 0.1,
        recalibrate_bn: false,
        strict: true,
        force: true,
        resume: false,
    })
    .context("demo: training")?;
    timings.push(("train + evaluate", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let cams = super::cam::cam(&CamArgs {
        run: run.clone(),
        inputs: vec![data.clone()],
        out: args.out.join("cam"),
        method: vec![crate::cam::CamMethod::GradCam],
        target: None,
        image_weight: 0.5,
        flip_smooth: false,
        raw: RawFormat::None,
        threshold: 0.5,
        delete_fraction: 0.2,
        grid: 24,
        batch_size: 16,
        seed: args.seed,
        volume: Default::default(),
    })
    .context("demo: Grad-CAM")?;
    timings.push(("Grad-CAM + quality", t.elapsed().as_secs_f64()));

    let mut summary = String::from("# TumorNet demo\n\n");
    summary.push_str(&format!(
        "Phantom set: {} training and {} test images per class (seed {}), in `data/`. {}\n\n",
        plan.train_per_class,
        plan.test_per_class,
        args.seed,
        if imagenet.is_some() {
            "Started from ImageNet weights."
        } else {
            "**No ImageNet weights** (run `tumornet weights fetch` where there is internet): the frozen stages \
             start from random filters and stay near chance; the `full` stage trains every layer but a few \
             hundred images are not enough to learn the lesions from scratch. The numbers below show the \
             pipeline, not a useful model."
        }
    ));
    summary.push_str("## Classification (test split)\n\n");
    summary.push_str(&super::train::comparison_table(&report));
    summary.push_str("\n\n## Grad-CAM quality against the true masks\n\n");
    summary.push_str(&super::cam::quality_table(&cams));
    summary.push_str("\n## Time\n\n| phase | seconds |\n|---|---|\n");
    for (phase, seconds) in &timings {
        summary.push_str(&format!("| {phase} | {seconds:.1} |\n"));
    }
    summary.push_str(&format!(
        "| total | {:.1} |\n\nFigures: `inspect/analysis.png`, `run/curves.png`, `run/confusion_*.png`, \
         `cam/grid.png`; numbers: `run/metrics.json`, `cam/cam.json`.\n",
        start.elapsed().as_secs_f64()
    ));
    let path = args.out.join("summary.md");
    std::fs::write(&path, &summary).with_context(|| format!("writing {}", path.display()))?;
    println!("\n{summary}");
    println!(
        "Demo finished in {:.0} s; everything is in {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
