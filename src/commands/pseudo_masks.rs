//! `tumornet pseudo-masks RUN DATA [--recipe best|seed|FILE.toml] [--set KEY=VALUE]…`: every image's CAM made
//! into a pseudo-mask by a recipe (see `crate::workflow::pseudo_masks`).

use crate::cli::PseudoMaskArgs;
use crate::pseudo::{Recipe, MANIFEST};
use crate::workflow::pseudo_masks::{make_pseudo_masks, PseudoSettings};

pub fn run(args: &PseudoMaskArgs) -> anyhow::Result<()> {
    let recipe = Recipe::resolve(&args.recipe, &args.sets)?;
    let shard = args
        .shard
        .resolve()
        .map_err(|e| anyhow::anyhow!("--shard {e}"))?;
    let settings = PseudoSettings {
        run: args.run.clone(),
        data: args.data.clone(),
        out: args.out.clone(),
        recipe,
        shard,
        batch_size: args.batch_size,
        gallery: args.gallery,
        save_cams: args.save_cams,
    };
    let manifest = make_pseudo_masks(&settings)?;
    print!("{}", manifest.summary());
    println!(
        "Wrote {} pseudo-masks{}, {MANIFEST}, quality.md and gallery.png to {}",
        manifest.entries.len(),
        if shard.is_all() {
            String::new()
        } else {
            format!(" (shard {shard}; merge the shards with `merge-masks`)")
        },
        args.out.display()
    );
    for error in &manifest.errors {
        eprintln!("error: {error}");
    }
    Ok(())
}
