//! `tumornet`: parse, set up logging, run one command, map its error to an exit code.
//!
//! Exit codes: 0 success; 1 failure (a GPU that will not open included); 2 bad command line (clap, or a
//! `--device` this build lacks); 3 bad input data (unreadable dataset, image or settings).

use clap::Parser;
use std::process::ExitCode;
use tumornet::cli::{Cli, Command};
use tumornet::commands;

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    tumornet::data::medical::quiet_guarded_panics();
    init_logging(cli.verbose, cli.quiet);
    if let Err(error) = tumornet::device::select(cli.device) {
        eprintln!("error: {error}");
        // Asking for a backend this build lacks is a usage error (2); a device that will not open is a failure (1).
        let unavailable = matches!(error, tumornet::device::DeviceError::Unavailable { .. });
        return ExitCode::from(if unavailable { 1 } else { 2 });
    }
    let result = match &cli.command {
        Command::Synth(args) => commands::synth::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Cam(args) => commands::cam::run(args),
        Command::PseudoMasks(args) => commands::pseudo_masks::run(args),
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

/// Keep freed memory in the process instead of handing it back to the kernel after every tensor.
///
/// burn frees and reallocates activation buffers of tens of MB on every layer; with glibc's defaults the heap
/// top is trimmed and re-grown each time, and every re-grown page faults in again (≈ 9 million page faults,
/// 22 s of system time in a 300-per-class `train`). A large trim threshold and top pad cut that to ≈ 1.2 million
/// faults and 5 s (measured on the 2-core dev VM, 2026-11-27; BENCHMARKS.md) for ≈ 12 % more peak memory. Left
/// alone when the user set `GLIBC_TUNABLES` themselves.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    // SAFETY: mallopt only changes malloc's parameters; it is called first thing in main, before any other
    // thread exists, and every value is within the range glibc documents (it rejects others by returning 0,
    // which leaves the default in place).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn exit_code(error: &anyhow::Error) -> u8 {
    use tumornet::data::{
        decode::DecodeError, inputs::InputError, phantom::PhantomError, scan::ScanError,
    };
    use tumornet::model::{run::RunError, weights::WeightsError};
    use tumornet::server::ServerError;
    let bad_input = error.chain().any(|e| {
        e.is::<ScanError>()
            || e.is::<DecodeError>()
            || e.is::<InputError>()
            || e.is::<WeightsError>()
            || e.is::<RunError>()
            || e.is::<tumornet::report::ReportError>()
            || matches!(e.downcast_ref::<ServerError>(), Some(ServerError::Run(_)))
            || matches!(
                e.downcast_ref::<PhantomError>(),
                Some(PhantomError::Config(_))
            )
    });
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
