//! The HTML report: one self-contained file (figures embedded as data URIs, styles inline, no scripts, no external
//! requests) built from what the commands wrote — a run folder and, where they exist, the dataset analysis
//! (`inspect`), Grad-CAM (`cam`), pseudo-masks and segmentation folders. The report only reads results; it
//! computes nothing but layout. It is written as Markdown first (kept beside it as `report.md`, figures by
//! path) and rendered with pulldown-cmark.

use crate::model::run::WeightsOrigin;
use crate::paths::lossy_string;
use crate::train::segrun::SegRun;
use base64::Engine;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The folders a report draws on; any may be missing, except the run.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub run: PathBuf,
    pub inspect: Option<PathBuf>,
    pub cam: Option<PathBuf>,
    pub pseudo: Option<PathBuf>,
    pub seg: Option<PathBuf>,
    /// A `summary.md` to quote at the top (the demo's).
    pub summary: Option<PathBuf>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: not a run folder (no run.json)", .0.display())]
    NotARun(PathBuf),
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
}

/// The report as Markdown with figures referenced by path, and the list of those figures.
pub struct Document {
    pub markdown: String,
    pub figures: Vec<PathBuf>,
}

fn read_json(path: &Path) -> Result<Option<Value>, ReportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ReportError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// A result file read as its type, so a renamed field breaks the build (or names itself when an old file is read)
/// rather than showing as "–".
fn read_typed<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    match read_json(path)? {
        None => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ReportError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
    }
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0))
}

fn num(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// The notice at the top of every report.
pub const RESEARCH_NOTICE: &str =
    "> **Research use only, not for clinical decisions.** These models and figures \
     have not been validated for diagnosis.\n\n";

/// Build the report's Markdown from `sources`.
pub fn document(sources: &Sources) -> Result<Document, ReportError> {
    let run_config: crate::model::run::RunConfig = read_typed(&sources.run.join("run.json"))?
        .ok_or_else(|| ReportError::NotARun(sources.run.clone()))?;
    let metrics = read_json(&sources.run.join("metrics.json"))?;
    let mut md = String::new();
    let mut figures = Vec::new();
    let mut figure = |md: &mut String, path: PathBuf, alt: &str| {
        if path.is_file() {
            let _ = writeln!(md, "\n![{alt}](<{}>)\n", lossy_string(&path));
            figures.push(path);
        }
    };

    let pretrained = run_config.weights_origin.is_pretrained();
    let _ = writeln!(md, "# TumorNet report\n");
    let _ = writeln!(
        md,
        "Made by tumornet {} on {} from `{}`. Seed {}; weights: {}.\n",
        env!("CARGO_PKG_VERSION"),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        lossy_string(&sources.run),
        run_config.seed,
        match &run_config.weights_origin {
            WeightsOrigin::RandomInit { .. } => "**random init — no ImageNet weights**".to_string(),
            origin => origin.describe(),
        }
    );
    md.push_str(RESEARCH_NOTICE);
    if matches!(run_config.weights_origin, WeightsOrigin::Phantom { .. }) {
        md.push_str(
            "> **Phantom-trained backbone:** no ImageNet weights were at hand, so the classifier started from \
             TumorNet's built-in ResNet18 trained on phantom images (another seed, lesions twice the realistic \
             size). It stands in for ImageNet to show the whole pipeline offline; it has seen phantom images only \
             and is not a model for real scans.\n\n",
        );
    }
    if !pretrained {
        md.push_str(
            "> **Read the numbers with this in mind:** without ImageNet weights the frozen stages start from random \
             filters; only the `full` stage learns, and a few hundred images are too few to learn the lesions from \
             scratch. The figures show the pipeline, not a useful model. Run `tumornet weights fetch` where there \
             is internet.\n\n",
        );
    }
    let mut toc = vec!["Classification"];

    // Dataset analysis and leakage audit.
    let mut dataset = String::new();
    if let Some(dir) = &sources.inspect {
        if let Some(inspect) = read_json(&dir.join("inspect.json"))? {
            toc.insert(0, "Dataset");
            let _ = writeln!(dataset, "## Dataset\n");
            let _ = writeln!(
                dataset,
                "`{}`: {} images, {} with a true mask.\n",
                inspect["root"].as_str().unwrap_or("?"),
                inspect["total_images"],
                inspect["with_masks"]
            );
            if let Some(counts) = inspect["counts"].as_object() {
                let classes: Vec<String> = counts
                    .values()
                    .flat_map(|c| c.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let _ = writeln!(dataset, "| split | {} | total |", classes.join(" | "));
                let _ = writeln!(dataset, "|---|{}---|", "---|".repeat(classes.len()));
                for (split, c) in counts {
                    let values: Vec<u64> =
                        classes.iter().map(|k| c[k].as_u64().unwrap_or(0)).collect();
                    let _ = writeln!(
                        dataset,
                        "| {split} | {} | {} |",
                        values
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" | "),
                        values.iter().sum::<u64>()
                    );
                }
            }
            let sizes = &inspect["sizes"];
            let _ = writeln!(
                dataset,
                "\nImage sizes: width {}–{} (median {}), height {}–{} (median {}).\n",
                sizes["min_width"],
                sizes["max_width"],
                sizes["median_width"],
                sizes["min_height"],
                sizes["max_height"],
                sizes["median_height"]
            );
            let leakage = &inspect["leakage"];
            let _ = writeln!(
                dataset,
                "**Leakage audit** ({}; near = at most {} differing bits): {} exact and {} near-duplicate \
                 train/test pairs, touching {} test images; {} exact duplicates within a split.\n",
                leakage["hash"].as_str().unwrap_or("perceptual hash"),
                leakage["near_threshold_bits"],
                leakage["exact_pairs"],
                leakage["near_pairs"],
                leakage["test_images_involved"],
                leakage["within_split_exact_duplicates"]
            );
            figure(
                &mut dataset,
                dir.join("analysis.png"),
                "dataset analysis: counts, sizes, samples per class",
            );
        }
    }
    md.push_str(&dataset);

    // Classification.
    let _ = writeln!(md, "## Classification\n");
    if let Some(metrics) = &metrics {
        let stages = metrics["stages"].as_object().cloned().unwrap_or_default();
        let _ = writeln!(
            md,
            "Test split. Accuracy with a Wilson 95 % interval; macro F1 with a 1000-resample bootstrap 95 % \
             interval; precision, recall and F1 weighted by support (sklearn's `average=\"weighted\"`); ECE over \
             15 confidence bins.\n\n| stage | images | accuracy (95 % CI) | precision | recall | F1 | macro F1 (95 % CI) | ECE | best val. acc. | seconds |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for name in ["baseline", "finetune", "full"] {
            let Some(stage) = stages.get(name) else {
                continue;
            };
            let t = &stage["test"];
            if t.is_null() {
                let _ = writeln!(
                    md,
                    "| {name} | – | (no Testing/ split) | | | | | | {} | {:.0} |",
                    pct(&stage["best_validation_accuracy"]),
                    stage["seconds"].as_f64().unwrap_or(0.0)
                );
                continue;
            }
            let _ = writeln!(
                md,
                "| {name} | {} | {} ({}–{}) | {} | {} | {} | {} ({}–{}) | {} | {} | {:.0} |",
                t["images"],
                pct(&t["accuracy"]),
                pct(&t["accuracy_ci95"][0]),
                pct(&t["accuracy_ci95"][1]),
                num(&t["weighted_average"]["precision"]),
                num(&t["weighted_average"]["recall"]),
                num(&t["weighted_average"]["f1"]),
                num(&t["macro_average"]["f1"]),
                num(&t["macro_f1_ci95"][0]),
                num(&t["macro_f1_ci95"][1]),
                num(&t["expected_calibration_error"]),
                pct(&stage["best_validation_accuracy"]),
                stage["seconds"].as_f64().unwrap_or(0.0)
            );
        }
        for name in ["baseline", "finetune", "full"] {
            let Some(stage) = stages.get(name) else {
                continue;
            };
            let t = &stage["test"];
            let Some(per_class) = t["per_class"].as_object() else {
                continue;
            };
            let _ = writeln!(md, "\n### Stage `{name}`\n");
            let _ = writeln!(md, "| class | precision | recall | F1 | support | ROC AUC (one vs rest) |\n|---|---|---|---|---|---|");
            for (class, s) in per_class {
                let _ = writeln!(
                    md,
                    "| {class} | {} | {} | {} | {} | {} |",
                    num(&s["precision"]),
                    num(&s["recall"]),
                    num(&s["f1"]),
                    s["support"],
                    num(&t["roc_auc"][class])
                );
            }
            if let (Some(rows), Some(classes)) =
                (t["confusion"].as_array(), t["classes"].as_array())
            {
                let names: Vec<&str> = classes.iter().filter_map(Value::as_str).collect();
                let _ = writeln!(md, "\nConfusion matrix (rows: true class, columns: predicted):\n\n| true \\ predicted | {} |\n|---|{}", names.join(" | "), "---|".repeat(names.len()));
                for (name, row) in names.iter().zip(rows) {
                    let cells: Vec<String> = row
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| v.to_string())
                        .collect();
                    let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
                }
            }
            figure(
                &mut md,
                sources.run.join(format!("confusion_{name}.png")),
                &format!("confusion matrix, stage {name}"),
            );
            if let Some(bins) = t["reliability"].as_array() {
                md.push_str(&reliability_svg(name, bins));
            }
        }
        figure(
            &mut md,
            sources.run.join("curves.png"),
            "training curves: loss and accuracy per epoch",
        );
        if sources.run.join("misclassified.png").is_file() {
            let _ = writeln!(
                md,
                "\n### Misclassified test images\n\nThe final model's mistakes, the most confident first; \
                 `predictions.csv` in the run folder lists every test image with its probabilities."
            );
            figure(
                &mut md,
                sources.run.join("misclassified.png"),
                "misclassified test images with the predicted class and its probability",
            );
        }
    } else {
        md.push_str("No `metrics.json` in the run (an imported model): nothing was evaluated.\n\n");
    }

    // Grad-CAM.
    if let Some(dir) = &sources.cam {
        if dir.join("cam.json").is_file() {
            toc.push("Grad-CAM");
            let _ = writeln!(md, "## Grad-CAM\n");
            figure(
                &mut md,
                dir.join("grid.png"),
                "Grad-CAM overlays per true class",
            );
            if let Some(text) = read_text(&dir.join("quality.md")) {
                let _ = writeln!(
                    md,
                    "CAM quality against the true masks (pointing game: the map's peak inside the lesion; energy in \
                     mask beside the uniform map's; Dice/IoU of the thresholded map; deletion gain: confidence drop \
                     when the map's top pixels are removed minus the drop for random pixels).\n\n{text}\n"
                );
            }
        }
    }

    // Pseudo-masks and segmentation.
    if let Some(dir) = &sources.pseudo {
        if let Some(text) = read_text(&dir.join("quality.md")) {
            toc.push("Pseudo-masks");
            let _ = writeln!(
                md,
                "## Pseudo-masks\n\n{}\n",
                text.replace("\n## ", "\n### ")
            );
            figure(
                &mut md,
                dir.join("gallery.png"),
                "image, true mask, CAM, pseudo-mask",
            );
        }
    }
    if let Some(dir) = &sources.seg {
        if let Some(seg) = read_typed::<SegRun>(&dir.join("seg.json"))? {
            toc.push("Segmentation");
            let _ = writeln!(md, "## Segmentation\n");
            if let Some(text) = read_text(&dir.join("metrics.md")) {
                let _ = writeln!(md, "{text}\n");
            }
            figure(
                &mut md,
                dir.join("gallery.png"),
                "image, true mask, pseudo-mask, U-Net mask",
            );
            let _ = writeln!(md, "\n| round | epoch | train loss | val. loss | val. Dice | s |\n|---|---|---|---|---|---|");
            let three = crate::metrics::three_places;
            for e in &seg.history {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {:.0} |",
                    e.round,
                    e.epoch,
                    three(Some(e.train_loss)),
                    three(Some(e.validation_loss)),
                    three(e.validation_dice),
                    e.seconds
                );
            }
        }
    }

    // Reproducibility.
    toc.push("Configuration");
    let _ = writeln!(md, "\n## Configuration\n\nEverything needed to reproduce these numbers: the run's settings, the training configuration and the segmentation settings, as the commands wrote them.\n");
    let _ = writeln!(
        md,
        "Versions: tumornet {}, burn {}, {}.\n",
        env!("CARGO_PKG_VERSION"),
        BURN_VERSION,
        std::env::consts::ARCH
    );
    let block = |md: &mut String, title: &str, value: &Value| {
        let _ = writeln!(
            md,
            "**{title}**\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    };
    block(
        &mut md,
        "run.json",
        &serde_json::to_value(&run_config).unwrap_or_default(),
    );
    if let Some(metrics) = &metrics {
        block(&mut md, "training configuration", &metrics["config"]);
    }
    if let Some(dir) = &sources.seg {
        if let Some(seg) = read_typed::<SegRun>(&dir.join("seg.json"))? {
            let _ = writeln!(
                md,
                "**U-Net settings** (`train-seg --config`)\n\n```toml\n{}```\n\n**Pseudo-mask recipe** \
                 (`pseudo-masks --recipe`)\n\n```toml\n{}```\n",
                crate::settings::to_toml(&seg.config).unwrap_or_default(),
                crate::settings::to_toml(&seg.pseudo_recipe).unwrap_or_default()
            );
        }
    }
    let mut head = String::new();
    if let Some(summary) = sources.summary.as_ref().and_then(|p| read_text(p)) {
        let _ = writeln!(
            head,
            "<details><summary>Demo summary</summary>\n\n{}\n</details>\n",
            summary.replace("# TumorNet demo", "")
        );
    }
    let contents: Vec<String> = toc
        .iter()
        .map(|t| format!("[{t}](#{})", t.to_lowercase().replace(' ', "-")))
        .collect();
    let markdown = md.replacen(
        "\n## ",
        &format!("\nContents: {}\n\n{head}\n## ", contents.join(" · ")),
        1,
    );
    Ok(Document { markdown, figures })
}

/// The burn version this build uses (checked against Cargo.lock by a test).
pub const BURN_VERSION: &str = "0.22.1";

/// A reliability diagram as inline SVG: bars of accuracy per confidence bin, the diagonal of perfect calibration.
fn reliability_svg(stage: &str, bins: &[Value]) -> String {
    let (w, h, pad) = (320.0f64, 220.0f64, 30.0f64);
    let plot_w = w - 2.0 * pad;
    let plot_h = h - 2.0 * pad;
    let mut svg = format!(
        "\n<figure><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"reliability diagram, stage {stage}\">\
         <rect x=\"{pad}\" y=\"{pad}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#f6f6f6\" stroke=\"#999\"/>"
    );
    for bin in bins {
        let (Some(from), Some(to)) = (bin["from"].as_f64(), bin["to"].as_f64()) else {
            continue;
        };
        let Some(accuracy) = bin["accuracy"].as_f64() else {
            continue;
        };
        let x = pad + from * plot_w;
        let bw = (to - from) * plot_w;
        let bh = accuracy * plot_h;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a78c2\"><title>{:.2}–{:.2}: {} predictions, accuracy {:.2}</title></rect>",
            pad + plot_h - bh,
            (bw - 1.0).max(0.5),
            from,
            to,
            bin["count"],
            accuracy
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{pad}\" stroke=\"#c24a4a\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">confidence</text>\
         <text x=\"10\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">accuracy</text>\
         </svg><figcaption>Reliability, stage {stage}: accuracy per confidence bin (bars) against perfect calibration (dashed).</figcaption></figure>\n\n",
        pad + plot_h,
        pad + plot_w,
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    svg
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:0 auto;\
padding:12px;line-height:1.45;color:#1d1d1d}table{border-collapse:collapse;display:block;overflow-x:auto;\
font-size:0.9em;margin:0.6em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;white-space:nowrap}\
th{background:#eef1f6}img{max-width:min(100%,760px);height:auto}svg{max-width:100%;height:auto}blockquote{background:#fff6e0;border-left:4px solid #e0a000;\
margin:0.8em 0;padding:6px 12px}pre{background:#f4f4f4;padding:8px;overflow-x:auto;font-size:0.85em}\
h1,h2,h3{line-height:1.2}figure{margin:0.6em 0}figcaption{font-size:0.85em;color:#555}";

/// Render `document` as one self-contained HTML page: each figure path replaced by its PNG as a data URI.
pub fn html(document: &Document) -> Result<String, ReportError> {
    let mut markdown = document.markdown.clone();
    for path in &document.figures {
        let bytes = std::fs::read(path).map_err(|e| ReportError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let uri = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        markdown = markdown.replace(
            &format!("](<{}>)", lossy_string(path)),
            &format!("]({uri})"),
        );
    }
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    let parser = pulldown_cmark::Parser::new_ext(&markdown, options);
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, parser);
    let body = add_heading_ids(&body);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>TumorNet report</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n"
    ))
}

/// `<h2>Title</h2>` → `<h2 id="title">Title</h2>`.
fn add_heading_ids(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("<h2>") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let end = after.find("</h2>").unwrap_or(0);
        let title = &after[..end];
        let _ = write!(
            out,
            "<h2 id=\"{}\">",
            title.to_lowercase().replace(' ', "-")
        );
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_version_is_the_locked_one() {
        let lock = include_str!("../../Cargo.lock");
        assert!(lock.contains(&format!("name = \"burn\"\nversion = \"{BURN_VERSION}\"")));
    }

    #[test]
    fn headings_get_ids_for_the_contents_links() {
        assert_eq!(
            add_heading_ids("<h2>Grad-CAM</h2><p>x</p><h2>Pseudo-masks</h2>"),
            "<h2 id=\"grad-cam\">Grad-CAM</h2><p>x</p><h2 id=\"pseudo-masks\">Pseudo-masks</h2>"
        );
    }

    #[test]
    fn the_reliability_diagram_draws_a_bar_per_non_empty_bin() {
        let bins: Vec<Value> = serde_json::from_str(
            r#"[{"from":0.0,"to":0.5,"count":0,"confidence":null,"accuracy":null},
                {"from":0.5,"to":1.0,"count":4,"confidence":0.8,"accuracy":0.75}]"#,
        )
        .expect("bins");
        let svg = reliability_svg("full", &bins);
        // The background rectangle and one bar.
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("4 predictions, accuracy 0.75"));
    }
}
