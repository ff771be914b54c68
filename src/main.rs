//! `tumornet`: parse, set up logging, run one command, map its error to an exit code.
//!
//! Exit codes: 0 success; 1 failure (a GPU that will not open included); 2 bad command line (clap, or a
//! `--device` this build lacks); 3 bad input data (unreadable dataset, image or settings).

use clap::Parser;
use std::process::ExitCode;
use tumornet::cli::{Cli, Command};
use tumornet::commands;

fn main() -> ExitCode {
    tumornet::allocator::tune();
    let cli = Cli::parse();
    tumornet::data::medical::quiet_guarded_panics();
    init_logging(cli.verbose, cli.quiet);
    tumornet::device::configure(cli.precision, cli.gpu_conv);
    if let Err(error) = tumornet::device::select(cli.device) {
        eprintln!("error: {error}");
        // Asking for a backend this build lacks is a usage error (2); a device that will not open is a failure (1).
        let unavailable = matches!(error, tumornet::device::DeviceError::Unavailable { .. });
        return ExitCode::from(if unavailable { 1 } else { 2 });
    }
    for ignored in tumornet::device::ignored_options(cli.precision, cli.gpu_conv) {
        tracing::warn!("{ignored}");
    }
    let result = match &cli.command {
        Command::Synth(args) => commands::synth::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Cam(args) => commands::cam::run(args),
        Command::PseudoMasks(args) => commands::pseudo_masks::run(args),
        Command::MergeMasks(args) => commands::merge_masks::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::TrainSeg(args) => commands::train_seg::run(args),
        Command::Segment(args) => commands::segment::run(args),
        Command::Weights(args) => commands::weights::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    use tumornet::data::{
        decode::DecodeError,
        inputs::{GatherError, InputError},
        phantom::PhantomError,
        scan::ScanError,
    };
    use tumornet::model::{run::RunError, weights::WeightsError};
    use tumornet::server::ServerError;
    let bad_input = error.chain().any(|e| {
        e.is::<ScanError>()
            || e.is::<DecodeError>()
            || e.is::<InputError>()
            || e.is::<GatherError>()
            || e.is::<WeightsError>()
            || e.is::<RunError>()
            || e.is::<tumornet::report::ReportError>()
            || matches!(e.downcast_ref::<ServerError>(), Some(ServerError::Run(_)))
            || matches!(
                e.downcast_ref::<PhantomError>(),
                Some(PhantomError::Config(_))
            )
    });
    if error
        .chain()
        .any(|e| e.is::<tumornet::settings::SettingsError>())
    {
        return 2;
    }
    if bad_input {
        3
    } else {
        1
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("tumornet={level},warn")));
    // Colour only on a terminal (a log file gets plain text); every line carries its UTC time, so the lines of
    // an hour-long run can be placed.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
