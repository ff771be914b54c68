//! `tumornet demo`: the whole job on a generated phantom set, into one folder.
//!
//! Today it runs the stages that exist: generate the phantom set, then inspect it. Training, Grad-CAM,
//! segmentation and the report join as they land.

use crate::cli::{DemoArgs, InspectArgs, SynthArgs};
use anyhow::Context;

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let (train, test) = if args.quick { (12, 6) } else { (300, 100) };
    let data = args.out.join("data");
    super::synth::run(&SynthArgs {
        out: data.clone(),
        train,
        test,
        seed: args.seed,
        min_size: 256,
        max_size: 512,
        jpeg_quality: 90,
        force: true,
    })
    .context("demo: generating the phantom set")?;
    super::inspect::run(&InspectArgs {
        data,
        out: args.out.join("inspect"),
        strict: true,
        near_threshold: crate::data::audit::DEFAULT_NEAR_THRESHOLD,
        samples: 6,
    })
    .context("demo: inspecting the phantom set")?;
    println!(
        "Demo finished in {}. Next stages (training, Grad-CAM, segmentation, report) are not implemented yet.",
        args.out.display()
    );
    Ok(())
}
