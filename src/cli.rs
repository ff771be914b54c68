//! Command-line types (clap). Every field has a default, so a parsed command is a fully resolved setting.

use crate::data::Class;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use crate::workflow::explain::RawFormat;

#[derive(Debug, Parser)]
#[command(
    name = "tumornet",
    version,
    about = "Brain MRI tumour classification, Grad-CAM and pseudo-segmentation"
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Where to compute. `vulkan` and `cuda` need a build with that Cargo feature; their first run compiles GPU
    /// kernels (minutes), later runs reuse them from the kernel cache.
    #[arg(long, global = true, value_enum, default_value_t = crate::device::Backend::Cpu)]
    pub device: crate::device::Backend,
    /// Classifier inference (predict, evaluate, the classifications of cam and serve, `bench --mode eval`) in
    /// half precision on a GPU backend; the CPU, training and the U-Net compute in f32 whatever this says.
    #[arg(long, global = true, value_enum, default_value_t = crate::device::Precision::F32)]
    pub precision: crate::device::Precision,
    /// How `vulkan` and `cuda` run convolutions: their own kernels, or im2col and one matrix product each.
    #[arg(long, global = true, value_enum, default_value_t = crate::device::GpuConv::Native)]
    pub gpu_conv: crate::device::GpuConv,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an MRI phantom set (real anatomy, synthetic lesions, true masks) in the Kaggle layout.
    Synth(SynthArgs),
    /// Analyse a dataset: counts, image sizes, sample grid, train/test leakage audit.
    Inspect(InspectArgs),
    /// Train the seed protocol: baseline (fc), fine-tune (layer4 + fc), optionally full; evaluate on Testing/.
    Train(TrainArgs),
    /// Re-score a saved run on a dataset folder.
    Evaluate(EvaluateArgs),
    /// Class and probabilities for images (files and folders).
    Predict(PredictArgs),
    /// Grad-CAM heatmaps: overlays, a grid, raw maps, and CAM quality against true masks where they exist.
    Cam(CamArgs),
    /// CAM pseudo-masks (128×128) for a dataset's images, scored against true masks where they exist.
    PseudoMasks(PseudoMaskArgs),
    /// Merge pseudo-mask folders made in shards (same run and recipe) into one for `train-seg --pseudo`.
    MergeMasks(MergeMasksArgs),
    /// Settings as TOML: pseudo-mask recipes and their presets, training settings for `--config`.
    Config(ConfigArgs),
    /// Train the U-Net (the run's ResNet18 as encoder) on pseudo-masks, with self-training rounds.
    TrainSeg(TrainSegArgs),
    /// Tumour masks and outlines for images (files and folders) from a segmentation run.
    Segment(SegmentArgs),
    /// ImageNet weights: download them, or import a torchvision checkpoint as a run folder.
    Weights(WeightsArgs),
    /// One self-contained HTML report (figures embedded) from a demo folder or a run folder and its companions.
    Report(ReportArgs),
    /// Run the whole pipeline on a generated phantom set and write everything into one folder.
    Demo(DemoArgs),
    /// HTTP API and web page: POST /api/predict (image, DICOM or NIfTI) → class, probabilities, Grad-CAM overlay.
    Serve(ServeArgs),
    /// Measure ResNet18 images/s (training steps or inference) on the chosen --device, random data.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![64])]
    pub batch: Vec<usize>,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = BenchMode::Eval)]
    pub mode: BenchMode,
    /// Timed steps per batch size (after the warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first (kernel compilation and autotuning happen here on a GPU).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Append one JSON line per batch size to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Forward pass in eval mode, as `predict` and `evaluate` run it (on the CPU: BatchNorm folded into the
    /// convolutions).
    Eval,
    /// Forward pass in eval mode through burn's own layers (BatchNorm a pass of its own): the reference for `eval`.
    EvalLayers,
    /// Forward, cross-entropy, backward and an Adam step, all layers learning.
    Train,
    /// A U-Net training step at 128×128 (encoder frozen, as `train-seg` runs it): forward, BCE + soft Dice,
    /// backward, Adam.
    Seg,
    /// What `train` caches once: conv1 … layer3 in eval mode (224×224 in, 256×14×14 out).
    Prefix,
    /// A `finetune` step on cached layer3 maps: layer4 + fc forward, cross-entropy, backward, Adam.
    Finetune,
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Output folder (created; must be empty unless --force).
    pub out: PathBuf,
    /// Images per class in Training/.
    #[arg(long, default_value_t = 50)]
    pub train: usize,
    /// Images per class in Testing/.
    #[arg(long, default_value_t = 20)]
    pub test: usize,
    /// Seed for every random draw; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Smallest output side in pixels.
    #[arg(long, default_value_t = 256)]
    pub min_size: u32,
    /// Largest output side in pixels.
    #[arg(long, default_value_t = 512)]
    pub max_size: u32,
    /// JPEG quality (1–100).
    #[arg(long, default_value_t = 90)]
    pub jpeg_quality: u8,
    /// Lesion sizes × this (1: realistic; 2: an easier set whose lesions a model trained from scratch can find).
    #[arg(long, default_value_t = 1.0)]
    pub lesion_scale: f32,
    /// The same images with every lesion left out (masks empty, class folders kept): `evaluate` on them shows
    /// whether a classifier relies on the lesions or on something else.
    #[arg(long)]
    pub without_lesions: bool,
    /// A T1 head in MNI space (NIfTI) as the anatomy instead of the built-in Colin27 — the ICBM152 2009 template,
    /// or a scan of your own registered to MNI — to check a model on anatomy it was not trained on.
    #[arg(long, value_name = "FILE.nii.gz")]
    pub anatomy: Option<PathBuf>,
    /// Write N whole 3-D volumes per class instead of 2-D images: `volumes/<class>/*.nii.gz` (1 mm, the anatomy's
    /// MNI grid), their true masks in `truth/<class>/`, and `volumes.json`; `segment --truth` scores them.
    #[arg(long, value_name = "N")]
    pub volumes: Option<usize>,
    /// Write into a non-empty folder, replacing files of the same names.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Dataset folder (Kaggle layout: Training/ Testing/ × class folders).
    pub data: PathBuf,
    /// Where to write analysis.png, sizes.png, inspect.json and duplicates.csv.
    #[arg(long, default_value = "inspect")]
    pub out: PathBuf,
    /// Treat any skipped folder or unreadable file as an error.
    #[arg(long)]
    pub strict: bool,
    /// Near-duplicate threshold: largest pHash distance (bits of 256) that counts as the same image.
    #[arg(long, default_value_t = crate::data::audit::DEFAULT_NEAR_THRESHOLD)]
    pub near_threshold: u32,
    /// Sample images per class in the figure.
    #[arg(long, default_value_t = 6)]
    pub samples: usize,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Output folder for the phantom set and every result.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// A small set for a quick look (and for the end-to-end test).
    #[arg(long)]
    pub quick: bool,
    /// Start from random init and train every layer (the `full` stage) instead of from a pretrained backbone.
    #[arg(long)]
    pub from_scratch: bool,
    /// Seed for every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Run folder (from `train` or `weights import`).
    pub run: PathBuf,
    /// Image files and folders (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Print JSON instead of one line per image.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Only task I of N of a job array (every N-th input): `I/N`, `slurm` or `k8s/N`.
    #[arg(long, default_value = "0/1", value_name = "I/N")]
    pub shard: crate::data::shard::ShardSpec,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WeightsCommand {
    /// Download torchvision's ImageNet ResNet18 weights into the cache, checking their SHA-256.
    Fetch {
        /// Where to download from.
        #[arg(long, default_value = crate::model::weights::TORCHVISION_URL)]
        url: String,
        /// The SHA-256 of the file must start with this (torch.hub's check).
        #[arg(long, default_value = crate::model::weights::TORCHVISION_SHA256_PREFIX)]
        sha256_prefix: String,
        /// Download even if the file is cached.
        #[arg(long)]
        force: bool,
    },
    /// Make a run folder from a torchvision-layout ResNet18 checkpoint (.pth or .safetensors): a 4-class model
    /// loads whole; an ImageNet (1000-class) one gets a fresh 4-class head.
    Import {
        /// The checkpoint.
        weights: PathBuf,
        /// The run folder to create.
        #[arg(long)]
        out: PathBuf,
        /// Seed for a fresh head.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print where `fetch` stores the weights.
    Path,
    /// Write a run's backbone (every layer but the head) as a half-precision torchvision-layout safetensors file:
    /// a starting point for `train --weights FILE` (how the built-in phantom backbone is made).
    ExportBackbone {
        /// Run folder (from `train`).
        run: PathBuf,
        /// The file to write (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a segmentation run's U-Net in segmentation_models_pytorch's names: `smp.Unet("resnet18",
    /// encoder_weights=None, classes=1).load_state_dict(safetensors.torch.load_file(FILE))` loads it. (A U-Net
    /// trained with smp loads the other way: put it in a segmentation run as `unet.safetensors`.)
    ExportSmp {
        /// Segmentation run folder (from `train-seg`).
        seg: PathBuf,
        /// The file to write (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_backbone(text: &str) -> Result<crate::model::backbone::BackboneChoice, String> {
    Ok(crate::model::backbone::BackboneChoice::parse(text))
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Dataset folder (Kaggle layout; Training/ is split into train and validation, Testing/ scores the result).
    pub data: PathBuf,
    /// Run folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed for initialisation, the validation split, shuffling and mirroring.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weights to start from: a torchvision-layout file (ImageNet, or a model trained elsewhere), `phantom`
    /// (TumorNet's built-in phantom-trained backbone: for phantom data only, never for real scans) or `none`
    /// (random init). Default: the cached `weights fetch` file, if any, else random init.
    #[arg(long, value_name = "FILE|phantom|none", value_parser = parse_backbone)]
    pub weights: Option<crate::model::backbone::BackboneChoice>,
    /// Training settings as TOML (learning rates, optimiser, batch size, random erasing, …; `tumornet config
    /// train` prints every key). Default: the seed notebook's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Change one training setting (repeatable), e.g. `--set full_lr=1e-4` or `--set random_erasing=0.5`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Epochs of the `baseline` stage (backbone frozen, fc learns).
    #[arg(long, default_value_t = 5)]
    pub baseline_epochs: usize,
    /// Epochs of the `finetune` stage (layer4 and fc learn).
    #[arg(long, default_value_t = 5)]
    pub finetune_epochs: usize,
    /// Epochs of the `full` stage (all layers learn). Default: 0 with ImageNet weights, 5 without.
    #[arg(long)]
    pub full_epochs: Option<usize>,
    /// Stop on any unreadable file.
    #[arg(long)]
    pub strict: bool,
    /// Write into a non-empty run folder.
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted run in --out from its last complete epoch (its saved configuration is used).
    #[arg(long)]
    pub resume: bool,
    /// Start no epoch after this many minutes (counted from the start of the command): the running stage keeps its
    /// best epoch so far, later stages are skipped, and the run finishes as usual. The learning-rate schedule
    /// is not shortened to fit.
    #[arg(long, value_name = "MINUTES")]
    pub time_limit: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Run folder.
    pub run: PathBuf,
    /// Dataset folder: its Testing/ split if it has one, else every image.
    pub data: PathBuf,
    /// Where to write evaluation.json, predictions.csv, confusion.png and misclassified.png.
    #[arg(long, default_value = "evaluation")]
    pub out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Stop on any unreadable file.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CamArgs {
    /// Run folder (from `train` or `weights import`).
    pub run: PathBuf,
    /// Image files and folders. A dataset folder (Training/ and Testing/) uses its Testing/ split, with true
    /// classes and, for a phantom set, true masks (then CAM quality is scored).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder (overlays/, maps/, grid.png, cam.json).
    #[arg(long, default_value = "cam")]
    pub out: PathBuf,
    /// CAM methods (repeat or comma-separate); the first one draws the overlays and the grid.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![crate::cam::CamMethod::GradCam])]
    pub method: Vec<crate::cam::CamMethod>,
    /// Explain this class instead of the predicted one.
    #[arg(long)]
    pub target: Option<Class>,
    /// Weight of the image in the overlay (pytorch-grad-cam's `image_weight`).
    #[arg(long, default_value_t = 0.5)]
    pub image_weight: f32,
    /// Average each map with the un-mirrored map of the mirrored image.
    #[arg(long)]
    pub flip_smooth: bool,
    /// Layer whose activations make the CAM (layer3: twice the resolution of layer4; fused: layer1, layer2 and
    /// layer3 averaged, the finest).
    #[arg(long, value_enum, default_value_t = crate::cam::CamLayer::Layer4)]
    pub layer: crate::cam::CamLayer,
    /// Raw maps (224×224, values in [0, 1]) as .npy float32, 16-bit PNG, or not at all.
    #[arg(long, value_enum, default_value_t = RawFormat::Npy)]
    pub raw: RawFormat,
    /// Level at which a map is thresholded for Dice/IoU against true masks.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Fraction of pixels removed for the deletion (faithfulness) score; 0 turns it off.
    #[arg(long, default_value_t = 0.2)]
    pub delete_fraction: f64,
    /// Images in the grid figure (spread over the classes).
    #[arg(long, default_value_t = 24)]
    pub grid: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Seed for the random pixels of the deletion baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub volume: VolumeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PseudoMaskArgs {
    /// Run folder (from `train`): its classifier makes the CAMs.
    pub run: PathBuf,
    /// Dataset folder (Kaggle layout); both splits get masks, scored against `masks/` where it exists.
    pub data: PathBuf,
    /// Output folder (masks/, pseudo_masks.json, quality.md, gallery.png).
    #[arg(long, default_value = "pseudo-masks")]
    pub out: PathBuf,
    /// How masks are made: a preset (`best`, `seed`; `tumornet config recipes`) or a recipe TOML file
    /// (`tumornet config recipe best > mine.toml` starts one).
    #[arg(long, default_value = crate::pseudo::recipe::DEFAULT_PRESET, value_name = "NAME|FILE")]
    pub recipe: String,
    /// Change one key of the recipe (repeatable), e.g. `--set class.pituitary.cam_power=0.5`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Only task I of N of a job array (every N-th image): `I/N`, `slurm` or `k8s/N`; merge the parts with
    /// `merge-masks`.
    #[arg(long, default_value = "0/1", value_name = "I/N")]
    pub shard: crate::data::shard::ShardSpec,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Cases in gallery.png.
    #[arg(long, default_value_t = 12)]
    pub gallery: usize,
    /// Also write every image's map as an 8-bit grey PNG under `cams/` (same layout as `masks/`).
    #[arg(long)]
    pub save_cams: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Settings files: each prints TOML to start one's own from (`… > mine.toml`), with `--set` applied.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// The pseudo-mask recipe presets, with what each does.
    Recipes,
    /// A pseudo-mask recipe (a preset or a file) as TOML, for `pseudo-masks --recipe FILE`.
    Recipe {
        /// A preset name or a recipe TOML file.
        #[arg(default_value = crate::pseudo::recipe::DEFAULT_PRESET, value_name = "NAME|FILE")]
        recipe: String,
        /// Change one key (repeatable), e.g. `--set mask.threshold=otsu`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// The classifier's training settings as TOML, for `train --config FILE`.
    Train {
        /// Change one key (repeatable), e.g. `--set full_lr=1e-4`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// The U-Net's training settings as TOML, for `train-seg --config FILE`.
    Unet {
        /// Change one key (repeatable), e.g. `--set rounds=2`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TrainSegArgs {
    /// Run folder (from `train`): its ResNet18 becomes the U-Net's encoder and its predictions gate the masks.
    pub run: PathBuf,
    /// Dataset folder (Kaggle layout).
    pub data: PathBuf,
    /// Segmentation run folder to write (`report` finds `seg/` beside the run).
    #[arg(long, default_value = "seg")]
    pub out: PathBuf,
    /// Pseudo-mask folder from `pseudo-masks`; without it the masks are made into OUT/pseudo-masks by --recipe.
    #[arg(long)]
    pub pseudo: Option<PathBuf>,
    /// The recipe for the masks made without --pseudo: a preset (`best`, `seed`) or a TOML file.
    #[arg(long, default_value = crate::pseudo::recipe::DEFAULT_PRESET, value_name = "NAME|FILE")]
    pub recipe: String,
    /// U-Net training settings as TOML (`tumornet config unet` prints every key); default: the best measured.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Change one training setting (repeatable), e.g. `--set rounds=2` or `--set dice_loss=batch`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Epochs of the first round (short for `--set epochs=N`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed for the decoder's initialisation, the validation split, shuffling and mirroring.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cases in gallery.png.
    #[arg(long, default_value_t = 12)]
    pub gallery: usize,
}

#[derive(Debug, Clone, Args)]
pub struct MergeMasksArgs {
    /// Pseudo-mask folders (from `pseudo-masks`, or earlier merges) made by one run with the same settings, e.g.
    /// image ranges or chunks made on different machines. Run from the folder where `pseudo-masks` ran when they
    /// name images by relative paths.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Output folder: pseudo_masks.json (masks named by absolute path; they stay in the parts) and quality.md
    /// (the chosen threshold's masks scored over all parts).
    #[arg(long, default_value = "pseudo-masks-merged")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct SegmentArgs {
    /// Segmentation run folder (from `train-seg`).
    pub segrun: PathBuf,
    /// Image files and folders; a dataset folder uses its Testing/ split and scores against `masks/`.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder (masks/, overlays/, segment.json, gallery.png).
    #[arg(long, default_value = "segment-out")]
    pub out: PathBuf,
    /// True mask volumes for NIfTI and DICOM-series inputs: a file (one input volume) or a folder searched for a
    /// file with each input's name (`synth --volumes` writes them to `truth/`); scores each mask volume by Dice,
    /// HD95 and ASD in millimetres and tumour volume in millilitres, per class (the input's folder name) with
    /// intervals.
    #[arg(long, value_name = "FILE|DIR")]
    pub truth: Option<PathBuf>,
    /// Keep every connected part of a mask volume (by default only its largest 6-connected component is kept: a
    /// tumour is one body, and slices the classifier wrongly calls tumour far from it fall away).
    #[arg(long)]
    pub all_components: bool,
    /// Keep the mask of an image the classifier calls no-tumour (by default it is emptied).
    #[arg(long)]
    pub no_gate: bool,
    /// Probability at which the U-Net's output becomes a mask (default: the run's).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Test-time flip (see the U-Net setting `flip_tta`), also for a run trained without it.
    #[arg(long)]
    pub flip_tta: bool,
    /// Never-empty tumour masks (see the U-Net setting `never_empty`), also for a run trained without it.
    #[arg(long)]
    pub never_empty: bool,
    /// Steps refining each mask by the image's grey levels (see the U-Net setting `refine`; default: the run's;
    /// 0: the U-Net's probabilities as they are).
    #[arg(long, value_name = "STEPS")]
    pub refine: Option<u32>,
    /// The U-Net's masks as they are, not checked against the pseudo-mask recipe's (see the U-Net setting
    /// `confirm`; faster: no class activation maps or deletion passes).
    #[arg(long)]
    pub unet_only: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Only task I of N of a job array (every N-th input): `I/N`, `slurm` or `k8s/N`.
    #[arg(long, default_value = "0/1", value_name = "I/N")]
    pub shard: crate::data::shard::ShardSpec,
    #[command(flatten)]
    pub volume: VolumeArgs,
}

/// How DICOM and NIfTI inputs become slices.
#[derive(Debug, Clone, Default, Args)]
pub struct VolumeArgs {
    /// Plane NIfTI volumes are cut along (after reorienting by the header's affine).
    #[arg(long, value_enum, default_value_t = crate::data::medical::Plane::Axial)]
    pub plane: crate::data::medical::Plane,
    /// Slices of a NIfTI volume, or frames of a multi-frame DICOM: all, middle, 40:60 (inclusive) or 10,20,30.
    #[arg(long, default_value = "all")]
    pub slices: crate::data::medical::SliceSelection,
    /// Volume of a 4-D NIfTI (from 0).
    #[arg(long, default_value_t = 0)]
    pub volume: usize,
    /// Read the single-frame DICOM files of one series in a folder as one volume, cut along --plane like a NIfTI
    /// (ordered by ImagePositionPatient; its geometry from ImageOrientationPatient and PixelSpacing), so that
    /// `segment` and `cam` write aligned volumes (`volumes/<folder>.mask.nii.gz`).
    #[arg(long)]
    pub dicom_series: bool,
}

impl VolumeArgs {
    pub fn options(&self) -> crate::data::medical::VolumeOptions {
        crate::data::medical::VolumeOptions {
            plane: self.plane,
            slices: self.slices.clone(),
            volume: self.volume,
            dicom_series: self.dicom_series,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A demo folder (run/, inspect/, cam/, pseudo-masks/, seg/ inside) or a run folder (its companions are
    /// looked for beside it under those names).
    pub dir: PathBuf,
    /// The HTML file to write (default: DIR/report.html); report.md is written beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dataset analysis folder (from `inspect`).
    #[arg(long)]
    pub inspect: Option<PathBuf>,
    /// Grad-CAM folder (from `cam`).
    #[arg(long)]
    pub cam: Option<PathBuf>,
    /// Pseudo-mask folder (from `pseudo-masks`).
    #[arg(long)]
    pub pseudo: Option<PathBuf>,
    /// Segmentation run (from `train-seg`).
    #[arg(long)]
    pub seg: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Run folder (from `train` or `weights import`).
    pub run: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = 32)]
    pub max_upload_mib: usize,
    /// Requests computed at once (the rest wait, up to the timeout).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Seconds a request may take, waiting included.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Seconds a client has to send its request headers (cuts off slow-loris clients).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// CAM method for the overlay.
    #[arg(long, value_enum, default_value_t = crate::cam::CamMethod::GradCam)]
    pub method: crate::cam::CamMethod,
    /// Weight of the image in the overlay.
    #[arg(long, default_value_t = 0.5)]
    pub image_weight: f32,
    /// A segmentation run (from `train-seg`): responses also carry the tumour mask and its outline.
    #[arg(long)]
    pub seg: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` on every /api/ request (better set through the environment, where
    /// other users' `ps` cannot see it).
    #[arg(long, env = "TUMORNET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Listen on a non-loopback address without a token (refused otherwise).
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every (sub)command, with the command's path.
    fn arguments(command: &clap::Command, path: &str, out: &mut Vec<(String, String, bool)>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if ["help", "version"].contains(&id) {
                continue;
            }
            out.push((path.to_string(), id.to_string(), arg.get_help().is_some()));
        }
        for sub in command.get_subcommands() {
            arguments(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_and_argument_has_a_help_line() {
        let mut all = Vec::new();
        arguments(&Cli::command(), "tumornet", &mut all);
        assert!(all.len() > 100, "{}", all.len());
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, _, has_help)| !has_help)
            .map(|(path, id, _)| format!("{path} {id}"))
            .collect();
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn the_everyday_commands_keep_few_options() {
        let own = |name: &str| {
            Cli::command()
                .find_subcommand(name)
                .map(|c| {
                    c.get_arguments()
                        .filter(|a| !a.is_positional() && !a.is_global_set())
                        .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
                        .count()
                })
                .unwrap_or(usize::MAX)
        };
        assert!(own("pseudo-masks") <= 8, "{}", own("pseudo-masks"));
        assert!(own("train-seg") <= 10, "{}", own("train-seg"));
        assert!(own("train") <= 14, "{}", own("train"));
    }
}
