//! `tumornet train-seg RUN DATA [--pseudo DIR] [--config FILE] [--set KEY=VALUE]…`: the U-Net trained on
//! pseudo-masks (see `crate::workflow::unet`).

use crate::cli::TrainSegArgs;
use crate::pseudo::Recipe;
use crate::train::segrun::{SEG_CONFIG, UNET_FILE};
use crate::train::unet_config::SegConfig;
use crate::workflow::unet::{metrics_table, train_unet, UnetSettings};

pub fn run(args: &TrainSegArgs) -> anyhow::Result<()> {
    let mut sets = args.sets.clone();
    if let Some(epochs) = args.epochs {
        sets.push(format!("epochs={epochs}"));
    }
    let settings = UnetSettings {
        run: args.run.clone(),
        data: args.data.clone(),
        out: args.out.clone(),
        pseudo: args.pseudo.clone(),
        recipe: Recipe::resolve(&args.recipe, &[])?,
        config: SegConfig::resolve(args.config.as_deref(), &sets)?,
        seed: args.seed,
        gallery: args.gallery,
    };
    let seg = train_unet(&settings)?;
    print!("{}", metrics_table(&seg));
    println!(
        "Wrote {UNET_FILE}, {SEG_CONFIG}, metrics.md and gallery.png to {}",
        args.out.display()
    );
    Ok(())
}
