//! `tumornet report DIR`: one self-contained HTML file (see `crate::workflow::report`).

use crate::cli::ReportArgs;
use crate::workflow::report::{report, ReportRequest};

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let out = report(&ReportRequest {
        dir: args.dir.clone(),
        out: args.out.clone(),
        inspect: args.inspect.clone(),
        cam: args.cam.clone(),
        pseudo: args.pseudo.clone(),
        seg: args.seg.clone(),
    })?;
    println!("Wrote {}", out.display());
    Ok(())
}
