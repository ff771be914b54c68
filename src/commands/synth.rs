//! `tumornet synth OUT`: generate the MRI phantom set.

use super::progress_bar;
use crate::cli::SynthArgs;
use crate::data::phantom::{self, SynthConfig, VolumeConfig};
use crate::data::Class;
use anyhow::Context;
use std::time::Instant;

pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    if let Some(per_class) = args.volumes {
        return volumes(args, per_class);
    }
    let config = SynthConfig {
        train_per_class: args.train,
        test_per_class: args.test,
        seed: args.seed,
        min_size: args.min_size,
        max_size: args.max_size,
        jpeg_quality: args.jpeg_quality,
        lesion_scale: args.lesion_scale,
        without_lesions: args.without_lesions,
        anatomy: args.anatomy.clone(),
    };
    crate::paths::prepare_output(&args.out, args.force)?;
    let total = config.ids().len();
    let bar = progress_bar(total as u64, "synth");
    let start = Instant::now();
    let manifest = phantom::generate(&args.out, &config, &|| bar.inc(1))
        .with_context(|| format!("generating the phantom set in {}", args.out.display()))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "Wrote {} images and masks to {} in {:.1} s ({:.0} images/s); seed {}, manifest {}",
        manifest.images.len(),
        args.out.display(),
        seconds,
        manifest.images.len() as f64 / seconds.max(1e-9),
        config.seed,
        args.out.join(phantom::MANIFEST).display()
    );
    Ok(())
}

/// `synth OUT --volumes N`: whole 3-D volumes with their true masks.
fn volumes(args: &SynthArgs, per_class: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.without_lesions,
        "--without-lesions applies to 2-D images only (--volumes writes no-tumour heads of their own)"
    );
    let config = VolumeConfig {
        per_class,
        seed: args.seed,
        lesion_scale: args.lesion_scale,
        anatomy: args.anatomy.clone(),
    };
    crate::paths::prepare_output(&args.out, args.force)?;
    let bar = progress_bar((per_class * Class::ALL.len()) as u64, "synth volumes");
    let start = Instant::now();
    let manifest = phantom::generate_volumes(&args.out, &config, &|| bar.inc(1))
        .with_context(|| format!("generating phantom volumes in {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "Wrote {} volumes with their true masks to {} in {:.1} s; seed {}, manifest {}",
        manifest.volumes.len(),
        args.out.display(),
        start.elapsed().as_secs_f64(),
        config.seed,
        args.out.join(phantom::VOLUME_MANIFEST).display()
    );
    Ok(())
}
