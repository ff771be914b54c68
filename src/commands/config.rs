//! `tumornet config recipes | recipe [NAME|FILE] | train | unet [--set KEY=VALUE]…`: settings as TOML, the
//! start of one's own file.

use crate::cli::{ConfigArgs, ConfigCommand};
use crate::pseudo::recipe::{Recipe, DEFAULT_PRESET, PRESETS};
use crate::settings;
use crate::train::hyper::Hyperparameters;
use crate::train::unet_config::SegConfig;

pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    match &args.command {
        ConfigCommand::Recipes => {
            for preset in PRESETS {
                let default = if preset.name == DEFAULT_PRESET {
                    " (default)"
                } else {
                    ""
                };
                println!("{}{default}: {}", preset.name, preset.about);
            }
        }
        ConfigCommand::Recipe { recipe, sets } => {
            // Checked either way; a preset without changes is printed as written, with its comments.
            let resolved = Recipe::resolve(recipe, sets)?;
            match PRESETS.iter().find(|p| p.name == recipe) {
                Some(preset) if sets.is_empty() => print!("{}", preset.toml),
                _ => print!("{}", resolved.to_toml()?),
            }
        }
        ConfigCommand::Train { sets } => {
            print!(
                "{}",
                settings::to_toml(&Hyperparameters::resolve(None, sets)?)?
            )
        }
        ConfigCommand::Unet { sets } => {
            print!("{}", settings::to_toml(&SegConfig::resolve(None, sets)?)?)
        }
    }
    Ok(())
}
