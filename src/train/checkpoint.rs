//! Crash-safe training state. After every epoch a new folder `checkpoint/epoch-<stage>-<n>/` is written in full
//! (learner weights, best-so-far weights, optimizer state, the learner's parameter-id order), then
//! `checkpoint/state.json` is replaced atomically to point at it, then older folders are removed. A run killed at
//! any moment resumes from the last complete epoch.
//!
//! Every file of an epoch folder is recorded in `state.json` with its BLAKE3 hash, and checked before a resume
//! loads it: a damaged or half-written file is named and refused rather than loaded.
//!
//! burn keys optimizer state by parameter ids, which are random per process; the ids are saved in visit order
//! and given back to the reloaded learner, so its optimizer state applies again.

use super::config::TrainConfig;
use super::history::EpochRecord;
use super::stage::Score;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Folder of the checkpoint inside a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";

/// A finished stage, as far as resuming needs it (its model is in `RUN/<stage>/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletedStage {
    pub stage: String,
    pub seconds: f64,
    pub test_labels: Vec<usize>,
    pub test_probabilities: Vec<Vec<f32>>,
}

/// The stage in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrentStage {
    pub stage: String,
    pub epochs_done: usize,
    pub best: Option<(f64, f64)>,
    /// Folder (inside `checkpoint/`) holding this epoch's files.
    pub folder: String,
    pub parameter_ids: Vec<u64>,
    pub seconds_so_far: f64,
    /// BLAKE3 (hex) of each file in the folder, by file name.
    #[serde(default)]
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// Everything needed to continue a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtocolState {
    pub config: TrainConfig,
    pub weights_origin: crate::model::run::WeightsOrigin,
    pub recalibrated: bool,
    pub completed: Vec<CompletedStage>,
    pub current: Option<CurrentStage>,
    pub history: Vec<EpochRecord>,
}

impl CurrentStage {
    pub fn best_score(&self) -> Option<Score> {
        self.best.map(|(accuracy, loss)| Score { accuracy, loss })
    }
}

/// Read `RUN/checkpoint/state.json`, if there is one.
pub fn read_state(run: &Path) -> anyhow::Result<Option<ProtocolState>> {
    let path = run.join(CHECKPOINT_DIR).join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    ))
}

/// Replace `state.json` atomically, then remove epoch folders it no longer points at.
pub fn write_state(run: &Path, state: &ProtocolState) -> anyhow::Result<()> {
    let dir = run.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(STATE_FILE);
    let temporary = crate::model::weights::temporary_path(&path);
    std::fs::write(&temporary, serde_json::to_vec_pretty(state)?)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    let keep = state.current.as_ref().map(|c| c.folder.clone());
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("epoch-") && Some(&name) != keep.as_ref() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// The folder for an epoch's files (created, empty).
pub fn epoch_folder(
    run: &Path,
    stage: &str,
    epochs_done: usize,
) -> anyhow::Result<(String, PathBuf)> {
    let name = format!("epoch-{stage}-{epochs_done}");
    let path = run.join(CHECKPOINT_DIR).join(&name);
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path)?;
    Ok((name, path))
}

/// BLAKE3 (hex) of every file in an epoch folder, by file name.
pub fn checksum_folder(
    folder: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut sums = std::collections::BTreeMap::new();
    for entry in
        std::fs::read_dir(folder).map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sums.insert(name, blake3::hash(&bytes).to_hex().to_string());
        }
    }
    Ok(sums)
}

/// Check an epoch folder against the hashes recorded for it; the first missing or damaged file is named.
pub fn verify_folder(
    folder: &Path,
    checksums: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (name, want) in checksums {
        let path = folder.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "checkpoint file {} is missing ({e}); cannot resume",
                path.display()
            )
        })?;
        if blake3::hash(&bytes).to_hex().as_str() != want {
            anyhow::bail!(
                "checkpoint file {} is damaged (its BLAKE3 hash differs from the one recorded); cannot resume — \
                 start the run again without --resume",
                path.display()
            );
        }
    }
    Ok(())
}

/// Remove the checkpoint once the run is complete.
pub fn clear(run: &Path) -> anyhow::Result<()> {
    let dir = run.join(CHECKPOINT_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

struct CollectIds(Vec<u64>);

impl ModuleVisitor for CollectIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Parameter ids of a module, in visit order.
pub fn parameter_ids<M: Module>(module: &M) -> Vec<u64> {
    let mut visitor = CollectIds(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

struct AssignIds<'a> {
    ids: &'a [u64],
    next: usize,
}

impl ModuleMapper for AssignIds<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let id = self
            .ids
            .get(self.next)
            .map(|v| ParamId::from(*v))
            .unwrap_or(id);
        self.next += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Give a module the parameter ids it had when its optimizer state was saved (same architecture ⇒ same order).
pub fn assign_parameter_ids<M: Module>(module: M, ids: &[u64]) -> anyhow::Result<M> {
    let count = parameter_ids(&module).len();
    if count != ids.len() {
        anyhow::bail!(
            "the checkpoint has {} parameter ids, the model {count}",
            ids.len()
        );
    }
    Ok(module.map(&mut AssignIds { ids, next: 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_catch_damaged_and_missing_files() {
        let dir = tempfile::tempdir().expect("temp");
        std::fs::write(dir.path().join("learner.safetensors"), b"weights").expect("write");
        std::fs::write(dir.path().join("optimizer.bpk"), b"moments").expect("write");
        let sums = checksum_folder(dir.path()).expect("sums");
        assert_eq!(sums.len(), 2);
        verify_folder(dir.path(), &sums).expect("intact");
        std::fs::write(dir.path().join("optimizer.bpk"), b"momentz").expect("damage");
        let err = verify_folder(dir.path(), &sums)
            .expect_err("damaged")
            .to_string();
        assert!(
            err.contains("optimizer.bpk") && err.contains("damaged"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("learner.safetensors")).expect("remove");
        let err = verify_folder(dir.path(), &sums)
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains("learner.safetensors") && err.contains("missing"),
            "{err}"
        );
    }
}
