//! `tumornet predict RUN IMAGE…`: class and probabilities for each image (files and folders).

use super::progress_bar;
use crate::cli::PredictArgs;
use crate::data::inputs::{collect_inputs, expand, Input};
use crate::data::preprocess::resize_rgb;
use crate::data::Class;
use crate::model::{inference, run};
use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The file, or the slice of a DICOM/NIfTI file (`scan.nii.gz#axial:88`).
    pub input: String,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub file: PathBuf,
    pub class: Class,
    pub confidence: f32,
    pub probabilities: BTreeMap<Class, f32>,
}

/// The outcome for every input, in input order: a prediction or the reason there is none.
pub type Outcome = Result<Prediction, String>;

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let outcomes = predict(args)?;
    if args.json {
        let rows: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| match o {
                Ok(p) => serde_json::to_value(p),
                Err(e) => Ok(serde_json::json!({ "error": e })),
            })
            .collect::<Result<_, _>>()
            .context("writing JSON")?;
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).context("writing JSON")?
        );
    } else {
        for outcome in &outcomes {
            match outcome {
                Ok(p) => {
                    let all: Vec<String> = p
                        .probabilities
                        .iter()
                        .map(|(c, v)| format!("{c} {v:.3}"))
                        .collect();
                    println!(
                        "{}\t{}\t{:.3}\t({})",
                        p.input,
                        p.class,
                        p.confidence,
                        all.join(", ")
                    );
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if failed > 0 {
        anyhow::bail!(crate::data::inputs::InputError::Unreadable {
            failed,
            total: outcomes.len()
        });
    }
    Ok(())
}

/// Predict every input; unreadable images become `Err` entries naming the file, the rest still run.
pub fn predict(args: &PredictArgs) -> anyhow::Result<Vec<Outcome>> {
    let device = crate::device::inference();
    let (model, config) = run::load_run(&args.run, &device)
        .with_context(|| format!("loading {}", args.run.display()))?;
    if !config.weights_origin.is_pretrained() && config.stage == "imported" {
        tracing::warn!("this run's weights are torchvision's random init, not a trained model: predictions are chance");
    }
    let files = collect_inputs(&args.inputs)?;
    let shard = args
        .shard
        .resolve()
        .map_err(|e| anyhow::anyhow!("--shard {e}"))?;
    let inputs = shard.select(&expand(&files, &args.volume.options()));
    let bar = progress_bar(inputs.len() as u64, "predict");
    let mut outcomes = Vec::with_capacity(inputs.len());
    let predictor = inference::Predictor::new(&model);
    for chunk in inputs.chunks(args.batch_size.max(1)) {
        let prepared: Vec<Result<(&Input, image::RgbImage), String>> = chunk
            .par_iter()
            .map(|input| {
                let input = input.as_ref().map_err(Clone::clone)?;
                let image = input.load()?;
                let resized = resize_rgb(&image, config.input_size, config.input_size)
                    .map_err(|e| format!("{}: {e}", input.name))?;
                Ok((input, resized))
            })
            .collect();
        let ready: Vec<image::RgbImage> = prepared
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(_, image)| image.clone()))
            .collect();
        let mut rows = if ready.is_empty() {
            Vec::new()
        } else {
            predictor.probabilities(&ready, &device)?
        }
        .into_iter();
        for prepared in prepared {
            outcomes.push(match prepared {
                Err(e) => Err(e),
                Ok((input, _)) => {
                    let row = rows.next().context("one probability row per image")?;
                    Ok(prediction(input, &config.classes, &row))
                }
            });
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(outcomes)
}

fn prediction(input: &Input, classes: &[Class], row: &[f32]) -> Prediction {
    let (best, confidence) = crate::metrics::argmax(row);
    Prediction {
        input: input.name.clone(),
        file: input.path.clone(),
        class: classes[best],
        confidence,
        probabilities: classes.iter().copied().zip(row.iter().copied()).collect(),
    }
}
