//! Dataset analysis: counts per split and class, image sizes, a figure with a class chart and a sample
//! grid per class, and a train/test leakage audit (exact and perceptual duplicates).

use crate::data::audit::{self, DuplicatePair, Fingerprint};
use crate::data::decode::{decode_bytes, DecodeError};
use crate::data::scan::{Dataset, ScanWarning, Split};
use crate::data::Class;
use crate::progress::progress_bar;
use crate::viz::{self, charts, grid};
use anyhow::Context;
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything `inspect` found; written as `inspect.json`.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub root: PathBuf,
    /// Image count per split, then per class folder name.
    pub counts: BTreeMap<Split, BTreeMap<String, usize>>,
    pub total_images: usize,
    /// Images that have a paired true mask.
    pub with_masks: usize,
    pub sizes: SizeSummary,
    pub leakage: LeakageSummary,
    /// Folders and files skipped while scanning, each with the reason.
    pub skipped: Vec<ScanWarning>,
    /// Files whose header read but whose pixels did not decode.
    pub undecodable: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SizeSummary {
    pub min_width: u32,
    pub max_width: u32,
    pub median_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    pub median_height: u32,
    /// The ten most common (width, height, count).
    pub most_common: Vec<(u32, u32, usize)>,
}

#[derive(Debug, Serialize)]
pub struct LeakageSummary {
    pub hash: &'static str,
    pub near_threshold_bits: u32,
    pub exact_pairs: usize,
    pub near_pairs: usize,
    /// Distinct images of the test split involved in any cross-split pair.
    pub test_images_involved: usize,
    pub within_split_exact_duplicates: usize,
    pub pairs: Vec<DuplicatePair>,
}

/// What to analyse and where to write the results.
#[derive(Debug, Clone)]
pub struct InspectSettings {
    /// Dataset folder (Kaggle layout).
    pub data: PathBuf,
    /// Where to write analysis.png, sizes.png, inspect.json and duplicates.csv.
    pub out: PathBuf,
    /// Treat any skipped folder or unreadable file as an error.
    pub strict: bool,
    /// Largest pHash distance (bits of 256) that counts as the same image.
    pub near_threshold: u32,
    /// Sample images per class in the figure.
    pub samples: usize,
}

/// Scan, decode and audit the dataset; write the figures and files into `args.out`.
pub fn analyse(args: &InspectSettings) -> anyhow::Result<InspectReport> {
    let scanned = crate::data::scan::scan_logged(&args.data, args.strict)?;
    if !scanned.warnings.is_empty() {
        tracing::warn!(
            "{} item(s) skipped while scanning {}",
            scanned.warnings.len(),
            args.data.display()
        );
    }
    let dataset = scanned.dataset;
    let picks = sample_picks(&dataset, args.samples);

    let bar = progress_bar(dataset.samples.len() as u64, "inspect");
    let decoded: Vec<Result<(Fingerprint, Option<RgbImage>), DecodeError>> = dataset
        .samples
        .par_iter()
        .enumerate()
        .map(|(i, sample)| {
            let result = read_one(&sample.path, picks.contains(&i));
            bar.inc(1);
            result
        })
        .collect();
    bar.finish_and_clear();

    let mut undecodable = Vec::new();
    let mut fingerprints = Vec::new();
    let mut thumbnails: BTreeMap<usize, RgbImage> = BTreeMap::new();
    for (i, (sample, result)) in dataset.samples.iter().zip(decoded).enumerate() {
        match result {
            Ok((fingerprint, thumbnail)) => {
                fingerprints.push((sample.split, sample.path.as_path(), fingerprint));
                if let Some(t) = thumbnail {
                    thumbnails.insert(i, t);
                }
            }
            Err(e) => {
                tracing::warn!("skipped {e}");
                undecodable.push(e.to_string());
            }
        }
    }
    if args.strict && !undecodable.is_empty() {
        anyhow::bail!(
            "{} image(s) failed to decode and --strict is set; first: {}",
            undecodable.len(),
            undecodable[0]
        );
    }

    let pairs = audit::cross_split_duplicates(&fingerprints, args.near_threshold);
    let test_images_involved = {
        let mut involved: Vec<&Path> = pairs
            .iter()
            .flat_map(|p| {
                [
                    (p.first_split, p.first.as_path()),
                    (p.second_split, p.second.as_path()),
                ]
            })
            .filter(|(s, _)| *s == Split::Testing)
            .map(|(_, p)| p)
            .collect();
        involved.sort();
        involved.dedup();
        involved.len()
    };
    let leakage = LeakageSummary {
        hash: "pHash: 256-bit DCT of the 32x32 grayscale image (image_hasher Mean + DCT, 16x16)",
        near_threshold_bits: args.near_threshold,
        exact_pairs: pairs.iter().filter(|p| p.exact).count(),
        near_pairs: pairs.iter().filter(|p| !p.exact).count(),
        test_images_involved,
        within_split_exact_duplicates: audit::within_split_exact_duplicates(&fingerprints),
        pairs,
    };

    let report = InspectReport {
        root: dataset.root.clone(),
        counts: counts(&dataset),
        total_images: dataset.samples.len(),
        with_masks: dataset.samples.iter().filter(|s| s.mask.is_some()).count(),
        sizes: size_summary(&dataset),
        leakage,
        skipped: scanned.warnings,
        undecodable,
    };
    write_outputs(&report, &dataset, &picks, &thumbnails, args)?;
    Ok(report)
}

fn read_one(path: &Path, keep: bool) -> Result<(Fingerprint, Option<RgbImage>), DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let image = decode_bytes(&bytes, path)?;
    Ok((audit::fingerprint(&bytes, &image), keep.then_some(image)))
}

/// Indices of the samples shown in the grid: `per_class` evenly spaced images of each class, taken from the
/// first split that has the class.
fn sample_picks(dataset: &Dataset, per_class: usize) -> Vec<usize> {
    let mut picks = Vec::new();
    for class in Class::ALL {
        let Some(split) = dataset
            .splits()
            .into_iter()
            .find(|s| dataset.class_counts(*s)[class.index()] > 0)
        else {
            continue;
        };
        let indices: Vec<usize> = dataset
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.split == split && s.class == class)
            .map(|(i, _)| i)
            .collect();
        let take = per_class.min(indices.len());
        picks.extend((0..take).map(|k| indices[k * indices.len() / take]));
    }
    picks
}

fn counts(dataset: &Dataset) -> BTreeMap<Split, BTreeMap<String, usize>> {
    dataset
        .splits()
        .into_iter()
        .map(|split| {
            let per_class = Class::ALL
                .iter()
                .map(|c| {
                    (
                        c.folder_name().to_string(),
                        dataset.class_counts(split)[c.index()],
                    )
                })
                .collect();
            (split, per_class)
        })
        .collect()
}

fn size_summary(dataset: &Dataset) -> SizeSummary {
    let mut widths: Vec<u32> = dataset.samples.iter().map(|s| s.width).collect();
    let mut heights: Vec<u32> = dataset.samples.iter().map(|s| s.height).collect();
    widths.sort_unstable();
    heights.sort_unstable();
    let median = |v: &[u32]| v.get(v.len() / 2).copied().unwrap_or(0);
    let mut common: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for s in &dataset.samples {
        *common.entry((s.width, s.height)).or_default() += 1;
    }
    let mut most_common: Vec<(u32, u32, usize)> =
        common.into_iter().map(|((w, h), n)| (w, h, n)).collect();
    most_common.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    most_common.truncate(10);
    SizeSummary {
        min_width: widths.first().copied().unwrap_or(0),
        max_width: widths.last().copied().unwrap_or(0),
        median_width: median(&widths),
        min_height: heights.first().copied().unwrap_or(0),
        max_height: heights.last().copied().unwrap_or(0),
        median_height: median(&heights),
        most_common,
    }
}

fn write_outputs(
    report: &InspectReport,
    dataset: &Dataset,
    picks: &[usize],
    thumbnails: &BTreeMap<usize, RgbImage>,
    args: &InspectSettings,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // Figure 1: class counts per split above a sample grid per class.
    let splits = dataset.splits();
    let chart = charts::BarChart {
        title: "Images per class",
        y_label: "images",
        series: splits.iter().map(|s| s.to_string()).collect(),
        groups: Class::ALL
            .iter()
            .map(|c| charts::BarGroup {
                label: c.folder_name().to_string(),
                values: splits
                    .iter()
                    .map(|s| dataset.class_counts(*s)[c.index()] as f64)
                    .collect(),
            })
            .collect(),
    };
    let rows: Vec<grid::GridRow> = Class::ALL
        .iter()
        .map(|class| grid::GridRow {
            label: class.folder_name().to_string(),
            colour: viz::CLASS_COLOURS[class.index()],
            images: picks
                .iter()
                .filter(|i| dataset.samples[**i].class == *class)
                .filter_map(|i| thumbnails.get(i).cloned())
                .collect(),
            captions: Vec::new(),
        })
        .collect();
    let columns = rows
        .iter()
        .map(|r| r.images.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let samples = grid::image_grid("Sample images per class", &rows, columns, 180)?;
    let bars = charts::bar_chart(&chart, samples.width().max(900), 380)?;
    viz::save_png(
        &grid::stack_vertically(&[bars, samples]),
        &args.out.join("analysis.png"),
    )?;

    // Figure 2: image sizes.
    let points: Vec<(f64, f64, usize)> = dataset
        .samples
        .iter()
        .map(|s| (f64::from(s.width), f64::from(s.height), s.class.index()))
        .collect();
    let names: Vec<&str> = Class::ALL.iter().map(|c| c.folder_name()).collect();
    let sizes = charts::class_scatter(
        "Image sizes",
        "width (px)",
        "height (px)",
        &points,
        &names,
        900,
        600,
    )?;
    viz::save_png(&sizes, &args.out.join("sizes.png"))?;

    let json = serde_json::to_string_pretty(report).context("serialising the report")?;
    let path = args.out.join("inspect.json");
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;

    let mut csv = String::from("first,first_split,second,second_split,phash_distance,exact\n");
    for p in &report.leakage.pairs {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            csv_field(&p.first),
            p.first_split,
            csv_field(&p.second),
            p.second_split,
            p.distance,
            p.exact
        ));
    }
    let path = args.out.join("duplicates.csv");
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn csv_field(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The report as text for the terminal.
pub fn print_summary(report: &InspectReport, out: &Path) {
    let splits: Vec<&Split> = report.counts.keys().collect();
    let per_split: Vec<String> = splits
        .iter()
        .map(|s| format!("{s} {}", report.counts[*s].values().sum::<usize>()))
        .collect();
    println!(
        "Dataset {}: {} images ({}), {} with masks, {} skipped",
        report.root.display(),
        report.total_images,
        per_split.join(", "),
        report.with_masks,
        report.skipped.len() + report.undecodable.len()
    );
    print!("{:<12}", "");
    for class in Class::ALL {
        print!("{:>12}", class.folder_name());
    }
    println!("{:>8}", "total");
    for split in &splits {
        print!("{:<12}", split.to_string());
        for class in Class::ALL {
            print!(
                "{:>12}",
                report.counts[*split]
                    .get(class.folder_name())
                    .copied()
                    .unwrap_or(0)
            );
        }
        println!("{:>8}", report.counts[*split].values().sum::<usize>());
    }
    let s = &report.sizes;
    println!(
        "Image sizes: width {}–{} (median {}), height {}–{} (median {}); most common {}",
        s.min_width,
        s.max_width,
        s.median_width,
        s.min_height,
        s.max_height,
        s.median_height,
        s.most_common
            .first()
            .map(|(w, h, n)| format!("{w}×{h} ({n})"))
            .unwrap_or_default()
    );
    let l = &report.leakage;
    println!(
        "Leakage audit: {} exact and {} near-duplicate pair(s) across splits (pHash distance ≤ {} of 256 bits), \
         {} test image(s) involved",
        l.exact_pairs, l.near_pairs, l.near_threshold_bits, l.test_images_involved
    );
    for p in l.pairs.iter().take(5) {
        println!(
            "  {} ↔ {} (distance {}{})",
            p.first.display(),
            p.second.display(),
            p.distance,
            if p.exact { ", identical file" } else { "" }
        );
    }
    println!(
        "Wrote {}, {}, {}, {}",
        out.join("analysis.png").display(),
        out.join("sizes.png").display(),
        out.join("inspect.json").display(),
        out.join("duplicates.csv").display()
    );
}
