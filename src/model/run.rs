//! A run folder: the weights (`model.safetensors`, torchvision key names) and the resolved configuration
//! (`run.json`) beside them. Loading a run needs nothing else.

use super::resnet::ResNet18;
use super::weights::{self, WeightsError};
use crate::data::preprocess::{CLASSIFIER_SIZE, IMAGENET_MEAN, IMAGENET_STD};
use crate::data::Class;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The weights file of a run.
pub const MODEL_FILE: &str = "model.safetensors";
/// The configuration file of a run.
pub const CONFIG_FILE: &str = "run.json";
const FORMAT_VERSION: u32 = 1;

/// Where the backbone's weights came from, so every result can say whether it stands on ImageNet features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightsOrigin {
    /// torchvision's random init (no pretrained weights), drawn from this seed.
    RandomInit { seed: u64 },
    /// A torchvision-layout file (ImageNet weights, or a model trained elsewhere).
    File { path: PathBuf, sha256: String },
    /// TumorNet's phantom-trained backbone, shipped inside the binary (the offline stand-in for ImageNet).
    Phantom { sha256: String },
}

impl WeightsOrigin {
    /// Whether the backbone started from learned weights (ImageNet, another file, or the phantom backbone).
    pub fn is_pretrained(&self) -> bool {
        !matches!(self, WeightsOrigin::RandomInit { .. })
    }

    /// One line for summaries and reports.
    pub fn describe(&self) -> String {
        let short = |sha256: &str| sha256.get(..12).unwrap_or(sha256).to_string();
        match self {
            WeightsOrigin::RandomInit { seed } => {
                format!("torchvision's random init (seed {seed}), no pretrained weights")
            }
            WeightsOrigin::File { path, sha256 } => {
                format!("`{}` (SHA-256 {}…)", path.display(), short(sha256))
            }
            WeightsOrigin::Phantom { sha256 } => format!(
                "TumorNet's phantom-trained ResNet18 (built in, SHA-256 {}…), the offline stand-in for ImageNet",
                short(sha256)
            ),
        }
    }
}

/// Everything needed to use a run's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub format_version: u32,
    pub architecture: String,
    /// Class of each output, in index order.
    pub classes: Vec<Class>,
    /// Input side (the image is resized to `input_size`×`input_size`).
    pub input_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Training stage that produced the weights (`imported`, `baseline`, `finetune`, `full`).
    pub stage: String,
    pub weights_origin: WeightsOrigin,
    pub seed: u64,
    pub created_by: String,
    /// The data the run was trained on (absent for imported models and older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::data::provenance::DataSource>,
}

impl RunConfig {
    /// A configuration with the standard classes and preprocessing.
    pub fn new(stage: &str, weights_origin: WeightsOrigin, seed: u64) -> RunConfig {
        RunConfig {
            format_version: FORMAT_VERSION,
            architecture: "resnet18".into(),
            classes: Class::ALL.to_vec(),
            input_size: CLASSIFIER_SIZE,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            stage: stage.into(),
            weights_origin,
            seed,
            created_by: format!("tumornet {}", env!("CARGO_PKG_VERSION")),
            data: None,
        }
    }
}

/// Why a run folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}: not a run folder (no {CONFIG_FILE}); make one with `tumornet train` or `tumornet weights import`", .0.display())]
    NotARun(PathBuf),
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write `model` and `config` into `dir` (created if needed). Each file is written atomically.
pub fn save_run(dir: &Path, model: &ResNet18, config: &RunConfig) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(config).map_err(|e| RunError::Config {
        path: dir.join(CONFIG_FILE),
        message: e.to_string(),
    })?;
    weights::save_torchvision(
        model,
        &dir.join(MODEL_FILE),
        &[("tumornet_run", json.clone())],
    )?;
    let path = dir.join(CONFIG_FILE);
    let temporary = weights::temporary_path(&path);
    std::fs::write(&temporary, json).map_err(|source| RunError::Io {
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, &path).map_err(|source| RunError::Io { path, source })
}

/// Read a run folder's configuration.
pub fn read_config(dir: &Path) -> Result<RunConfig, RunError> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(RunError::NotARun(dir.to_path_buf()));
    }
    let text = std::fs::read_to_string(&path).map_err(|source| RunError::Io {
        path: path.clone(),
        source,
    })?;
    let config: RunConfig = serde_json::from_str(&text).map_err(|e| RunError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if config.architecture != "resnet18" || config.classes.is_empty() {
        return Err(RunError::Config {
            path,
            message: format!(
                "unsupported model: {} with {} classes",
                config.architecture,
                config.classes.len()
            ),
        });
    }
    Ok(config)
}

/// Load a run folder's model and configuration onto `device`.
pub fn load_run(dir: &Path, device: &Device) -> Result<(ResNet18, RunConfig), RunError> {
    let config = read_config(dir)?;
    let path = dir.join(MODEL_FILE);
    let (model, report) =
        weights::load_torchvision(ResNet18::new(config.classes.len(), device), &path)?;
    if let Some(classes) = report.head_replaced {
        return Err(RunError::Config {
            path,
            message: format!(
                "the weights have {classes} outputs but {CONFIG_FILE} lists {}",
                config.classes.len()
            ),
        });
    }
    Ok((model, config))
}
