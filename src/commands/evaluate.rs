//! `tumornet evaluate RUN DATA`: re-score a saved model on any dataset folder (its `Testing/` split when it has
//! one, else every image), with the same report `train` writes.

use super::progress_bar;
use crate::cli::EvaluateArgs;
use crate::data::scan::{self, Split};
use crate::metrics::report::{classification_report, ClassificationReport};
use crate::model::{inference, run};
use crate::train::data::prepare;
use crate::viz::{self, plots};
use anyhow::{bail, Context};

pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let report = evaluate(args)?;
    println!(
        "{} images: accuracy {:.1} % (95 % CI {:.1}–{:.1}), macro F1 {:.3}, weighted F1 {:.3}, ECE {:.3}",
        report.images,
        report.accuracy * 100.0,
        report.accuracy_ci95.0 * 100.0,
        report.accuracy_ci95.1 * 100.0,
        report.macro_average.f1,
        report.weighted_average.f1,
        report.expected_calibration_error
    );
    for (class, scores) in &report.per_class {
        println!(
            "  {:<11} precision {:.3} recall {:.3} F1 {:.3} (n = {})",
            class.to_string(),
            scores.precision,
            scores.recall,
            scores.f1,
            scores.support
        );
    }
    println!(
        "Wrote {}, {} and {}",
        args.out.join("evaluation.json").display(),
        args.out.join("predictions.csv").display(),
        args.out.join("confusion.png").display()
    );
    Ok(())
}

/// Score the run on the dataset; writes `evaluation.json` and `confusion.png` into `args.out`.
pub fn evaluate(args: &EvaluateArgs) -> anyhow::Result<ClassificationReport> {
    let device = crate::device::inference();
    let (model, config) = run::load_run(&args.run, &device)
        .with_context(|| format!("loading {}", args.run.display()))?;
    let scanned = super::scan_dataset(&args.data, args.strict)?;
    let dataset = scanned.dataset;
    let has_test = dataset.splits().contains(&Split::Testing);
    let samples: Vec<_> = dataset
        .samples
        .iter()
        .filter(|s| !has_test || s.split == Split::Testing)
        .collect();
    if samples.is_empty() {
        bail!(scan::ScanError::NoClassFolders(args.data.clone()));
    }
    let bar = progress_bar(samples.len() as u64, "evaluate");
    let (prepared, errors) = prepare(&samples, config.input_size, &|| bar.inc(1));
    bar.finish_and_clear();
    for error in &errors {
        tracing::warn!("skipped {error}");
    }
    if args.strict && !errors.is_empty() {
        bail!(
            "{} image(s) could not be decoded and --strict is set",
            errors.len()
        );
    }
    let mut probabilities = Vec::with_capacity(prepared.len());
    let predictor = inference::Predictor::new(&model);
    for chunk in prepared.images.chunks(args.batch_size.max(1)) {
        probabilities.extend(predictor.probabilities(chunk, &device)?);
    }
    let report = classification_report(
        &config.classes,
        &prepared.labels,
        &probabilities,
        config.seed,
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(
        args.out.join("evaluation.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .context("writing evaluation.json")?;
    let rows = crate::workflow::classifier::write_predictions(
        &args.out,
        &config.classes,
        &prepared,
        &probabilities,
    )?;
    let wrong = rows.iter().filter(|r| !r.correct()).count();
    tracing::info!(
        "{wrong} of {} images misclassified (predictions.csv)",
        rows.len()
    );
    let labels: Vec<&str> = config.classes.iter().map(|c| c.folder_name()).collect();
    let title = format!(
        "Confusion matrix (accuracy {:.1} %)",
        report.accuracy * 100.0
    );
    viz::save_png(
        &plots::confusion_matrix(&title, &labels, &report.confusion)?,
        &args.out.join("confusion.png"),
    )?;
    Ok(report)
}
