//! Explaining a classifier's decisions: class activation maps for each image — an overlay PNG (on the image
//! as given), the raw map (224×224, [0, 1]) as `.npy` or 16-bit PNG, a grid figure with predicted and true class
//! and confidence, and `cam.json`. Where true masks exist (a phantom set's `masks/`), each method's maps are scored
//! against them (pointing game, energy in mask, thresholded Dice/IoU); every image also gets a deletion score.

use crate::cam::quality::{score_against_mask, top_pixels, MaskScores, QualityMeans, QualitySums};
use crate::cam::{compute_smoothed, CamBatch, CamMethod};
use crate::data::batcher::images_to_tensor;
use crate::data::inputs::{gather, unique_name, InputError, Item};
use crate::data::medical::nifti::{volume_stem, SliceVolumes};
use crate::data::medical::VolumeOptions;
use crate::data::preprocess::{resize_rgb, IMAGENET_MEAN};
use crate::data::Class;
use crate::model::{inference, run};
use crate::progress::{load_batch, progress_bar};
use crate::viz::{self, colormap, grid};
use anyhow::Context;
use burn::module::Module;
use image::RgbImage;
use rand::seq::index::sample;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One method's result for one image.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: CamMethod,
    /// Path of the raw map, when written.
    #[serde(serialize_with = "crate::paths::lossy_option")]
    pub map: Option<PathBuf>,
    /// Scores against the true mask (tumour images with a mask only).
    pub mask: Option<MaskScores>,
    /// Target confidence minus the confidence with the map's top pixels removed.
    pub deletion_drop: Option<f64>,
    /// The same with as many random pixels removed.
    pub random_drop: Option<f64>,
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// The file, or the slice of a DICOM/NIfTI file.
    pub input: String,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub file: PathBuf,
    pub true_class: Option<Class>,
    pub predicted: Class,
    pub confidence: f32,
    /// The class the maps explain.
    pub target: Class,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub overlay: PathBuf,
    pub methods: Vec<MethodResult>,
}

/// Everything `cam.json` holds.
#[derive(Debug, Serialize)]
pub struct CamReport {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub run: PathBuf,
    pub methods: Vec<CamMethod>,
    /// The layer (or fused layers) the maps come from.
    pub layer: crate::cam::CamLayer,
    pub flip_smooth: bool,
    pub threshold: f32,
    pub delete_fraction: f64,
    /// Per method: per true class, then `all`.
    pub quality: BTreeMap<String, BTreeMap<String, QualityMeans>>,
    pub images: Vec<ImageResult>,
    /// NIfTI inputs: one map volume per input and method, aligned to the input.
    pub volumes: Vec<CamVolume>,
    /// Inputs that could not be read, each with its reason.
    pub errors: Vec<String>,
}

/// A NIfTI input's maps as a float volume ([0, 1]) with the input's shape, voxel order, sform and qform; slices
/// not explained stay 0.
#[derive(Debug, Clone, Serialize)]
pub struct CamVolume {
    #[serde(serialize_with = "crate::paths::lossy")]
    pub input: PathBuf,
    pub method: CamMethod,
    #[serde(serialize_with = "crate::paths::lossy")]
    pub map: PathBuf,
    pub slices: usize,
}

/// How raw maps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RawFormat {
    /// float32 `.npy` (224×224, values in [0, 1]).
    Npy,
    /// 16-bit grey PNG.
    Png,
    /// None.
    None,
}

/// What to explain, how, and where to write it.
#[derive(Debug, Clone)]
pub struct CamSettings {
    /// The classifier run.
    pub run: PathBuf,
    /// Image files and folders, or a dataset folder (its Testing/ split, scored against true masks).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// CAM methods; the first draws the overlays and the grid.
    pub method: Vec<CamMethod>,
    /// Explain this class instead of the predicted one.
    pub target: Option<Class>,
    /// Weight of the image in the overlay.
    pub image_weight: f32,
    pub flip_smooth: bool,
    pub layer: crate::cam::CamLayer,
    pub raw: RawFormat,
    /// Level at which a map is thresholded for Dice/IoU against true masks.
    pub threshold: f32,
    /// Fraction of pixels removed for the deletion score; 0 turns it off.
    pub delete_fraction: f64,
    /// Images in the grid figure.
    pub grid: usize,
    pub batch_size: usize,
    /// Seed for the random pixels of the deletion baseline.
    pub seed: u64,
    pub volume: VolumeOptions,
}

/// Compute, write and score every input's maps.
pub fn cam(args: &CamSettings) -> anyhow::Result<CamReport> {
    anyhow::ensure!(!args.method.is_empty(), "give at least one --method");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.delete_fraction),
        "--delete-fraction must lie in [0, 1]"
    );
    let device = crate::device::training();
    let (model, config) = run::load_run(&args.run, &crate::device::inference())
        .with_context(|| format!("loading {}", args.run.display()))?;
    // The deletion check's classifier, prepared once for every batch and method.
    let evaluator = inference::Predictor::new(&model);
    let model = model.train().fork(&device);
    let (items, mut errors) = gather(&args.inputs, &args.volume)?;
    let overlays = args.out.join("overlays");
    let maps = args.out.join("maps");
    std::fs::create_dir_all(&overlays)
        .with_context(|| format!("creating {}", overlays.display()))?;
    if args.raw != RawFormat::None {
        std::fs::create_dir_all(&maps).with_context(|| format!("creating {}", maps.display()))?;
    }
    let size = config.input_size;
    let side = size as usize;
    // The class every map explains when --target is given (else each image's predicted class).
    let target = args
        .target
        .and_then(|t| config.classes.iter().position(|c| *c == t));
    let mut names = HashSet::new();
    let mut images = Vec::with_capacity(items.len());
    let mut sums: BTreeMap<(CamMethod, Option<Class>), QualitySums> = BTreeMap::new();
    let mut gallery: BTreeMap<Option<Class>, Vec<(RgbImage, String)>> = BTreeMap::new();
    let per_row = args.grid.div_ceil(Class::COUNT).max(1);
    let mut volumes: Vec<SliceVolumes<f32>> =
        args.method.iter().map(|_| SliceVolumes::new()).collect();
    let bar = progress_bar(items.len() as u64, "cam");
    for (chunk_index, chunk) in items.chunks(args.batch_size.max(1)).enumerate() {
        let ready = load_batch(chunk, |item| load(item, size), &mut errors, &bar);
        if ready.is_empty() {
            continue;
        }
        let inputs: Vec<RgbImage> = ready.iter().map(|(_, l)| l.input.clone()).collect();
        let x = images_to_tensor(&inputs, &device)?;
        let targets = vec![target; ready.len()];
        let mut per_method = Vec::with_capacity(args.method.len());
        for &method in &args.method {
            let batch = compute_smoothed(
                &model,
                x.clone(),
                method,
                &targets,
                args.flip_smooth,
                args.layer,
            )?;
            let finished = batch.finished_all(side, side);
            let deletion = if args.delete_fraction > 0.0 {
                Some(deletion_drops(
                    &evaluator,
                    &inputs,
                    &finished,
                    &batch,
                    args.delete_fraction,
                    (args.seed, chunk_index),
                )?)
            } else {
                None
            };
            per_method.push((method, batch, finished, deletion));
        }
        for (i, (item, loaded)) in ready.iter().enumerate() {
            let (_, first, first_maps, _) = &per_method[0];
            let probabilities = &first.probabilities[i];
            let (best, confidence) = crate::metrics::argmax(probabilities);
            let predicted = config.classes[best];
            let target = config.classes[first.targets[i]];
            let name = unique_name(&item.input, &mut names);
            // Overlay on the image as given: the map resized to its size.
            let overlay_path = overlays.join(format!("{name}.png"));
            viz::save_png(
                &colormap::overlay_resized(
                    &loaded.original,
                    &first_maps[i],
                    side,
                    side,
                    args.image_weight,
                )?,
                &overlay_path,
            )?;
            let row = gallery
                .entry(item.true_class.or(Some(predicted)))
                .or_default();
            if row.len() < per_row {
                let thumb = colormap::overlay(&loaded.input, &first_maps[i], args.image_weight)?;
                let mark = match item.true_class {
                    Some(t) if t == predicted => " ✓",
                    Some(_) => " ✗",
                    None => "",
                };
                row.push((thumb, format!("{predicted} {confidence:.2}{mark}")));
            }
            if let (Some((plane, index)), Some(geometry)) =
                (item.input.position, &item.input.geometry)
            {
                let (width, height) = loaded.original.dimensions();
                let (width, height) = (width as usize, height as usize);
                for ((_, _, finished, _), stack) in per_method.iter().zip(&mut volumes) {
                    let map = crate::cam::postprocess::resize_bilinear(
                        &finished[i],
                        side,
                        side,
                        height,
                        width,
                    );
                    let value = |row: usize, column: usize| map.get(row * width + column).copied();
                    if let Err(e) = stack.add(
                        &item.input.path,
                        geometry,
                        plane,
                        index,
                        (width, height),
                        value,
                    ) {
                        errors.push(format!("{}: {e}", item.input.name));
                    }
                }
            }
            let mut methods = Vec::with_capacity(per_method.len());
            for (method, _, finished, deletion) in &per_method {
                let map_path = match args.raw {
                    RawFormat::None => None,
                    RawFormat::Npy => {
                        let path = maps.join(format!("{name}.{}.npy", method.name()));
                        write_npy(&path, &finished[i], side, side)?;
                        Some(path)
                    }
                    RawFormat::Png => {
                        let path = maps.join(format!("{name}.{}.png", method.name()));
                        write_png16(&path, &finished[i], size, size)?;
                        Some(path)
                    }
                };
                let mask = loaded
                    .mask
                    .as_ref()
                    .and_then(|m| score_against_mask(&finished[i], m, args.threshold));
                let class_sums = sums.entry((*method, item.true_class)).or_default();
                if let Some(scores) = &mask {
                    class_sums.add_mask(scores);
                }
                let (deletion_drop, random_drop) = match deletion {
                    Some(d) => {
                        class_sums.add_deletion(d[i].0, d[i].1);
                        (Some(d[i].0), Some(d[i].1))
                    }
                    None => (None, None),
                };
                methods.push(MethodResult {
                    method: *method,
                    map: map_path,
                    mask,
                    deletion_drop,
                    random_drop,
                });
            }
            images.push(ImageResult {
                input: item.input.name.clone(),
                file: item.input.path.clone(),
                true_class: item.true_class,
                predicted,
                confidence,
                target,
                overlay: overlay_path,
                methods,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if images.is_empty() {
        anyhow::bail!(InputError::Unreadable {
            failed: errors.len(),
            total: errors.len()
        });
    }
    write_grid(
        &args.out.join("grid.png"),
        &args.method[0],
        &gallery,
        per_row,
    )?;
    let volumes = write_volumes(volumes, &args.method, &args.out.join("volumes"))?;
    let report = CamReport {
        volumes,
        run: args.run.clone(),
        methods: args.method.clone(),
        layer: args.layer,
        flip_smooth: args.flip_smooth,
        threshold: args.threshold,
        delete_fraction: args.delete_fraction,
        quality: quality(&sums),
        images,
        errors,
    };
    std::fs::write(
        args.out.join("cam.json"),
        serde_json::to_string_pretty(&report).context("writing cam.json")?,
    )
    .with_context(|| format!("writing {}", args.out.join("cam.json").display()))?;
    std::fs::write(args.out.join("quality.md"), quality_table(&report))
        .with_context(|| format!("writing {}", args.out.join("quality.md").display()))?;
    Ok(report)
}

/// Write each method's volumes as `<dir>/<input stem>.<method>.nii.gz`.
fn write_volumes(
    volumes: Vec<SliceVolumes<f32>>,
    methods: &[CamMethod],
    dir: &Path,
) -> anyhow::Result<Vec<CamVolume>> {
    let mut written = Vec::new();
    // One name per input (`scan`, `scan_2` for another folder's scan.nii.gz), the same for every method.
    let mut stems: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut used = HashSet::new();
    for (stack, method) in volumes.into_iter().zip(methods) {
        if stack.is_empty() {
            continue;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (input, geometry, values, slices) in stack.into_volumes() {
            let stem = stems.entry(input.clone()).or_insert_with(|| {
                let base = volume_stem(&input);
                let mut name = base.clone();
                let mut n = 2;
                while !used.insert(name.clone()) {
                    name = format!("{base}_{n}");
                    n += 1;
                }
                name
            });
            let map = dir.join(format!("{stem}.{}.nii.gz", method.name()));
            geometry.write_values(&map, &values)?;
            written.push(CamVolume {
                input,
                method: *method,
                map,
                slices,
            });
        }
    }
    Ok(written)
}

/// A decoded input: the image as given, the model's input, and the true mask at the input size.
struct Loaded {
    original: RgbImage,
    input: RgbImage,
    mask: Option<Vec<bool>>,
}

fn load(item: &Item, size: u32) -> Result<Loaded, String> {
    let original = item.input.load()?;
    let input =
        resize_rgb(&original, size, size).map_err(|e| format!("{}: {e}", item.input.name))?;
    let mask = match &item.mask {
        None => None,
        Some(path) => Some(crate::data::decode::read_binary_mask(path, size)?),
    };
    Ok(Loaded {
        original,
        input,
        mask,
    })
}

/// For each image of `cams`: (target confidence − confidence with the map's top pixels set to the ImageNet mean
/// colour, the same with as many random pixels, drawn from the stream of `(seed, chunk)`).
fn deletion_drops(
    model: &inference::Predictor,
    inputs: &[RgbImage],
    maps: &[Vec<f32>],
    cams: &CamBatch,
    fraction: f64,
    (seed, chunk): (u64, usize),
) -> anyhow::Result<Vec<(f64, f64)>> {
    let mean = image::Rgb(IMAGENET_MEAN.map(|m| (m * 255.0).round() as u8));
    let remove = |image: &RgbImage, pixels: &[usize]| {
        let mut out = image.clone();
        let width = out.width() as usize;
        for &p in pixels {
            out.put_pixel((p % width) as u32, (p / width) as u32, mean);
        }
        out
    };
    let mut by_cam = Vec::with_capacity(inputs.len());
    let mut by_chance = Vec::with_capacity(inputs.len());
    for (i, (image, map)) in inputs.iter().zip(maps).enumerate() {
        let top = top_pixels(map, fraction);
        let mut rng = crate::rng::stream(seed, "cam-deletion", &[chunk as u64, i as u64]);
        let random = sample(&mut rng, map.len(), top.len()).into_vec();
        by_cam.push(remove(image, &top));
        by_chance.push(remove(image, &random));
    }
    let device = crate::device::inference();
    let p_cam = model.probabilities(&by_cam, &device)?;
    let p_chance = model.probabilities(&by_chance, &device)?;
    Ok((0..inputs.len())
        .map(|i| {
            let t = cams.targets[i];
            let p = f64::from(cams.probabilities[i][t]);
            (p - f64::from(p_cam[i][t]), p - f64::from(p_chance[i][t]))
        })
        .collect())
}

/// A little-endian float32 `.npy` (format 1.0) of shape (height, width).
pub fn write_npy(path: &Path, values: &[f32], height: usize, width: usize) -> anyhow::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({height}, {width}), }}");
    // Magic (6) + version (2) + length (2) + header + newline must be a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// A 16-bit grayscale PNG: value × 65535.
fn write_png16(path: &Path, values: &[f32], width: u32, height: u32) -> anyhow::Result<()> {
    let data: Vec<u16> = values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    let image = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(width, height, data)
        .context("map size")?;
    image
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_grid(
    path: &Path,
    method: &CamMethod,
    gallery: &BTreeMap<Option<Class>, Vec<(RgbImage, String)>>,
    per_row: usize,
) -> anyhow::Result<()> {
    let rows: Vec<grid::GridRow> = gallery
        .iter()
        .map(|(class, cells)| grid::GridRow {
            label: class.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            colour: class.map_or((128, 128, 128), |c| viz::CLASS_COLOURS[c.index()]),
            images: cells.iter().map(|(image, _)| image.clone()).collect(),
            captions: cells.iter().map(|(_, caption)| caption.clone()).collect(),
        })
        .collect();
    let title = format!(
        "{} overlays: rows = true class; captions = predicted class, confidence",
        method.name()
    );
    let columns = rows
        .iter()
        .map(|r| r.images.len())
        .max()
        .unwrap_or(1)
        .clamp(1, per_row);
    viz::save_png(&grid::image_grid(&title, &rows, columns, 180)?, path)?;
    Ok(())
}

fn quality(
    sums: &BTreeMap<(CamMethod, Option<Class>), QualitySums>,
) -> BTreeMap<String, BTreeMap<String, QualityMeans>> {
    let mut out: BTreeMap<String, BTreeMap<String, QualityMeans>> = BTreeMap::new();
    let mut totals: BTreeMap<CamMethod, QualitySums> = BTreeMap::new();
    for ((method, class), s) in sums {
        let name = class.map_or_else(|| "unknown".to_string(), |c| c.to_string());
        out.entry(method.name().to_string())
            .or_default()
            .insert(name, s.means());
        totals.entry(*method).or_default().merge(s);
    }
    for (method, s) in totals {
        out.entry(method.name().to_string())
            .or_default()
            .insert("all".to_string(), s.means());
    }
    out
}

/// The quality table as markdown.
pub fn quality_table(report: &CamReport) -> String {
    let pct = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.1} %", v * 100.0));
    let num = crate::metrics::three_places;
    let mut out = format!(
        "| method | class | masked | pointing game | energy in mask (uniform map) | Dice@{t} | IoU@{t} | \
         deletion gain (top {f:.0} %) |\n|---|---|---|---|---|---|---|---|\n",
        t = report.threshold,
        f = report.delete_fraction * 100.0
    );
    for (method, classes) in &report.quality {
        for (class, m) in classes {
            out.push_str(&format!(
                "| {method} | {class} | {} | {} | {} ({}) | {} | {} | {} |\n",
                m.masked,
                pct(m.pointing_game),
                pct(m.energy_in_mask),
                pct(m.mask_area),
                num(m.dice),
                num(m.iou),
                num(m.deletion_gain)
            ));
        }
    }
    out
}
