//! `tumornet inspect DATA`: counts, sizes, a sample grid and a leakage audit (see `crate::workflow::analysis`).

use crate::cli::InspectArgs;
use crate::workflow::analysis::{analyse, print_summary, InspectSettings};

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let report = analyse(&settings(args))?;
    print_summary(&report, &args.out);
    Ok(())
}

/// The command line as settings.
pub fn settings(args: &InspectArgs) -> InspectSettings {
    InspectSettings {
        data: args.data.clone(),
        out: args.out.clone(),
        strict: args.strict,
        near_threshold: args.near_threshold,
        samples: args.samples,
    }
}
