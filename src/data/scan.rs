//! Finding a dataset's splits, classes, images and masks on disk.
//!
//! Layouts understood: `ROOT/<split>/<class>/<image>` with split folders `Training`/`Testing`/`train`/`test`/
//! `val`/`validation` (any case), and `ROOT/<class>/<image>` (one unsplit folder). Class folders are recognised by
//! [`Class::from_folder_name`]. An optional mask tree `ROOT/masks/<split>/<class>/<stem>.png` is paired by path.
//! Anything else is reported, never silently dropped: unknown folders, files that are not images, files whose
//! header cannot be read, empty class folders.

use super::classes::Class;
use super::decode::{is_dataset_image, probe_file};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Name of the folder that mirrors the image tree with 0/255 PNG masks.
pub const MASKS_FOLDER: &str = "masks";

/// Class folders may hold sub-folders (e.g. one per series); deeper than this is refused as a likely loop.
const MAX_DEPTH: usize = 8;

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Training,
    Validation,
    Testing,
    /// Class folders directly under the root.
    Unsplit,
}

impl Split {
    /// Recognise a split folder name, any case.
    pub fn from_folder_name(name: &str) -> Option<Split> {
        match name.to_lowercase().as_str() {
            "training" | "train" => Some(Split::Training),
            "testing" | "test" => Some(Split::Testing),
            "val" | "valid" | "validation" => Some(Split::Validation),
            _ => None,
        }
    }

    /// The Kaggle folder name for this split.
    pub fn folder_name(self) -> &'static str {
        match self {
            Split::Training => "Training",
            Split::Validation => "Validation",
            Split::Testing => "Testing",
            Split::Unsplit => "",
        }
    }

    /// The Kaggle file-name prefix (`Tr`, `Te`, `Va`).
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Training => "Tr",
            Split::Validation => "Va",
            Split::Testing => "Te",
            Split::Unsplit => "Im",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Training => "training",
            Split::Validation => "validation",
            Split::Testing => "testing",
            Split::Unsplit => "unsplit",
        })
    }
}

/// One image of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub path: PathBuf,
    pub split: Split,
    pub class: Class,
    /// Width and height read from the file header.
    pub width: u32,
    pub height: u32,
    /// The paired true mask, when the dataset has a `masks/` tree and it holds this image's mask.
    #[serde(serialize_with = "crate::paths::lossy_option")]
    pub mask: Option<PathBuf>,
}

/// A scanned dataset: samples sorted by split, class, then path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dataset {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub root: PathBuf,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Samples of one split, in order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.split == split)
    }

    /// The splits present, in order.
    pub fn splits(&self) -> Vec<Split> {
        let mut splits: Vec<Split> = self.samples.iter().map(|s| s.split).collect();
        splits.dedup();
        splits
    }

    /// Image count per class for one split, indexed by [`Class::index`].
    pub fn class_counts(&self, split: Split) -> [usize; Class::COUNT] {
        let mut counts = [0; Class::COUNT];
        for s in self.split(split) {
            counts[s.class.index()] += 1;
        }
        counts
    }
}

/// Something in the dataset folder that was skipped, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanWarning {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub path: PathBuf,
    pub kind: WarningKind,
    pub detail: String,
}

/// What kind of thing was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    UnknownFolder,
    NotAnImage,
    UnreadableImage,
    EmptyClassFolder,
    UnreadableFolder,
}

impl fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.detail)
    }
}

/// A scan's result: what was found and what was skipped.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub dataset: Dataset,
    pub warnings: Vec<ScanWarning>,
}

/// Why a dataset could not be scanned at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{}: dataset folder not found or not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: cannot list the folder: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: no class folders found (expected e.g. Training/glioma, Testing/notumor, or glioma/ directly)",
        .0.display()
    )]
    NoClassFolders(PathBuf),
    #[error("{count} problem(s) in the dataset and --strict is set; first: {first}")]
    Strict { count: usize, first: ScanWarning },
}

/// How strictly to scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Turn every warning into an error.
    pub strict: bool,
}

/// [`scan`], logging each skipped item as a warning.
pub fn scan_logged(root: &Path, strict: bool) -> Result<ScanReport, ScanError> {
    let scanned = scan(root, ScanOptions { strict })?;
    for warning in &scanned.warnings {
        tracing::warn!("skipped {warning}");
    }
    Ok(scanned)
}

/// Scan a dataset folder.
pub fn scan(root: &Path, options: ScanOptions) -> Result<ScanReport, ScanError> {
    if !root.is_dir() {
        return Err(ScanError::NotAFolder(root.to_path_buf()));
    }
    let mut warnings = Vec::new();
    let mut class_dirs: Vec<(Split, Class, PathBuf)> = Vec::new();
    for entry in list_dir(root)? {
        let name = file_name(&entry);
        if !entry.is_dir() {
            // Files beside the split folders (README, manifests, licences) are part of a dataset, not images.
            tracing::debug!("ignoring {} at the dataset root", entry.display());
            continue;
        }
        if name.eq_ignore_ascii_case(MASKS_FOLDER) || is_hidden(&name) {
            continue;
        }
        if let Some(split) = Split::from_folder_name(&name) {
            for class_dir in list_dir(&entry)? {
                let class_name = file_name(&class_dir);
                if is_hidden(&class_name) {
                    continue;
                }
                match (class_dir.is_dir(), Class::from_folder_name(&class_name)) {
                    (true, Some(class)) => class_dirs.push((split, class, class_dir)),
                    (true, None) => warnings.push(warning(
                        &class_dir,
                        WarningKind::UnknownFolder,
                        "not a class folder (glioma, meningioma, notumor, pituitary); ignored",
                    )),
                    (false, _) => warnings.push(warning(
                        &class_dir,
                        WarningKind::NotAnImage,
                        "file outside a class folder is ignored",
                    )),
                }
            }
        } else if let Some(class) = Class::from_folder_name(&name) {
            class_dirs.push((Split::Unsplit, class, entry));
        } else {
            warnings.push(warning(
                &entry,
                WarningKind::UnknownFolder,
                "neither a split folder (Training, Testing, train, test, val) nor a class folder; ignored",
            ));
        }
    }
    if class_dirs.is_empty() {
        return Err(ScanError::NoClassFolders(root.to_path_buf()));
    }

    let mut candidates: Vec<(Split, Class, PathBuf)> = Vec::new();
    for (split, class, dir) in &class_dirs {
        let mut files = Vec::new();
        let mut visited = HashSet::new();
        collect_files(dir, 0, &mut visited, &mut files, &mut warnings);
        let before = candidates.len();
        for file in files {
            if is_dataset_image(&file) {
                candidates.push((*split, *class, file));
            } else if !is_hidden(&file_name(&file)) {
                warnings.push(warning(
                    &file,
                    WarningKind::NotAnImage,
                    "not an image file; ignored",
                ));
            }
        }
        if candidates.len() == before {
            warnings.push(warning(
                dir,
                WarningKind::EmptyClassFolder,
                "class folder holds no images",
            ));
        }
    }

    let mask_root = find_masks_root(root);
    let probed: Vec<Result<Sample, ScanWarning>> = candidates
        .into_par_iter()
        .map(|(split, class, path)| {
            let (width, height) = probe_file(&path)
                .map_err(|e| warning(&path, WarningKind::UnreadableImage, &e.to_string()))?;
            let mask = mask_root.as_deref().and_then(|m| mask_for(root, m, &path));
            Ok(Sample {
                path,
                split,
                class,
                width,
                height,
                mask,
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(probed.len());
    for item in probed {
        match item {
            Ok(sample) => samples.push(sample),
            Err(w) => warnings.push(w),
        }
    }
    samples.sort_by(|a, b| (a.split, a.class, &a.path).cmp(&(b.split, b.class, &b.path)));

    if options.strict {
        if let Some(first) = warnings.first().cloned() {
            return Err(ScanError::Strict {
                count: warnings.len(),
                first,
            });
        }
    }
    Ok(ScanReport {
        dataset: Dataset {
            root: root.to_path_buf(),
            samples,
        },
        warnings,
    })
}

fn collect_files(
    dir: &Path,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<ScanWarning>,
) {
    let canonical = match dir.canonicalize() {
        Ok(c) => c,
        Err(e) => {
            warnings.push(warning(dir, WarningKind::UnreadableFolder, &e.to_string()));
            return;
        }
    };
    if depth > MAX_DEPTH || !visited.insert(canonical) {
        warnings.push(warning(
            dir,
            WarningKind::UnreadableFolder,
            "folder loop or nesting too deep; skipped",
        ));
        return;
    }
    let entries = match list_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            warnings.push(warning(dir, WarningKind::UnreadableFolder, &e.to_string()));
            return;
        }
    };
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, depth + 1, visited, files, warnings);
        } else {
            files.push(entry);
        }
    }
}

/// The `masks/` folder at the dataset root, any case.
fn find_masks_root(root: &Path) -> Option<PathBuf> {
    list_dir(root)
        .ok()?
        .into_iter()
        .find(|p| p.is_dir() && file_name(p).eq_ignore_ascii_case(MASKS_FOLDER))
}

/// `ROOT/Training/glioma/x.jpg` ↦ `ROOT/masks/Training/glioma/x.png`, if that file exists.
fn mask_for(root: &Path, mask_root: &Path, image: &Path) -> Option<PathBuf> {
    let relative = image.strip_prefix(root).ok()?;
    let candidate = mask_root.join(relative).with_extension("png");
    candidate.is_file().then_some(candidate)
}

/// Directory entries sorted by name, so every scan lists files in the same order.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    let io = |source| ScanError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        entries.push(entry.map_err(io)?.path());
    }
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.eq_ignore_ascii_case("Thumbs.db")
}

fn warning(path: &Path, kind: WarningKind, detail: &str) -> ScanWarning {
    ScanWarning {
        path: path.to_path_buf(),
        kind,
        detail: detail.to_string(),
    }
}
