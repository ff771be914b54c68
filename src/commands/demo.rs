//! `tumornet demo`: the whole job on a generated phantom set, into one folder: generate the set (`data/`),
//! inspect it (`inspect/`), train the seed protocol (`run/`; plus the `full` stage when no ImageNet weights are
//! at hand), explain the test images with Grad-CAM and score the maps against the true masks (`cam/`), turn the
//! CAMs into pseudo-masks and train the U-Net on them in self-training rounds (`seg/`, with `seg/pseudo-masks/`),
//! and write `summary.md` and the self-contained `report.html`.

use crate::cli::{
    args_from, CamArgs, DemoArgs, InspectArgs, ReportArgs, SynthArgs, TrainArgs, TrainSegArgs,
};
use anyhow::Context;
use std::time::Instant;

/// Lesion sizes of the phantom when no ImageNet weights are at hand: twice the realistic ranges, so that a
/// ResNet18 trained from scratch on a few hundred images has something it can learn (the realistic set stays at
/// chance from scratch; see BENCHMARKS.md).
pub const OFFLINE_LESION_SCALE: f32 = 2.0;

/// Sizes of a demo run.
struct Plan {
    train_per_class: usize,
    test_per_class: usize,
    lesion_scale: f32,
    baseline_epochs: usize,
    finetune_epochs: usize,
    /// Epochs of the `full` stage (only when no ImageNet weights are available).
    full_epochs: usize,
    /// Classifier batch size (offline 8: more steps per epoch learned faster from scratch than 32).
    batch_size: usize,
    /// U-Net epochs of the first and of the second (self-training) round.
    seg_epochs: usize,
    seg_round_epochs: usize,
}

fn plan(quick: bool, pretrained: bool) -> Plan {
    match (quick, pretrained) {
        (true, _) => Plan {
            train_per_class: 12,
            test_per_class: 6,
            lesion_scale: if pretrained {
                1.0
            } else {
                OFFLINE_LESION_SCALE
            },
            baseline_epochs: 2,
            finetune_epochs: 2,
            full_epochs: if pretrained { 0 } else { 2 },
            batch_size: 32,
            seg_epochs: 1,
            seg_round_epochs: 1,
        },
        (false, true) => Plan {
            train_per_class: 150,
            test_per_class: 50,
            lesion_scale: 1.0,
            baseline_epochs: 5,
            finetune_epochs: 5,
            full_epochs: 0,
            batch_size: 32,
            seg_epochs: 4,
            seg_round_epochs: 2,
        },
        // Offline the frozen stages cannot learn (random filters): short, to show the protocol; the time goes
        // to the `full` stage.
        (false, false) => Plan {
            train_per_class: 120,
            test_per_class: 40,
            lesion_scale: OFFLINE_LESION_SCALE,
            baseline_epochs: 2,
            finetune_epochs: 1,
            full_epochs: 8,
            batch_size: 8,
            seg_epochs: 2,
            seg_round_epochs: 1,
        },
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let pretrained = super::weights::resolve_imagenet(None)?.is_some();
    let plan = plan(args.quick, pretrained);
    let data = args.out.join("data");
    let mut timings = Vec::new();

    // Each phase's arguments as a user would type them; everything not given takes the command's default.
    let argv = |items: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<std::ffi::OsString> {
        items.iter().map(|a| a.as_ref().to_os_string()).collect()
    };
    let seed = args.seed.to_string();

    let t = Instant::now();
    let synth: SynthArgs = args_from(argv(&[
        &data,
        &"--train",
        &plan.train_per_class.to_string(),
        &"--test",
        &plan.test_per_class.to_string(),
        &"--seed",
        &seed,
        &"--lesion-scale",
        &plan.lesion_scale.to_string(),
        &"--force",
    ]))?;
    super::synth::run(&synth).context("demo: generating the phantom set")?;
    timings.push(("phantom set", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let inspect: InspectArgs = args_from(argv(&[
        &data,
        &"--out",
        &args.out.join("inspect"),
        &"--strict",
    ]))?;
    super::inspect::run(&inspect).context("demo: inspecting the phantom set")?;
    timings.push(("inspect", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let run = args.out.join("run");
    let train: TrainArgs = args_from(argv(&[
        &data,
        &"--out",
        &run,
        &"--seed",
        &seed,
        &"--baseline-epochs",
        &plan.baseline_epochs.to_string(),
        &"--finetune-epochs",
        &plan.finetune_epochs.to_string(),
        &"--full-epochs",
        &plan.full_epochs.to_string(),
        &"--batch-size",
        &plan.batch_size.to_string(),
        &"--strict",
        &"--force",
    ]))?;
    let report = super::train::train(&train).context("demo: training")?;
    timings.push(("train + evaluate", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let cam: CamArgs = args_from(argv(&[
        &run,
        &data,
        &"--out",
        &args.out.join("cam"),
        &"--raw",
        &"none",
        &"--seed",
        &seed,
    ]))?;
    let cams = super::cam::cam(&cam).context("demo: Grad-CAM")?;
    timings.push(("Grad-CAM + quality", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let seg_dir = args.out.join("seg");
    let train_seg: TrainSegArgs = args_from(argv(&[
        &run,
        &data,
        &"--out",
        &seg_dir,
        &"--rounds",
        &"2",
        &"--epochs",
        &plan.seg_epochs.to_string(),
        &"--round-epochs",
        &plan.seg_round_epochs.to_string(),
        &"--seed",
        &seed,
    ]))?;
    let seg = super::train_seg::train_seg(&train_seg).context("demo: pseudo-masks and U-Net")?;
    timings.push(("pseudo-masks + U-Net", t.elapsed().as_secs_f64()));

    let mut summary = String::from("# TumorNet demo\n\n");
    summary.push_str(&format!(
        "Phantom set: {} training and {} test images per class (seed {}, lesion scale {}), in `data/`. {}\n\n",
        plan.train_per_class,
        plan.test_per_class,
        args.seed,
        plan.lesion_scale,
        if report.weights_origin.is_pretrained() {
            "Started from ImageNet weights."
        } else {
            "**No ImageNet weights** (run `tumornet weights fetch` where there is internet): the frozen stages \
             start from random filters and stay near chance; only the `full` stage (every layer, from scratch) \
             learns. At realistic lesion sizes a few hundred images are too few for that, so this offline demo \
             draws lesions twice as large (`--lesion-scale 2`): an easier set, on which the numbers below show \
             what the pipeline does with a model that learned something — not what it does on real MRI."
        }
    ));
    summary.push_str("## Classification (test split)\n\n");
    summary.push_str(&super::train::comparison_table(&report));
    summary.push_str("\n\n## Grad-CAM quality against the true masks\n\n");
    summary.push_str(&super::cam::quality_table(&cams));
    summary.push_str("\n## Segmentation (U-Net on CAM pseudo-masks)\n\n");
    summary.push_str(&super::train_seg::metrics_table(&seg));
    summary.push_str("\n## Time\n\n| phase | seconds |\n|---|---|\n");
    for (phase, seconds) in &timings {
        summary.push_str(&format!("| {phase} | {seconds:.1} |\n"));
    }
    summary.push_str(&format!(
        "| total | {:.1} |\n\nFigures: `inspect/analysis.png`, `run/curves.png`, `run/confusion_*.png`, \
         `cam/grid.png`, `seg/pseudo-masks/gallery.png`, `seg/gallery.png`; numbers: `run/metrics.json`, \
         `cam/cam.json`, `seg/seg.json`. Everything in one page: `report.html`.\n",
        start.elapsed().as_secs_f64()
    ));
    let path = args.out.join("summary.md");
    std::fs::write(&path, &summary).with_context(|| format!("writing {}", path.display()))?;
    let report: ReportArgs = args_from(argv(&[&args.out]))?;
    super::report::report(&report).context("demo: the HTML report")?;
    println!("\n{summary}");
    println!(
        "Demo finished in {:.0} s; everything is in {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
