//! The demo: the whole job on a generated phantom set, into one folder: generate the set (`data/`),
//! inspect it (`inspect/`), train the seed protocol (`run/`; plus the `full` stage when no ImageNet weights are
//! at hand), explain the test images with Grad-CAM and score the maps against the true masks (`cam/`), turn the
//! CAMs into pseudo-masks and train the U-Net on them in self-training rounds (`seg/`, with `seg/pseudo-masks/`),
//! and write `summary.md` and the self-contained `report.html`.

use super::analysis::{analyse, InspectSettings};
use super::classifier::{comparison_table, train, TrainSettings};
use super::explain::{cam, quality_table, CamSettings, RawFormat};
use super::report::{report, ReportRequest};
use super::unet::{metrics_table, train_unet, UnetSettings};
use crate::cam::{CamLayer, CamMethod};
use crate::data::phantom::{self, SynthConfig};
use crate::pseudo::Recipe;
use crate::train::hyper::Hyperparameters;
use crate::train::unet_config::SegConfig;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

/// What the demo is asked for.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Output folder for the phantom set and every result.
    pub out: PathBuf,
    /// A small set for a quick look (and for the end-to-end test).
    pub quick: bool,
    pub seed: u64,
}

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

/// Run every step; returns the summary (also written to `summary.md`).
pub fn demo(args: &DemoSettings) -> anyhow::Result<String> {
    let start = Instant::now();
    let pretrained = crate::model::fetch::resolve_imagenet(None)?.is_some();
    let plan = plan(args.quick, pretrained);
    let data = args.out.join("data");
    let mut timings = Vec::new();

    let t = Instant::now();
    let synth = SynthConfig {
        train_per_class: plan.train_per_class,
        test_per_class: plan.test_per_class,
        seed: args.seed,
        lesion_scale: plan.lesion_scale,
        ..SynthConfig::default()
    };
    crate::paths::prepare_output(&data, true)?;
    let bar = crate::progress::progress_bar(synth.ids().len() as u64, "synth");
    phantom::generate(&data, &synth, &|| bar.inc(1)).context("demo: generating the phantom set")?;
    bar.finish_and_clear();
    timings.push(("phantom set", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    analyse(&InspectSettings {
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
    let trained = train(&TrainSettings {
        data: data.clone(),
        out: run.clone(),
        seed: args.seed,
        weights: None,
        hyper: Hyperparameters {
            batch_size: plan.batch_size,
            ..Hyperparameters::default()
        },
        baseline_epochs: plan.baseline_epochs,
        finetune_epochs: plan.finetune_epochs,
        full_epochs: Some(plan.full_epochs),
        strict: true,
        force: true,
        resume: false,
        time_limit: None,
    })
    .context("demo: training")?;
    timings.push(("train + evaluate", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let cams = cam(&CamSettings {
        run: run.clone(),
        inputs: vec![data.clone()],
        out: args.out.join("cam"),
        method: vec![CamMethod::GradCam],
        target: None,
        image_weight: 0.5,
        flip_smooth: false,
        layer: CamLayer::Layer4,
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

    let t = Instant::now();
    // The best recipe needs a classifier that has learned the lesions; from scratch offline this one has not
    // (BENCHMARKS.md), so the demo then uses the seed's masks, which cost no occlusion passes.
    let recipe_name = if pretrained { "best" } else { "seed" };
    let seg = train_unet(&UnetSettings {
        run: run.clone(),
        data: data.clone(),
        out: args.out.join("seg"),
        pseudo: None,
        recipe: Recipe::preset(recipe_name)?,
        config: SegConfig {
            rounds: 2,
            epochs: plan.seg_epochs,
            round_epochs: plan.seg_round_epochs,
            ..SegConfig::default()
        },
        seed: args.seed,
        gallery: 12,
    })
    .context("demo: pseudo-masks and U-Net")?;
    timings.push(("pseudo-masks + U-Net", t.elapsed().as_secs_f64()));

    let mut summary = String::from("# TumorNet demo\n\n");
    summary.push_str(&format!(
        "Phantom set: {} training and {} test images per class (seed {}, lesion scale {}), in `data/`. {}\n\n",
        plan.train_per_class,
        plan.test_per_class,
        args.seed,
        plan.lesion_scale,
        if trained.weights_origin.is_pretrained() {
            "Started from ImageNet weights."
        } else {
            OFFLINE_NOTE
        }
    ));
    summary.push_str("## Classification (test split)\n\n");
    summary.push_str(&comparison_table(&trained));
    summary.push_str("\n\n## Grad-CAM quality against the true masks\n\n");
    summary.push_str(&quality_table(&cams));
    summary.push_str("\n## Segmentation (U-Net on CAM pseudo-masks)\n\n");
    summary.push_str(&format!("Pseudo-masks by the `{recipe_name}` recipe.\n\n"));
    summary.push_str(&metrics_table(&seg));
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
    report(&ReportRequest {
        dir: args.out.clone(),
        ..ReportRequest::default()
    })
    .context("demo: the HTML report")?;
    Ok(summary)
}

/// What the summary says when no ImageNet weights were at hand.
const OFFLINE_NOTE: &str = "**No ImageNet weights** (run `tumornet weights fetch` where there is internet): the \
    frozen stages start from random filters and stay near chance; only the `full` stage (every layer, from \
    scratch) learns. At realistic lesion sizes a few hundred images are too few for that, so this offline demo \
    draws lesions twice as large (lesion scale 2): an easier set, on which the numbers below show what the \
    pipeline does with a model that learned something — not what it does on real MRI.";
