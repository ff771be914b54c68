//! `tumornet train DATA --out RUN`: the seed protocol (see `crate::workflow::classifier`).

use crate::cli::TrainArgs;
use crate::train::hyper::Hyperparameters;
use crate::workflow::classifier::{comparison_table, train, TrainSettings};

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let report = train(&settings(args)?)?;
    println!("{}", comparison_table(&report));
    println!(
        "Wrote {} (model, run.json, metrics.json, history.csv, figures)",
        args.out.display()
    );
    Ok(())
}

/// The command line resolved into settings (the hyperparameters from `--config` and `--set`).
pub fn settings(args: &TrainArgs) -> anyhow::Result<TrainSettings> {
    Ok(TrainSettings {
        data: args.data.clone(),
        out: args.out.clone(),
        seed: args.seed,
        weights: args.weights.clone().unwrap_or_default(),
        hyper: Hyperparameters::resolve(args.config.as_deref(), &args.sets)?,
        baseline_epochs: args.baseline_epochs,
        finetune_epochs: args.finetune_epochs,
        full_epochs: args.full_epochs,
        strict: args.strict,
        force: args.force,
        resume: args.resume,
        time_limit: args.time_limit,
    })
}
