//! Paths in JSON reports, and output folders. A file name need not be UTF-8 on Unix, and serde refuses such a
//! `PathBuf`; reports write it lossily instead (invalid bytes become U+FFFD), so one odd name cannot lose a whole
//! report.

use serde::Serializer;
use std::path::Path;

/// `#[serde(serialize_with = "crate::paths::lossy")]` for a `PathBuf` field.
pub fn lossy<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// The same for an `Option<PathBuf>` field.
pub fn lossy_option<S: Serializer, P: AsRef<Path>>(
    path: &Option<P>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => serializer.serialize_some(&p.as_ref().to_string_lossy()),
        None => serializer.serialize_none(),
    }
}

/// A path as text, invalid UTF-8 replaced (for display and for documents that reference files).
pub fn lossy_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Create an output folder; refuse a non-empty one unless forced, so no data is overwritten by accident.
pub fn prepare_output(out: &Path, force: bool) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    if out.exists() {
        if !out.is_dir() {
            bail!("{} exists and is not a folder", out.display());
        }
        let non_empty = std::fs::read_dir(out)
            .with_context(|| format!("listing {}", out.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "{} is not empty; choose another folder or pass --force to overwrite",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_utf8_paths_serialise_lossily() {
        use std::os::unix::ffi::OsStrExt;
        #[derive(serde::Serialize)]
        struct Row {
            #[serde(serialize_with = "super::lossy")]
            path: std::path::PathBuf,
            #[serde(serialize_with = "super::lossy_option")]
            other: Option<std::path::PathBuf>,
        }
        let odd = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"a-\xff.jpg"));
        let row = Row {
            path: odd.clone(),
            other: Some(odd),
        };
        let json = serde_json::to_string(&row).expect("serialises");
        assert_eq!(
            json,
            "{\"path\":\"a-\u{fffd}.jpg\",\"other\":\"a-\u{fffd}.jpg\"}"
        );
    }
}
