//! ImageNet weights in the user's cache: where they are, whether they are there, and downloading them with
//! torch.hub's SHA-256 check.

use super::weights::TORCHVISION_FILE;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    let bar = crate::progress::progress_bar(length.unwrap_or(0), "download");
    let temporary = super::weights::temporary_path(target);
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

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
