//! Where a run's data came from: the folder, the images per split and class, and a fingerprint of the file list
//! (the SHA-256 of every image's path relative to the folder and its size in bytes, sorted), so two runs can tell
//! whether they saw the same files without copying them.

use super::scan::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The data a run was trained or scored on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub folder: PathBuf,
    /// Images per split folder name and class folder name.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub images: usize,
    /// SHA-256 of the sorted lines `relative/path<TAB>bytes` of every image (a size that cannot be read counts
    /// as `?`).
    pub file_list_sha256: String,
}

/// Describe `dataset` (reads each file's size, not its contents).
pub fn data_source(dataset: &Dataset) -> DataSource {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut lines: Vec<String> = Vec::with_capacity(dataset.samples.len());
    for sample in &dataset.samples {
        *counts
            .entry(sample.split.folder_name().to_string())
            .or_default()
            .entry(sample.class.folder_name().to_string())
            .or_default() += 1;
        let relative = sample
            .path
            .strip_prefix(&dataset.root)
            .unwrap_or(&sample.path);
        let size = std::fs::metadata(&sample.path)
            .map_or_else(|_| "?".to_string(), |m| m.len().to_string());
        lines.push(format!("{}\t{size}\n", relative.to_string_lossy()));
    }
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    DataSource {
        folder: dataset.root.clone(),
        counts,
        images: dataset.samples.len(),
        file_list_sha256: format!("{:x}", hasher.finalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scan::{Sample, Split};
    use crate::data::Class;

    #[test]
    fn the_fingerprint_follows_names_and_sizes_not_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let sample = |path: PathBuf, class: Class| Sample {
            path,
            split: Split::Training,
            class,
            width: 1,
            height: 1,
            mask: None,
        };
        let a = sample(write("a.jpg", b"12345"), Class::Glioma);
        let b = sample(write("b.jpg", b"12"), Class::NoTumor);
        let dataset = |samples: Vec<Sample>| Dataset {
            root: dir.path().to_path_buf(),
            samples,
        };
        let source = data_source(&dataset(vec![a.clone(), b.clone()]));
        assert_eq!(source.images, 2);
        assert_eq!(source.counts["Training"]["glioma"], 1);
        // sha256("a.jpg\t5\nb.jpg\t2\n"), by `printf 'a.jpg\t5\nb.jpg\t2\n' | sha256sum`.
        assert_eq!(
            source.file_list_sha256,
            "4391f0f578fb1b7a9784944f2b8b1ba4acb57d3aba3cbc6f1a4bfa833f2fe056"
        );
        assert_eq!(data_source(&dataset(vec![b.clone(), a.clone()])), source);
        write("b.jpg", b"123");
        assert_ne!(
            data_source(&dataset(vec![a, b])).file_list_sha256,
            source.file_list_sha256
        );
    }
}
