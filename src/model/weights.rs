//! Weights: torchvision state dicts (`.pth` pickles and `.safetensors`) into our ResNet18, and our own
//! checkpoints out (safetensors with torchvision key names and layouts, so PyTorch can read them back).

use super::resnet::ResNet18;
use burn::module::{Module, ModuleMapper, Param};
use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Tensor};
use std::path::{Path, PathBuf};

/// torchvision's ImageNet ResNet18 weights (`ResNet18_Weights.IMAGENET1K_V1`).
pub const TORCHVISION_URL: &str = "https://download.pytorch.org/models/resnet18-f37072fd.pth";
/// The file name torchvision uses; its suffix is the first 8 hex digits of the file's SHA-256.
pub const TORCHVISION_FILE: &str = "resnet18-f37072fd.pth";
/// What torch.hub checks: the SHA-256 of the file starts with this.
pub const TORCHVISION_SHA256_PREFIX: &str = "f37072fd";

/// Why weights could not be read or written. Each variant names the file and, where it applies, the tensors.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: no such weights file", .0.display())]
    NotFound(PathBuf),
    #[error("{}: unknown weights format (expected .pth, .pt or .safetensors)", .0.display())]
    UnknownFormat(PathBuf),
    #[error("{}: cannot read the weights: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: {} tensor(s) missing: {}", path.display(), tensors.len(), tensors.join(", "))]
    Missing { path: PathBuf, tensors: Vec<String> },
    #[error("{}: {} tensor(s) with the wrong shape: {}", path.display(), tensors.len(), tensors.join("; "))]
    Shape { path: PathBuf, tensors: Vec<String> },
    #[error("{}: {} tensor(s) this ResNet18 does not have: {}", path.display(), tensors.len(), tensors.join(", "))]
    Unexpected { path: PathBuf, tensors: Vec<String> },
    #[error("{}: cannot write the weights: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// torchvision names `downsample.0/1` what this model calls `downsample.conv/bn` (regex → replacement).
pub(crate) const TORCHVISION_TO_OURS: [(&str, &str); 2] = [
    (r"downsample\.0\.", "downsample.conv."),
    (r"downsample\.1\.", "downsample.bn."),
];
const OURS_TO_TORCHVISION: [(&str, &str); 2] = [
    (r"downsample\.conv\.", "downsample.0."),
    (r"downsample\.bn\.", "downsample.1."),
];

/// What a load did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Tensors copied into the model.
    pub applied: usize,
    /// The file's head had another number of classes (e.g. ImageNet's 1000); `fc` kept its fresh init.
    pub head_replaced: Option<usize>,
    /// Tensors the file lacked (only with [`Missing::Allow`]); they keep their fresh init.
    pub missing: Vec<String>,
}

/// Whether a file may lack some of the model's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Every tensor must be there (the head excepted, for an ImageNet file).
    Refuse,
    /// Load what is there (e.g. a backbone-only checkpoint); the rest keeps its fresh init.
    Allow,
}

/// Load a torchvision ResNet18 state dict (`.pth`/`.pt` pickle or `.safetensors`) into `model`, including BN
/// running statistics. A head with another number of classes (an ImageNet checkpoint) is left out and `fc` keeps
/// its fresh init; any other missing, misshapen or unknown tensor is an error that names it.
pub fn load_torchvision(
    model: ResNet18,
    path: &Path,
) -> Result<(ResNet18, LoadReport), WeightsError> {
    load_torchvision_with(model, path, Missing::Refuse)
}

/// [`load_torchvision`], choosing what to do about missing tensors.
pub fn load_torchvision_with(
    mut model: ResNet18,
    path: &Path,
    missing: Missing,
) -> Result<(ResNet18, LoadReport), WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::NotFound(path.to_path_buf()));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let result = match extension.as_deref() {
        Some("safetensors") => apply(
            &mut model,
            safetensors_reader(SafetensorsStore::from_file(path)),
        ),
        Some("pth") | Some("pt") => apply(
            &mut model,
            // The PyTorch store applies PyTorchToBurnAdapter itself.
            TORCHVISION_TO_OURS
                .iter()
                .fold(PytorchStore::from_file(path), |s, (from, to)| {
                    s.with_key_remapping(*from, *to)
                })
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false),
        ),
        _ => return Err(WeightsError::UnknownFormat(path.to_path_buf())),
    };
    finish_load(model, result, path, missing)
}

/// Load a torchvision-layout safetensors file held in memory (`name` names it in errors). The file may lack
/// the head (`fc`), which then keeps its fresh init (a backbone-only file); any other missing tensor is an error.
pub fn load_torchvision_bytes(
    mut model: ResNet18,
    bytes: &[u8],
    name: &Path,
) -> Result<(ResNet18, LoadReport), WeightsError> {
    let store = safetensors_reader(SafetensorsStore::from_bytes(Some(bytes.to_vec())));
    let result = apply(&mut model, store);
    let (model, report) = finish_load(model, result, name, Missing::Allow)?;
    let body: Vec<String> = report
        .missing
        .iter()
        .filter(|tensor| !tensor.starts_with("fc."))
        .cloned()
        .collect();
    if !body.is_empty() {
        return Err(WeightsError::Missing {
            path: name.to_path_buf(),
            tensors: body,
        });
    }
    Ok((model, report))
}

/// A safetensors store that reads torchvision names and layouts.
fn safetensors_reader(store: SafetensorsStore) -> SafetensorsStore {
    TORCHVISION_TO_OURS
        .iter()
        .fold(store, |s, (from, to)| s.with_key_remapping(*from, *to))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false)
}

fn finish_load(
    model: ResNet18,
    result: Result<ApplyResult, String>,
    path: &Path,
    missing: Missing,
) -> Result<(ResNet18, LoadReport), WeightsError> {
    let result = result.map_err(|message| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    })?;
    let report = judge(&result, model.num_classes(), path, missing)?;
    // The model computes in f32: a half-precision (or f64) checkpoint's tensors keep their file's dtype when
    // applied, and the CPU backend panics at the first operation that mixes them with f32.
    Ok((cast_floats(model, DType::F32), report))
}

/// Every float tensor of `module` (parameters and BatchNorm running statistics) as `dtype`.
pub fn cast_floats<M: Module>(module: M, dtype: DType) -> M {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| if t.dtype() == dtype { t } else { t.cast(dtype) })
        }
    }
    module.map(&mut Cast(dtype))
}

fn apply<S: ModuleStore>(model: &mut ResNet18, mut store: S) -> Result<ApplyResult, String> {
    model.load_from(&mut store).map_err(|e| e.to_string())
}

/// Decide whether an apply result is acceptable, and say what happened to the head.
fn judge(
    result: &ApplyResult,
    classes: usize,
    path: &Path,
    policy: Missing,
) -> Result<LoadReport, WeightsError> {
    let mut head_classes = None;
    let mut wrong = Vec::new();
    for error in &result.errors {
        match error {
            ApplyError::ShapeMismatch {
                path: tensor,
                expected,
                found,
            } => {
                let is_head = tensor == "fc.weight" || tensor == "fc.bias";
                // Burn keeps fc.weight as [in, out]; the adapter has already transposed the file's [out, in].
                let file_classes = match tensor.as_str() {
                    "fc.weight" if found.len() == 2 && found[0] == 512 => Some(found[1]),
                    "fc.bias" if found.len() == 1 => Some(found[0]),
                    _ => None,
                };
                match (is_head, file_classes) {
                    (true, Some(n)) if n != classes => head_classes = Some(n),
                    _ => wrong.push(format!("{tensor} is {found:?}, expected {expected:?}")),
                }
            }
            other => wrong.push(format!("{other:?}")),
        }
    }
    if !wrong.is_empty() {
        return Err(WeightsError::Shape {
            path: path.to_path_buf(),
            tensors: wrong,
        });
    }
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(tensor, _)| tensor.clone())
        .filter(|tensor| head_classes.is_none() || !tensor.starts_with("fc."))
        .collect();
    if !missing.is_empty() && policy == Missing::Refuse {
        return Err(WeightsError::Missing {
            path: path.to_path_buf(),
            tensors: missing,
        });
    }
    // BatchNorm's `num_batches_tracked` has no counterpart (burn keeps no step count); anything else unused
    // means the file is not a ResNet18.
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        return Err(WeightsError::Unexpected {
            path: path.to_path_buf(),
            tensors: unexpected,
        });
    }
    Ok(LoadReport {
        applied: result.applied.len(),
        head_replaced: head_classes,
        missing,
    })
}

/// Save `model` as safetensors with torchvision key names and layouts (`fc.weight` as `[out, in]`, BN
/// `weight`/`bias`/`running_mean`/`running_var`, `downsample.0/1`); `metadata` is stored in the file's header.
/// Written to a temporary file and renamed into place, so a crash never leaves a half-written checkpoint.
pub fn save_torchvision(
    model: &ResNet18,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<(), WeightsError> {
    save_safetensors(model, path, metadata)
}

/// Save any module that holds a ResNet18 (the classifier, or the U-Net with its encoder under `encoder.`) as
/// safetensors with torchvision's key names and layouts; `metadata` is stored in the file's header. Written to
/// a temporary file and renamed into place.
pub fn save_safetensors<M: ModuleSnapshot>(
    module: &M,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<(), WeightsError> {
    write_safetensors(module, path, metadata, None, &[])
}

/// Save the backbone of `model` (every tensor but the head `fc`) as safetensors with torchvision's key names and
/// layouts, its floats cast to `dtype` (F16 halves the file; loading casts back to f32). Takes the model by
/// value: a clone would share its BatchNorm running statistics, which the cast replaces in place.
pub fn save_backbone(
    model: ResNet18,
    path: &Path,
    dtype: DType,
    metadata: &[(&str, String)],
) -> Result<(), WeightsError> {
    let without_head: fn(&str, &str) -> bool = |tensor, _| !tensor.starts_with("fc.");
    write_safetensors(
        &cast_floats(model, dtype),
        path,
        metadata,
        Some(without_head),
        &[],
    )
}

/// Write `module` in torchvision's names and layouts through a temporary file renamed into place; `keep`, when
/// given, chooses the tensors to write; `renames` (regex, replacement) rename keys further.
pub(crate) fn write_safetensors<M: ModuleSnapshot>(
    module: &M,
    path: &Path,
    metadata: &[(&str, String)],
    keep: Option<fn(&str, &str) -> bool>,
    renames: &[(&str, &str)],
) -> Result<(), WeightsError> {
    let write_error = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let temporary = temporary_path(path);
    let mut store = OURS_TO_TORCHVISION
        .iter()
        .chain(renames)
        .fold(SafetensorsStore::from_file(&temporary), |s, (from, to)| {
            s.with_key_remapping(*from, *to)
        })
        .with_to_adapter(BurnToPyTorchAdapter);
    if let Some(keep) = keep {
        store = store.with_predicate(keep);
    }
    for (key, value) in metadata {
        store = store.metadata(*key, value.clone());
    }
    module
        .save_into(&mut store)
        .map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| write_error(e.to_string()))
}

/// The tensor names in a safetensors file's header (read without reading the tensors).
pub fn safetensors_keys(path: &Path) -> Result<Vec<String>, WeightsError> {
    use std::io::Read;
    let error = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|e| error(format!("no safetensors header: {e}")))?;
    let length = u64::from_le_bytes(length);
    if length > 100 << 20 {
        return Err(error(format!(
            "a header of {length} bytes is not plausible"
        )));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)
        .map_err(|e| error(format!("truncated safetensors header: {e}")))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| error(format!("safetensors header: {e}")))?;
    Ok(header
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key != "__metadata__")
        .collect())
}

/// `dir/name` → `dir/.name.tmp-<pid>`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
