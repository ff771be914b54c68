//! `tumornet weights fetch|import|path`: ImageNet weights into the cache; torchvision checkpoints into run folders.

use crate::cli::{WeightsArgs, WeightsCommand};
use crate::model::run::{self, RunConfig, WeightsOrigin};
use crate::model::weights::{self, TORCHVISION_FILE, TORCHVISION_SHA256_PREFIX, TORCHVISION_URL};
use crate::model::ResNet18;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    }
    Ok(())
}

/// The cache folder for downloaded weights: `$TUMORNET_CACHE`, else the user's cache directory
/// (`$XDG_CACHE_HOME/tumornet`, usually `~/.cache/tumornet`).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TUMORNET_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|d| d.join("tumornet"))
        .context("no cache directory: set TUMORNET_CACHE")
}

/// ImageNet weights to start from: `explicit` if given, else the cached torchvision file if present.
pub fn resolve_imagenet(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        return Ok(Some(path.to_path_buf()));
    }
    let cached = cache_dir()?.join(TORCHVISION_FILE);
    Ok(cached.is_file().then_some(cached))
}

/// Download `url` to `target` through a temporary file, checking that the SHA-256 starts with `prefix`
/// (torch.hub's check). Returns the full hex digest. Nothing is left at `target` on failure.
pub fn download(url: &str, target: &Path, prefix: &str) -> anyhow::Result<String> {
    let parent = target.parent().context("target has no folder")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let response = ureq::get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = super::progress_bar(length.unwrap_or(0), "download");
    let temporary = weights::temporary_path(target);
    let result = (|| -> anyhow::Result<String> {
        let mut file = std::fs::File::create(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        let mut reader = response.into_body().into_reader();
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buffer)
                .with_context(|| format!("reading {url}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .with_context(|| format!("writing {}", temporary.display()))?;
            bar.inc(n as u64);
        }
        file.sync_all()
            .with_context(|| format!("writing {}", temporary.display()))?;
        let digest = hex(&hasher.finalize());
        if !digest.starts_with(&prefix.to_ascii_lowercase()) {
            bail!("{url}: SHA-256 {digest} does not start with {prefix}; the download is corrupt or not the expected file");
        }
        std::fs::rename(&temporary, target)
            .with_context(|| format!("moving into {}", target.display()))?;
        Ok(digest)
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Defaults for the CLI.
pub const DEFAULT_URL: &str = TORCHVISION_URL;
pub const DEFAULT_PREFIX: &str = TORCHVISION_SHA256_PREFIX;
