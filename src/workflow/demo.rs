//! The demo: the whole job on a generated phantom set, into one folder: generate the set (`data/`),
//! inspect it (`inspect/`), train the seed protocol (`run/`) from ImageNet weights when they are cached, else from
//! the built-in phantom-trained backbone (or, `--from-scratch`, from random init with the `full` stage), explain the test images with Grad-CAM and score the maps against the true masks (`cam/`), turn the
//! CAMs into pseudo-masks and train the U-Net on them in self-training rounds (`seg/`, with `seg/pseudo-masks/`),
//! and write `summary.md` and the self-contained `report.html`.

use super::analysis::{analyse, InspectSettings};
use super::classifier::{comparison_table, train, TrainSettings};
use super::explain::{cam, quality_table, CamSettings, RawFormat};
use super::report::{report, ReportRequest};
use super::unet::{metrics_table, train_unet, UnetSettings};
use crate::cam::{CamLayer, CamMethod};
use crate::data::phantom::{self, SynthConfig};
use crate::model::backbone::BackboneChoice;
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
    /// Random init and the `full` stage instead of a pretrained backbone.
    pub from_scratch: bool,
    pub seed: u64,
}

/// Lesion sizes of the phantom when no ImageNet weights are at hand: twice the realistic ranges, the scale the
/// built-in phantom backbone learned (and one a ResNet18 trained from scratch on a few hundred images can learn;
/// the realistic set stays at chance from scratch, see BENCHMARKS.md).
pub const OFFLINE_LESION_SCALE: f32 = crate::model::backbone::PHANTOM_LESION_SCALE;

/// The backbone the demo starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Cached ImageNet weights (`weights fetch`): realistic lesion sizes.
    ImageNet,
    /// No ImageNet weights: the built-in phantom-trained backbone, the offline stand-in.
    Phantom,
    /// `--from-scratch`: torchvision's random init and the `full` stage.
    Scratch,
}

/// Sizes of a demo run.
struct Plan {
    train_per_class: usize,
    test_per_class: usize,
    lesion_scale: f32,
    baseline_epochs: usize,
    finetune_epochs: usize,
    /// Epochs of the `full` stage (from scratch only).
    full_epochs: usize,
    /// Classifier batch size (from scratch 8: more steps per epoch learned faster than 32).
    batch_size: usize,
    /// The pseudo-mask recipe.
    recipe: &'static str,
    /// The U-Net's rounds and the epochs of its first and later rounds.
    seg_rounds: usize,
    seg_epochs: usize,
    seg_round_epochs: usize,
    /// Share of Training held out to pick the U-Net's epoch (0: all images train it, the last epoch is kept).
    seg_validation: f64,
}

fn plan(quick: bool, start: Start) -> Plan {
    let lesion_scale = match start {
        Start::ImageNet => 1.0,
        Start::Phantom | Start::Scratch => OFFLINE_LESION_SCALE,
    };
    match (quick, start) {
        // The seed's two stages from a pretrained backbone, the best recipe, the U-Net's best settings (one
        // round), sized to run in under ten minutes on two cores. The U-Net learns from its pseudo-masks only with
        // enough images: at 40 per class it stayed near 0.53 mean Dice whatever the epochs (20 epochs overfit);
        // at 80 per class 6 epochs gave 0.563, 10 gave 0.598 and 16 gave 0.601; every Training image rather than
        // four fifths: +0.005 on this set, +0.039 on the seed-1 set (docs/experiments/log.md).
        (false, Start::ImageNet | Start::Phantom) => Plan {
            train_per_class: 80,
            test_per_class: 25,
            lesion_scale,
            baseline_epochs: 5,
            finetune_epochs: 5,
            full_epochs: 0,
            batch_size: 32,
            recipe: "best",
            seg_rounds: 1,
            seg_epochs: 12,
            seg_round_epochs: 1,
            seg_validation: 0.0,
        },
        // Few images: more epochs and smaller batches, so that the new head takes enough steps (a baseline
        // epoch on cached features costs milliseconds).
        (true, Start::ImageNet | Start::Phantom) => Plan {
            train_per_class: 8,
            test_per_class: 4,
            lesion_scale,
            baseline_epochs: 10,
            finetune_epochs: 5,
            full_epochs: 0,
            batch_size: 8,
            recipe: "best",
            seg_rounds: 1,
            seg_epochs: 4,
            seg_round_epochs: 1,
            seg_validation: 0.0,
        },
        // From scratch the frozen stages cannot learn (random filters): short, to show the protocol; the time
        // goes to the `full` stage. The best recipe needs a classifier that learned the lesions: the seed's.
        (false, Start::Scratch) => Plan {
            train_per_class: 120,
            test_per_class: 40,
            lesion_scale,
            baseline_epochs: 2,
            finetune_epochs: 1,
            full_epochs: 8,
            batch_size: 8,
            recipe: "seed",
            seg_rounds: 2,
            seg_epochs: 2,
            seg_round_epochs: 1,
            seg_validation: 0.2,
        },
        (true, Start::Scratch) => Plan {
            train_per_class: 12,
            test_per_class: 6,
            lesion_scale,
            baseline_epochs: 2,
            finetune_epochs: 2,
            full_epochs: 2,
            batch_size: 32,
            recipe: "seed",
            seg_rounds: 2,
            seg_epochs: 1,
            seg_round_epochs: 1,
            seg_validation: 0.2,
        },
    }
}

/// Run every step; returns the summary (also written to `summary.md`).
pub fn demo(args: &DemoSettings) -> anyhow::Result<String> {
    let start = Instant::now();
    let imagenet = crate::model::fetch::resolve_imagenet(None)?;
    let (start_from, weights) = match (args.from_scratch, imagenet) {
        (true, _) => (Start::Scratch, BackboneChoice::RandomInit),
        (false, Some(path)) => (Start::ImageNet, BackboneChoice::File(path)),
        (false, None) => (Start::Phantom, BackboneChoice::Phantom),
    };
    let plan = plan(args.quick, start_from);
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
        weights,
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
    let seg = train_unet(&UnetSettings {
        run: run.clone(),
        data: data.clone(),
        out: args.out.join("seg"),
        pseudo: None,
        recipe: Recipe::preset(plan.recipe)?,
        config: SegConfig {
            rounds: plan.seg_rounds,
            epochs: plan.seg_epochs,
            round_epochs: plan.seg_round_epochs,
            validation_fraction: plan.seg_validation,
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
        match start_from {
            Start::ImageNet => format!("Backbone: ImageNet weights, {}.", trained.weights_origin.describe()),
            Start::Phantom => PHANTOM_NOTE.to_string(),
            Start::Scratch => SCRATCH_NOTE.to_string(),
        }
    ));
    summary.push_str("## Classification (test split)\n\n");
    summary.push_str(&comparison_table(&trained));
    summary.push_str("\n\n## Grad-CAM quality against the true masks\n\n");
    summary.push_str(&quality_table(&cams));
    summary.push_str("\n## Segmentation (U-Net on CAM pseudo-masks)\n\n");
    summary.push_str(&format!(
        "Pseudo-masks by the `{}` recipe (`tumornet config recipe {}` prints it).\n\n",
        plan.recipe, plan.recipe
    ));
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

/// What the summary says when the demo started from the built-in phantom backbone.
const PHANTOM_NOTE: &str = "**Backbone: TumorNet's phantom-trained ResNet18**, the offline stand-in for ImageNet \
    weights (none are cached here; `tumornet weights fetch` where there is internet, and the demo uses them \
    instead). It was trained by TumorNet on a phantom set of another seed, with lesions drawn twice the realistic \
    size (lesion scale 2), so this demo draws its set at that scale too. The seed's two stages then run from it \
    as from ImageNet: the frozen backbone with a new head, then layer4 fine-tuned. **It has seen phantom images \
    only: it is not a model for real scans.**";

/// What the summary says when asked to start from random init.
const SCRATCH_NOTE: &str = "**From scratch** (`--from-scratch`): the frozen stages start from random filters and \
    stay near chance; only the `full` stage (every layer, from scratch) learns. At realistic lesion sizes a few \
    hundred images are too few for that, so this demo draws lesions twice as large (lesion scale 2): an easier \
    set, on which the numbers below show what the pipeline does with a model that learned a little — not what it \
    does on real MRI.";
