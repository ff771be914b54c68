//! Training a classifier run: the seed protocol (baseline → finetune, optionally full), with a stratified
//! validation split for best-epoch selection and the test split touched only for the final evaluation; writes the
//! run folder (models per stage, `run.json`, `metrics.json`, `history.csv`, `comparison.md`, figures).

use crate::data::scan::{self, Split};
use crate::data::Class;
use crate::metrics::predictions::{predictions, write_csv, Prediction};
use crate::metrics::report::{classification_report, ClassificationReport};
use crate::model::backbone::{Backbone, BackboneChoice};
use crate::model::run::{save_run, RunConfig, WeightsOrigin};
use crate::model::ResNet18;
use crate::progress::progress_bar;
use crate::train::config::{Stage, TrainConfig};
use crate::train::data::{prepare, stratified_split};
use crate::train::history::{to_csv, EpochRecord};
use crate::train::hyper::Hyperparameters;
use crate::train::{checkpoint, run_protocol, Checkpointing, Progress, StageOutcome, TrainingData};
use crate::viz::{self, plots};
use anyhow::{bail, Context};
use burn::module::Module;
use indicatif::ProgressBar;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `metrics.json`: each stage's test-set report, plus timings.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub config: TrainConfig,
    pub weights_origin: WeightsOrigin,
    pub stages: BTreeMap<String, StageReport>,
    pub total_seconds: f64,
    pub prepare_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct StageReport {
    pub seconds: f64,
    pub best_validation_accuracy: f64,
    pub test: Option<ClassificationReport>,
}

struct Bars {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: u64) {
        if let Some(old) = self.bar.borrow_mut().take() {
            old.finish_and_clear();
        }
        *self.bar.borrow_mut() = Some(progress_bar(total, name));
    }

    fn advance(&self, units: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(units);
        }
    }
}

/// What to train, from what, and where.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// Dataset folder (Kaggle layout; Training/ is split into train and validation, Testing/ scores the result).
    pub data: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Weights to start from (`Auto`: the cached `weights fetch` file, if any, else random init).
    pub weights: BackboneChoice,
    pub hyper: Hyperparameters,
    pub baseline_epochs: usize,
    pub finetune_epochs: usize,
    /// `None`: 0 with ImageNet weights, [`DEFAULT_OFFLINE_FULL_EPOCHS`] without.
    pub full_epochs: Option<usize>,
    /// Stop on any unreadable file.
    pub strict: bool,
    /// Write into a non-empty run folder.
    pub force: bool,
    /// Continue an interrupted run from its last complete epoch.
    pub resume: bool,
    /// Start no epoch after this many minutes.
    pub time_limit: Option<f64>,
}

/// Train and evaluate; returns what was written to `metrics.json`.
pub fn train(args: &TrainSettings) -> anyhow::Result<TrainReport> {
    let start = Instant::now();
    let deadline = match args.time_limit {
        None => None,
        Some(minutes) => Some(
            std::time::Duration::try_from_secs_f64(minutes * 60.0)
                .ok()
                .filter(|limit| !limit.is_zero())
                .and_then(|limit| start.checked_add(limit))
                .with_context(|| {
                    format!("--time-limit must be a positive number of minutes, not {minutes}")
                })?,
        ),
    };
    // Weights: given, cached, built in, or none (then say so, once, and make sure a stage can learn).
    let backbone = Backbone::resolve(&args.weights)?;
    let full_epochs = args
        .full_epochs
        .unwrap_or(if backbone == Backbone::RandomInit {
            DEFAULT_OFFLINE_FULL_EPOCHS
        } else {
            0
        });
    let hyper = &args.hyper;
    for (key, set) in [
        ("random_erasing", hyper.random_erasing > 0.0),
        ("random_resize_min", hyper.random_resize_min > 0),
    ] {
        if set && full_epochs == 0 && !args.resume {
            bail!(
                "{key} applies to the `full` stage only (the cached stages reuse fixed features): \
                 give --full-epochs above 0, or leave it at 0"
            );
        }
    }
    let resume = if args.resume {
        let state = checkpoint::read_state(&args.out)?.with_context(|| {
            format!(
                "{}: no checkpoint to resume (checkpoint/state.json is missing)",
                args.out.display()
            )
        })?;
        tracing::info!(
            "resuming {}: {} stage(s) done{}",
            args.out.display(),
            state.completed.len(),
            state
                .current
                .as_ref()
                .map(|c| format!(", {} at epoch {}", c.stage, c.epochs_done))
                .unwrap_or_default()
        );
        Some(state)
    } else {
        crate::paths::prepare_output(&args.out, args.force)?;
        None
    };
    let scanned = crate::data::scan::scan_logged(&args.data, args.strict)?;
    let dataset = scanned.dataset;
    let source = crate::data::provenance::data_source(&dataset);
    let train_samples: Vec<_> = dataset.split(Split::Training).collect();
    let test_samples: Vec<_> = dataset.split(Split::Testing).collect();
    if train_samples.is_empty() {
        bail!(scan::ScanError::NoClassFolders(args.data.join("Training")));
    }

    // Initialise (and load) on the host, move to the compute device, and switch autodiff on with `train()`: one
    // seed gives the same starting weights on every backend.
    let host = crate::device::host();
    host.seed(args.seed);
    let fresh = ResNet18::new(Class::COUNT, &host);
    let (model, origin, loaded) = backbone
        .load(fresh, args.seed)
        .context("loading the starting weights")?;
    if let Some(report) = loaded {
        tracing::info!(
            "starting from {} ({} tensors; head {})",
            origin.describe(),
            report.applied,
            if report.head_replaced.is_some() || report.missing.iter().any(|t| t.starts_with("fc."))
            {
                "fresh"
            } else {
                "loaded"
            }
        );
    }
    let model = crate::device::from_host(model, &crate::device::inference()).train();
    // A resumed run keeps the configuration and weights origin it started with.
    let config = resume.as_ref().map_or_else(
        || {
            hyper.train_config(
                args.seed,
                args.baseline_epochs,
                args.finetune_epochs,
                full_epochs,
            )
        },
        |s| s.config.clone(),
    );
    let origin = resume.as_ref().map_or(origin, |s| s.weights_origin.clone());
    if matches!(origin, WeightsOrigin::Phantom { .. }) {
        eprintln!(
            "note: starting from TumorNet's phantom-trained backbone (the offline demo's start, or `--weights \
             phantom`): its features were learned on phantom images only; use ImageNet weights for real scans"
        );
    }
    // Said once per command, with the epochs the run will have (a resumed run's own, not this command's flags).
    if matches!(origin, WeightsOrigin::RandomInit { .. }) {
        let full: usize = config
            .stages
            .iter()
            .filter(|s| s.stage == Stage::Full)
            .map(|s| s.epochs)
            .sum();
        eprintln!(
            "note: no ImageNet weights (none given with --weights, none cached by `tumornet weights fetch`): \
             starting from torchvision's random init. The frozen stages cannot learn useful features from \
             random filters; {}",
            if full > 0 {
                format!("the `full` stage (all layers) runs too ({full} epochs).")
            } else {
                "with --full-epochs 0, expect chance accuracy.".to_string()
            }
        );
    }

    // Decode once.
    let bar = progress_bar((train_samples.len() + test_samples.len()) as u64, "decode");
    let (all_train, train_errors) = prepare(
        &train_samples,
        crate::data::preprocess::CLASSIFIER_SIZE,
        &|| bar.inc(1),
    );
    let (test, test_errors) = prepare(
        &test_samples,
        crate::data::preprocess::CLASSIFIER_SIZE,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    for error in train_errors.iter().chain(&test_errors) {
        tracing::warn!("skipped {error}");
    }
    if args.strict && !(train_errors.is_empty() && test_errors.is_empty()) {
        bail!(
            "{} image(s) could not be decoded and --strict is set",
            train_errors.len() + test_errors.len()
        );
    }
    let (train_ids, validation_ids) =
        stratified_split(&all_train.labels, config.validation_fraction, config.seed);
    let data = TrainingData {
        train: all_train.subset(&train_ids),
        validation: all_train.subset(&validation_ids),
        test,
    };
    let prepare_seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        "{} training, {} validation, {} test images decoded in {:.1} s",
        data.train.len(),
        data.validation.len(),
        data.test.len(),
        prepare_seconds
    );

    let progress = Bars {
        bar: RefCell::new(None),
    };
    let mut history: Vec<EpochRecord> = Vec::new();
    let out = args.out.clone();
    let mut on_stage = |outcome: &StageOutcome| -> anyhow::Result<()> {
        let dir = out.join(outcome.config.stage.name());
        let run_config = RunConfig {
            data: Some(source.clone()),
            ..RunConfig::new(outcome.config.stage.name(), origin.clone(), config.seed)
        };
        save_run(&dir, &outcome.model, &run_config)
            .with_context(|| format!("saving {}", dir.display()))?;
        Ok(())
    };
    let mut after_epoch = |_: &str, _: usize| Ok(());
    let checkpointing = Checkpointing {
        run: &args.out,
        resume,
        weights_origin: origin.clone(),
        after_epoch: &mut after_epoch,
        deadline,
    };
    let outcomes = run_protocol(
        model,
        &config,
        &data,
        &progress,
        &mut history,
        checkpointing,
        &mut on_stage,
    )?;
    if let Some(bar) = progress.bar.borrow_mut().take() {
        bar.finish_and_clear();
    }

    // The final model is the last stage's.
    let last = outcomes.last().context("no stage ran")?;
    save_run(
        &args.out,
        &last.model,
        &RunConfig {
            data: Some(source.clone()),
            ..RunConfig::new(last.config.stage.name(), origin.clone(), config.seed)
        },
    )?;
    std::fs::write(args.out.join("history.csv"), to_csv(&history))
        .context("writing history.csv")?;
    let mut stages = BTreeMap::new();
    for outcome in &outcomes {
        let name = outcome.config.stage.name();
        let best_validation_accuracy = history
            .iter()
            .filter(|r| r.stage == name)
            .map(|r| r.validation_accuracy)
            .fold(0.0, f64::max);
        let test = outcome
            .test
            .as_ref()
            .map(|e| classification_report(&Class::ALL, &e.labels, &e.probabilities, config.seed));
        if let Some(report) = &test {
            let labels: Vec<&str> = Class::ALL.iter().map(|c| c.folder_name()).collect();
            let title = format!(
                "Confusion matrix: {name} (test accuracy {:.1} %)",
                report.accuracy * 100.0
            );
            viz::save_png(
                &plots::confusion_matrix(&title, &labels, &report.confusion)?,
                &args.out.join(format!("confusion_{name}.png")),
            )?;
        }
        stages.insert(
            name.to_string(),
            StageReport {
                seconds: outcome.seconds,
                best_validation_accuracy,
                test,
            },
        );
    }
    if let Some(test) = &last.test {
        write_predictions(&args.out, &Class::ALL, &data.test, &test.probabilities)?;
    }
    write_curves(&history, &args.out)?;
    let report = TrainReport {
        config,
        weights_origin: origin,
        stages,
        total_seconds: start.elapsed().as_secs_f64(),
        prepare_seconds,
    };
    std::fs::write(
        args.out.join("metrics.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .context("writing metrics.json")?;
    std::fs::write(args.out.join("comparison.md"), comparison_table(&report))
        .context("writing comparison.md")?;
    Ok(report)
}

/// The file of per-image predictions a run or an evaluation writes.
pub const PREDICTIONS_FILE: &str = "predictions.csv";
/// The figure of the misclassified images beside it.
pub const MISCLASSIFIED_FIGURE: &str = "misclassified.png";

/// Write `predictions.csv` of `images` (scored as `probabilities`) into `out`, and `misclassified.png` where any
/// image was wrong (at most 8 per true class, the most confident mistakes first). Returns the predictions.
pub fn write_predictions(
    out: &Path,
    classes: &[Class],
    images: &crate::train::data::Prepared,
    probabilities: &[Vec<f32>],
) -> anyhow::Result<Vec<Prediction>> {
    let rows = predictions(classes, &images.paths, &images.labels, probabilities)?;
    write_csv(&out.join(PREDICTIONS_FILE), classes, &rows)?;
    let figure = out.join(MISCLASSIFIED_FIGURE);
    match viz::grid::misclassified_grid(classes, &rows, &images.images, 8)? {
        Some(grid) => viz::save_png(&grid, &figure)?,
        None if figure.is_file() => std::fs::remove_file(&figure)
            .with_context(|| format!("removing the stale {}", figure.display()))?,
        None => {}
    }
    Ok(rows)
}

/// Without ImageNet weights, `full` runs this many epochs unless told otherwise.
pub const DEFAULT_OFFLINE_FULL_EPOCHS: usize = 5;

fn write_curves(history: &[EpochRecord], out: &Path) -> anyhow::Result<()> {
    let x: Vec<f64> = (1..=history.len()).map(|i| i as f64).collect();
    let series = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        x.iter().zip(history).map(|(x, r)| (*x, f(r))).collect()
    };
    let curve = |label: &str, colour, points| plots::Curve {
        label: label.into(),
        colour,
        points,
    };
    let mut boundaries = Vec::new();
    for (i, r) in history.iter().enumerate() {
        if i == 0 || history[i - 1].stage != r.stage {
            boundaries.push((i as f64 + 0.5, r.stage.clone()));
        }
    }
    let figure = plots::curves(
        "Training curves",
        &[
            (
                "loss",
                vec![
                    curve("train", (45, 85, 140), series(|r| r.train_loss)),
                    curve("validation", (230, 120, 40), series(|r| r.validation_loss)),
                ],
            ),
            (
                "accuracy",
                vec![
                    curve("train", (45, 85, 140), series(|r| r.train_accuracy)),
                    curve(
                        "validation",
                        (230, 120, 40),
                        series(|r| r.validation_accuracy),
                    ),
                ],
            ),
        ],
        &boundaries,
    )?;
    viz::save_png(&figure, &out.join("curves.png"))?;
    Ok(())
}

/// The seed's table: one row per stage, test accuracy (with its 95 % interval) and weighted precision, recall, F1.
pub fn comparison_table(report: &TrainReport) -> String {
    let mut table = String::from(
        "| Model | Accuracy (95 % CI) | Precision | Recall | F1-score | Macro F1 (95 % CI) | ECE |\n|---|---|---|---|---|---|---|\n",
    );
    for stage in [Stage::Baseline, Stage::Finetune, Stage::Full] {
        let Some(s) = report.stages.get(stage.name()) else {
            continue;
        };
        let label = match stage {
            Stage::Baseline => "Baseline (frozen backbone)",
            Stage::Finetune => "Fine-tuned (layer4 + fc)",
            Stage::Full => "Full (all layers)",
        };
        match &s.test {
            Some(t) => table.push_str(&format!(
                "| {label} | {:.1} % ({:.1}–{:.1}) | {:.3} | {:.3} | {:.3} | {:.3} ({:.3}–{:.3}) | {:.3} |\n",
                t.accuracy * 100.0,
                t.accuracy_ci95.0 * 100.0,
                t.accuracy_ci95.1 * 100.0,
                t.weighted_average.precision,
                t.weighted_average.recall,
                t.weighted_average.f1,
                t.macro_average.f1,
                t.macro_f1_ci95.0,
                t.macro_f1_ci95.1,
                t.expected_calibration_error
            )),
            None => table.push_str(&format!("| {label} | (no Testing/ split) | | | | | |\n")),
        }
    }
    table
}
