//! `tumornet weights fetch|import|path|export-backbone`: ImageNet weights into the cache; torchvision checkpoints
//! into run folders; a run's backbone out as a starting point.

use crate::cli::{WeightsArgs, WeightsCommand};
use crate::model::fetch::{cache_dir, download, sha256_file};
use crate::model::run::{self, RunConfig, WeightsOrigin};
use crate::model::weights::{self, TORCHVISION_FILE};
use crate::model::ResNet18;
use anyhow::Context;

pub fn run(args: &WeightsArgs) -> anyhow::Result<()> {
    match &args.command {
        WeightsCommand::Fetch {
            url,
            sha256_prefix,
            force,
        } => {
            let target = cache_dir()?.join(TORCHVISION_FILE);
            if target.is_file() && !force {
                println!(
                    "{} is already cached (pass --force to download again)",
                    target.display()
                );
                return Ok(());
            }
            let digest = download(url, &target, sha256_prefix)?;
            println!("Saved {} (SHA-256 {digest})", target.display());
        }
        WeightsCommand::Import {
            weights: path,
            out,
            seed,
        } => {
            let device = crate::device::inference();
            device.seed(*seed);
            let fresh = ResNet18::new(crate::data::Class::COUNT, &device);
            let (model, report) = weights::load_torchvision(fresh, path)
                .with_context(|| format!("importing {}", path.display()))?;
            let origin = WeightsOrigin::File {
                path: path.clone(),
                sha256: sha256_file(path)?,
            };
            run::save_run(out, &model, &RunConfig::new("imported", origin, *seed))?;
            match report.head_replaced {
                Some(n) => println!(
                    "Imported {} tensors from {} into {}; its {n}-class head was replaced by a fresh 4-class head \
                     (seed {seed}): train it before trusting predictions",
                    report.applied,
                    path.display(),
                    out.display()
                ),
                None => println!("Imported {} tensors from {} into {}", report.applied, path.display(), out.display()),
            }
        }
        WeightsCommand::Path => println!("{}", cache_dir()?.join(TORCHVISION_FILE).display()),
        WeightsCommand::ExportBackbone { run: dir, out } => {
            let (model, config) = run::load_run(dir, &crate::device::host())?;
            let provenance = serde_json::to_string(&config)?;
            weights::save_backbone(
                model,
                out,
                burn::tensor::DType::F16,
                &[("tumornet_backbone_of", provenance)],
            )?;
            println!(
                "Wrote the backbone of {} ({} stage) to {} in f16 (SHA-256 {})",
                dir.display(),
                config.stage,
                out.display(),
                sha256_file(out)?
            );
        }
        WeightsCommand::ExportSmp { seg, out } => {
            let loaded = crate::train::segrun::load_segrun(seg, false)?;
            let provenance = serde_json::to_string(&loaded.config)?;
            crate::model::unet::save_unet_smp(
                &loaded.unet,
                out,
                &[("tumornet_unet_of", provenance)],
            )?;
            println!(
                "Wrote the U-Net of {} to {} in segmentation_models_pytorch's names (SHA-256 {}); in Python: \
                 smp.Unet(\"resnet18\", encoder_weights=None, classes=1).load_state_dict(\
                 safetensors.torch.load_file(\"{}\"))",
                seg.display(),
                out.display(),
                sha256_file(out)?,
                out.display()
            );
        }
    }
    Ok(())
}
