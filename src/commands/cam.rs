//! `tumornet cam RUN IMAGE…|DIR --out DIR`: Grad-CAM overlays, raw maps, a grid and `cam.json` (see
//! `crate::workflow::explain`).

use crate::cli::CamArgs;
use crate::data::inputs::InputError;
use crate::workflow::explain::{cam, quality_table, CamSettings};

pub fn run(args: &CamArgs) -> anyhow::Result<()> {
    let report = cam(&settings(args))?;
    let table = quality_table(&report);
    print!("{table}");
    println!(
        "Wrote {} overlays, grid.png and cam.json to {}",
        report.images.len(),
        args.out.display()
    );
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    if !report.errors.is_empty() {
        anyhow::bail!(InputError::Unreadable {
            failed: report.errors.len(),
            total: report.errors.len() + report.images.len()
        });
    }
    Ok(())
}

/// The command line as settings.
pub fn settings(args: &CamArgs) -> CamSettings {
    CamSettings {
        run: args.run.clone(),
        inputs: args.inputs.clone(),
        out: args.out.clone(),
        method: args.method.clone(),
        target: args.target,
        image_weight: args.image_weight,
        flip_smooth: args.flip_smooth,
        layer: args.layer,
        raw: args.raw,
        threshold: args.threshold,
        delete_fraction: args.delete_fraction,
        grid: args.grid,
        batch_size: args.batch_size,
        seed: args.seed,
        volume: args.volume.options(),
    }
}
