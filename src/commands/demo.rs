//! `tumornet demo`: the whole pipeline on a generated phantom set (see `crate::workflow::demo`).

use crate::cli::DemoArgs;
use crate::workflow::demo::{demo, DemoSettings};
use std::time::Instant;

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let summary = demo(&DemoSettings {
        out: args.out.clone(),
        quick: args.quick,
        from_scratch: args.from_scratch,
        seed: args.seed,
    })?;
    println!("\n{summary}");
    println!(
        "Demo finished in {:.0} s; everything is in {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
