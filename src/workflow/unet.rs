//! Training a U-Net (encoder = a classifier run's ResNet18) on CAM pseudo-masks (or, as a fully supervised
//! reference, on the true masks), in self-training rounds: after each round the U-Net's own masks of the
//! training images, gated by the image's class, become the next round's targets. After every round the masks
//! are scored against the true masks where the dataset has them. Writes a segmentation run folder
//! ([`crate::train::segrun`]).

use super::pseudo_masks::{make_pseudo_masks, PseudoSettings};
use crate::data::decode::{decode_file, read_binary_mask, read_mask};
use crate::data::preprocess::resize_rgb;
use crate::data::scan::Split;
use crate::data::shard::Shard;
use crate::data::Class;
use crate::metrics::one_place as distance;
use crate::metrics::segmentation::{MaskCounts, MaskScore, SegmentationScores, SegmentationSums};
use crate::metrics::three_places as fmt;
use crate::model::run;
use crate::model::unet::{save_unet, UNet};
use crate::progress::progress_bar;
use crate::pseudo::masker::Masker;
use crate::pseudo::{read_manifest, Gate, PseudoEntry, PseudoManifest, Recipe, SIDE};
use crate::train::config::Schedule;
use crate::train::data::stratified_split;
use crate::train::segmentation::{
    image_mask, predict_logits, score_logits, train_round, MaskRule, RoundConfig, SegData,
};
use crate::train::segrun::{
    RoundMetrics, SegRun, CLASSIFIER_DIR, FORMAT_VERSION, SEG_CONFIG, UNET_FILE,
};
use crate::train::unet_config::{SegConfig, Supervision};
use crate::viz::{grid, masks};
use anyhow::Context;
use burn::module::Module;
use image::RgbImage;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to train, on what, and where to write it.
#[derive(Debug, Clone)]
pub struct UnetSettings {
    /// The classifier run: its ResNet18 becomes the encoder and its predictions gate the masks.
    pub run: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    /// A pseudo-mask folder; when `None` the masks are made into `OUT/pseudo-masks` by `recipe`.
    pub pseudo: Option<PathBuf>,
    pub recipe: Recipe,
    pub config: SegConfig,
    pub seed: u64,
    /// Cases in `gallery.png`.
    pub gallery: usize,
}

/// A prepared image of the manifest.
struct Item {
    entry: PseudoEntry,
    image: RgbImage,
    pseudo: Vec<u8>,
    truth: Option<Vec<bool>>,
}

/// The pseudo-mask folder to train on: the given one, or one made by the recipe into `OUT/pseudo-masks`.
fn pseudo_folder(settings: &UnetSettings) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &settings.pseudo {
        return Ok(dir.clone());
    }
    let dir = settings.out.join("pseudo-masks");
    tracing::info!(
        "no pseudo-mask folder given: making them into {} with the recipe (gate {}, {} on {}, threshold {})",
        dir.display(),
        settings.recipe.gate.name(),
        settings.recipe.cam.method.name(),
        settings.recipe.cam.layer.name(),
        settings.recipe.mask.threshold
    );
    make_pseudo_masks(&PseudoSettings {
        run: settings.run.clone(),
        data: settings.data.clone(),
        out: dir.clone(),
        recipe: settings.recipe.clone(),
        shard: Shard::ALL,
        batch_size: 16,
        gallery: 12,
        save_cams: false,
    })
    .context("making the pseudo-masks")?;
    Ok(dir)
}

/// The manifest's entries to train and score on, and how many `drop_unconfirmed` left out.
fn usable_entries<'a>(
    manifest: &'a PseudoManifest,
    config: &SegConfig,
    dir: &Path,
) -> anyhow::Result<(Vec<&'a PseudoEntry>, usize)> {
    anyhow::ensure!(
        config.drop_unconfirmed.is_none() || manifest.confirmed.is_some(),
        "{}: no deletion records; drop_unconfirmed needs pseudo-masks made with occlusion.confirm_by_deletion",
        dir.display()
    );
    let entries: Vec<&PseudoEntry> = manifest
        .entries
        .iter()
        .filter(|e| !config.drop_unconfirmed.is_some_and(|f| unconfirmed(e, f)))
        .collect();
    let dropped = manifest.entries.len() - entries.len();
    Ok((entries, dropped))
}

/// Train, score and save a segmentation run.
pub fn train_unet(settings: &UnetSettings) -> anyhow::Result<SegRun> {
    let start = Instant::now();
    let config = &settings.config;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("U-Net settings: {e}"))?;
    // Loaded on the host: the U-Net is built there (its decoder initialised from the seed) and then moved.
    let host = crate::device::host();
    let (classifier, classifier_config) = run::load_run(&settings.run, &host)
        .with_context(|| format!("loading {}", settings.run.display()))?;
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let pseudo_dir = pseudo_folder(settings)?;
    let manifest = read_manifest(&pseudo_dir)?;
    let (entries, dropped) = usable_entries(&manifest, config, &pseudo_dir)?;
    let items = prepare(&entries, &pseudo_dir)?;
    let (train_items, test_items): (Vec<&Item>, Vec<&Item>) =
        items.iter().partition(|i| i.entry.split == Split::Training);
    anyhow::ensure!(
        !train_items.is_empty(),
        "{}: no training images in the pseudo-mask manifest",
        pseudo_dir.display()
    );
    if config.supervision == Supervision::True {
        anyhow::ensure!(
            train_items.iter().all(|i| i.truth.is_some()),
            "supervision = \"true\" needs a true mask for every training image (a `masks/` tree)"
        );
    }
    let gate_kind = manifest.recipe.gate;
    let gate = move |e: &PseudoEntry| match gate_kind {
        Gate::Label => e.class.is_tumour(),
        Gate::Prediction => e.predicted.is_tumour(),
    };
    let mut data = SegData {
        side: SIDE as usize,
        images: train_items.iter().map(|i| i.image.clone()).collect(),
        targets: train_items
            .iter()
            .map(|i| match (&config.supervision, &i.truth) {
                (Supervision::True, Some(t)) => crate::cam::pseudo::to_stored(t),
                _ => i.pseudo.clone(),
            })
            .collect(),
    };
    let labels: Vec<usize> = train_items.iter().map(|i| i.entry.class.index()).collect();
    let (train, validation) = stratified_split(&labels, config.validation_fraction, settings.seed);

    // The decoder is initialised on the host from the seed, then moved (see `device::from_host`).
    host.seed(settings.seed);
    let unet = UNet::new(classifier.clone(), &host);
    let mut unet = crate::device::from_host(unet, &crate::device::inference()).train();
    if !config.train_encoder {
        unet.encoder = unet.encoder.freeze();
    }
    let rule = config.mask_rule();
    let checks = match rule.confirm && test_items.iter().any(|i| i.truth.is_some()) {
        true => Some(TestChecks::make(
            &classifier,
            &classifier_config,
            &manifest.recipe,
            &test_items,
        )?),
        false => None,
    };
    let mut history = Vec::new();
    let mut round_metrics = Vec::new();
    let total: usize = (1..=config.rounds)
        .map(|r| config.epochs_of(r))
        .sum::<usize>()
        * train.len();
    let bar = progress_bar(total as u64, "train-seg");
    let mut model = unet.clone().valid();
    for round in 1..=config.rounds {
        let round_config = RoundConfig {
            round,
            epochs: config.epochs_of(round),
            learning_rate: config.learning_rate,
            schedule: if config.cosine_lr {
                Schedule::Cosine
            } else {
                Schedule::Constant
            },
            batch_size: config.batch_size,
            seed: settings.seed,
            threshold: config.threshold,
            dice_loss: config.dice_loss,
            frozen_encoder: !config.train_encoder,
        };
        model = train_round(
            unet,
            &data,
            &train,
            &validation,
            &round_config,
            &mut history,
            &|n| bar.inc(n),
        )?;
        // The U-Net's own gated masks of the training images, made once: scored against the true masks and, before
        // a later round, its targets.
        let next_round = round < config.rounds;
        let train_masks: Vec<Vec<bool>> =
            match next_round || train_items.iter().any(|i| i.truth.is_some()) {
                true => predict_logits(&model, &data.images, 32, rule.flip)?
                    .iter()
                    .zip(&train_items)
                    .map(|(logits, item)| image_mask(logits, &item.image, &rule, gate(&item.entry)))
                    .collect(),
                false => Vec::new(),
            };
        let metrics = round_scores(
            round,
            &model,
            &train_items,
            &data,
            &train_masks,
            &test_items,
            &rule,
            &gate,
            checks.as_ref(),
        )?;
        tracing::info!(
            "round {round}: targets vs truth Dice {} | U-Net train {} | test (label gate) {}",
            fmt(metrics.targets_vs_truth.and_then(|s| s.dice)),
            fmt(metrics.unet_train_vs_truth.and_then(|s| s.dice)),
            fmt(metrics.test_label_gate.get("all").and_then(|s| s.dice)),
        );
        round_metrics.push(metrics);
        // The next round's targets: the U-Net's own gated masks (refined, largest component, holes filled).
        if next_round {
            for (target, mask) in data.targets.iter_mut().zip(&train_masks) {
                *target = crate::cam::pseudo::to_stored(mask);
            }
        }
        unet = model.clone().train();
        if !config.train_encoder {
            unet.encoder = unet.encoder.freeze();
        }
    }
    bar.finish_and_clear();

    let seg = SegRun {
        format_version: FORMAT_VERSION,
        classifier: classifier_config.clone(),
        run: settings.run.clone(),
        data: settings.data.clone(),
        pseudo: pseudo_dir.clone(),
        pseudo_recipe: manifest.recipe.clone(),
        side: SIDE,
        config: config.clone(),
        dropped_unconfirmed: dropped,
        seed: settings.seed,
        history,
        round_metrics,
        reference_disc: disc_reference(&train_items, &test_items, SIDE as usize),
        seconds: start.elapsed().as_secs_f64(),
        created_by: format!("tumornet {}", env!("CARGO_PKG_VERSION")),
    };
    save_run(settings, &seg, &model, &classifier, &test_items)?;
    Ok(seg)
}

/// Write the run folder: the U-Net, the classifier copy, `seg.json`, `metrics.md` and the gallery.
fn save_run(
    settings: &UnetSettings,
    seg: &SegRun,
    model: &UNet,
    classifier: &crate::model::ResNet18,
    test_items: &[&Item],
) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(seg)?;
    save_unet(
        model,
        &settings.out.join(UNET_FILE),
        &[("tumornet_seg", json.clone())],
    )?;
    run::save_run(
        &settings.out.join(CLASSIFIER_DIR),
        classifier,
        &seg.classifier,
    )?;
    let path = settings.out.join(SEG_CONFIG);
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    let path = settings.out.join("metrics.md");
    std::fs::write(&path, metrics_table(seg))
        .with_context(|| format!("writing {}", path.display()))?;
    write_gallery(
        &settings.out.join("gallery.png"),
        model,
        test_items,
        &seg.mask_rule(),
        settings.gallery,
    )
}

/// Whether `drop_unconfirmed = FRACTION` leaves a Training entry out: its deletion record says that blacking out
/// the kept mask left more than `fraction` of the class probability.
fn unconfirmed(entry: &PseudoEntry, fraction: f32) -> bool {
    entry.split == Split::Training
        && entry.deletion.as_ref().is_some_and(|d| {
            d.kept_candidate()
                .is_some_and(|c| c.probability_after > fraction * d.probability)
        })
}

/// Decode every entry's image at 128×128 with its pseudo-mask and true mask.
fn prepare(entries: &[&PseudoEntry], pseudo_dir: &Path) -> anyhow::Result<Vec<Item>> {
    let bar = progress_bar(entries.len() as u64, "decode");
    let items: Vec<anyhow::Result<Item>> = entries
        .par_iter()
        .map(|entry| {
            let image = decode_file(&entry.image)?;
            let image = resize_rgb(&image, SIDE, SIDE)?;
            let pseudo =
                read_mask(&pseudo_dir.join(&entry.mask), SIDE).map_err(anyhow::Error::msg)?;
            let truth = match &entry.true_mask {
                Some(path) => Some(read_binary_mask(path, SIDE).map_err(anyhow::Error::msg)?),
                None => None,
            };
            bar.inc(1);
            Ok(Item {
                entry: (*entry).clone(),
                image,
                pseudo,
                truth,
            })
        })
        .collect();
    bar.finish_and_clear();
    items.into_iter().collect()
}

#[allow(clippy::too_many_arguments)]
fn round_scores(
    round: usize,
    model: &UNet,
    train_items: &[&Item],
    data: &SegData,
    train_masks: &[Vec<bool>],
    test_items: &[&Item],
    rule: &MaskRule,
    gate: &dyn Fn(&PseudoEntry) -> bool,
    checks: Option<&TestChecks>,
) -> anyhow::Result<RoundMetrics> {
    let side = data.side;
    let mut targets = SegmentationSums::default();
    let mut unet_train = SegmentationSums::default();
    let mut any_truth = false;
    for ((item, target), predicted) in train_items.iter().zip(&data.targets).zip(train_masks) {
        let Some(truth) = &item.truth else { continue };
        any_truth = true;
        let target: Vec<bool> = target
            .iter()
            .map(|v| *v > crate::cam::pseudo::IGNORE)
            .collect();
        targets.add_image(&MaskScore::between(&target, truth, side), None);
        unet_train.add_image(&MaskScore::between(predicted, truth, side), None);
    }
    let images: Vec<RgbImage> = test_items.iter().map(|i| i.image.clone()).collect();
    let test_logits = predict_logits(model, &images, 32, rule.flip)?;
    let mut by_label: BTreeMap<String, SegmentationSums> = BTreeMap::new();
    let mut by_prediction: BTreeMap<String, SegmentationSums> = BTreeMap::new();
    let mut vs_pseudo = SegmentationSums::default();
    // Per tumour image, the label-gated mask's Dice (for the interval of the mean).
    let mut tumour_dice = Vec::new();
    let mut alone = SegmentationSums::default();
    let mut kept = [0usize; 2];
    for (index, (item, logits)) in test_items.iter().zip(&test_logits).enumerate() {
        let (sum, pixels, _) = score_logits(logits, &item.pseudo, side, rule.threshold);
        let pseudo_fg: Vec<bool> = item
            .pseudo
            .iter()
            .map(|v| *v > crate::cam::pseudo::IGNORE)
            .collect();
        // One U-Net tumour mask per image (the refinement is the costly part) and, with the check, the mask the
        // classifier confirms. Each gate keeps or empties it.
        let mask = image_mask(logits, &item.image, rule, true);
        let checked = match checks {
            Some(c) => {
                let (m, unet_kept) = c.checked(index, &mask)?;
                kept[usize::from(!unet_kept)] += usize::from(item.entry.class.is_tumour());
                m
            }
            None => mask.clone(),
        };
        let gated = |tumour: bool, mask: &[bool]| match tumour {
            true => mask.to_vec(),
            false => vec![false; mask.len()],
        };
        let gated_by_run = gated(gate(&item.entry), &mask);
        vs_pseudo.add_counts(
            &MaskCounts::from_masks(&gated_by_run, &pseudo_fg, None),
            Some((sum, pixels)),
        );
        let Some(truth) = &item.truth else { continue };
        let reference: Vec<u8> = crate::cam::pseudo::to_stored(truth);
        let (bce, pixels, _) = score_logits(logits, &reference, side, rule.threshold);
        if checks.is_some() {
            let score =
                MaskScore::between(&gated(item.entry.class.is_tumour(), &mask), truth, side);
            alone.add_image(&score, Some((bce, pixels)));
        }
        for (sums, tumour, label_gate) in [
            (&mut by_label, item.entry.class.is_tumour(), true),
            (&mut by_prediction, item.entry.predicted.is_tumour(), false),
        ] {
            let score = MaskScore::between(&gated(tumour, &checked), truth, side);
            if label_gate {
                tumour_dice.extend(score.counts.lesion_dice());
            }
            sums.entry(item.entry.class.to_string())
                .or_default()
                .add_image(&score, Some((bce, pixels)));
        }
    }
    let finish = |sums: BTreeMap<String, SegmentationSums>| {
        let mut all = SegmentationSums::default();
        let mut out: BTreeMap<String, SegmentationScores> = sums
            .iter()
            .map(|(class, s)| {
                all.merge(s);
                (class.clone(), s.scores())
            })
            .collect();
        if all.images > 0 {
            out.insert("all".into(), all.scores());
        }
        out
    };
    Ok(RoundMetrics {
        round,
        targets_vs_truth: any_truth.then(|| targets.scores()),
        unet_train_vs_truth: any_truth.then(|| unet_train.scores()),
        test_label_gate: finish(by_label),
        test_prediction_gate: finish(by_prediction),
        test_vs_pseudo: (vs_pseudo.images > 0).then(|| vs_pseudo.scores()),
        test_dice_interval: crate::metrics::intervals::mean_dice_interval(&tumour_dice),
        test_unet_alone: checks.map(|_| alone.scores()),
        test_kept: checks.map(|_| kept),
    })
}

/// The recipe's masks of the Testing images, made once, against which each round's U-Net masks are checked
/// (the U-Net setting `confirm`) exactly as `segment` checks them: for the class the classifier predicts, whatever
/// the label; an image predicted no tumour keeps the U-Net's mask.
struct TestChecks {
    masker: Masker,
    /// Per Testing item, where the classifier predicts a tumour: what its mask is checked against.
    items: Vec<Option<TestCheck>>,
}

/// One Testing image's side of the check.
struct TestCheck {
    /// The image at the classifier's input size.
    input: RgbImage,
    /// The predicted class (an index of the classifier's outputs) and its probability.
    target: usize,
    base: f32,
    /// The recipe's mask of the image for that class.
    recipe: Vec<bool>,
}

impl TestChecks {
    fn make(
        classifier: &crate::model::ResNet18,
        config: &run::RunConfig,
        recipe: &Recipe,
        test_items: &[&Item],
    ) -> anyhow::Result<TestChecks> {
        let model = crate::device::from_host(classifier.clone(), &crate::device::inference());
        let mut checks = TestChecks {
            masker: Masker::new(&model, config.clone(), recipe.clone(), true),
            items: Vec::with_capacity(test_items.len()),
        };
        let bar = progress_bar(test_items.len() as u64, "recipe masks for the check");
        for items in test_items.chunks(16) {
            checks.add(items)?;
            bar.inc(items.len() as u64);
        }
        bar.finish_and_clear();
        Ok(checks)
    }

    /// The recipe's masks of a chunk of items (decoded again: the check sees the image as `segment` does).
    fn add(&mut self, items: &[&Item]) -> anyhow::Result<()> {
        let config = &self.masker.config;
        let size = config.input_size;
        let originals: Vec<RgbImage> = items
            .par_iter()
            .map(|i| decode_file(&i.entry.image).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?;
        let inputs: Vec<RgbImage> = originals
            .par_iter()
            .map(|i| resize_rgb(i, size, size).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?;
        let device = crate::device::inference();
        let predicted: Vec<Option<(usize, f32)>> = self
            .masker
            .frozen
            .as_ref()
            .context("the masker's forward-only classifier")?
            .probabilities(&inputs, &device)?
            .iter()
            .map(|p| crate::metrics::argmax(p))
            .map(|(best, p)| config.classes[best].is_tumour().then_some((best, p)))
            .collect();
        let wanted: Vec<(usize, usize, f32)> = predicted
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.map(|(t, base)| (k, t, base)))
            .collect();
        let images: Vec<RgbImage> = wanted
            .iter()
            .map(|(k, _, _)| originals[*k].clone())
            .collect();
        let targets: Vec<usize> = wanted.iter().map(|(_, t, _)| *t).collect();
        let mut made: Vec<Option<TestCheck>> = (0..items.len()).map(|_| None).collect();
        for ((k, target, base), recipe) in wanted
            .into_iter()
            .zip(self.masker.tumour_masks(&images, &targets)?)
        {
            made[k] = Some(TestCheck {
                input: inputs[k].clone(),
                target,
                base,
                recipe,
            });
        }
        self.items.extend(made);
        Ok(())
    }

    /// Item `index`'s U-Net tumour mask checked: the mask the classifier confirms, and whether it is the
    /// U-Net's.
    fn checked(&self, index: usize, mask: &[bool]) -> anyhow::Result<(Vec<bool>, bool)> {
        match &self.items[index] {
            Some(c) => {
                self.masker
                    .choose(&c.input, c.target, c.base, mask.to_vec(), c.recipe.clone())
            }
            None => Ok((mask.to_vec(), true)),
        }
    }
}

/// Per-round scores as markdown.
pub fn metrics_table(seg: &SegRun) -> String {
    let mut out = format!(
        "U-Net trained on {}{} ({} round(s); encoder {}{}). Dice and IoU: means over tumour images against the \
         true masks; pooled Dice sums the pixels of all images; HD95 and ASD: mean 95th-percentile Hausdorff and \
         average surface distance in pixels of the 128×128 mask over tumour images given a non-empty mask (MONAI's \
         symmetric definitions); empty correct: no-tumour images given an empty mask; BCE: of the U-Net's own \
         probabilities. \
         Targets = what the round trained on (round 1: the pseudo-masks).\n\n\
         | round | masks | images | Dice | IoU | pooled Dice | HD95 px | ASD px | pixel acc. | BCE | empty correct |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        match seg.config.supervision {
            Supervision::Pseudo => "CAM pseudo-masks",
            Supervision::True => "the true masks (fully supervised reference)",
        },
        match seg.config.drop_unconfirmed {
            Some(f) => format!(
                ", {} Training images left out whose pseudo-mask, blacked out, left more than {f} of the class \
                 probability",
                seg.dropped_unconfirmed
            ),
            None => String::new(),
        },
        seg.config.rounds,
        if seg.config.train_encoder { "trained" } else { "frozen" },
        match seg.config.refine {
            0 => String::new(),
            n => format!("; masks reshaped by the image's grey levels, {n} EM steps"),
        } + if seg.config.confirm {
            "; tumour masks checked against the recipe's"
        } else {
            ""
        }
    );
    let row = |out: &mut String, round: usize, what: &str, s: &SegmentationScores| {
        out.push_str(&format!(
            "| {round} | {what} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.images,
            fmt(s.dice),
            fmt(s.iou),
            fmt(s.pooled_dice),
            distance(s.hd95),
            distance(s.asd),
            fmt(s.pixel_accuracy),
            fmt(s.bce),
            fmt(s.empty_correct)
        ));
    };
    for m in &seg.round_metrics {
        if let Some(s) = &m.targets_vs_truth {
            row(&mut out, m.round, "targets, Training", s);
        }
        if let Some(s) = &m.unet_train_vs_truth {
            row(&mut out, m.round, "U-Net, Training", s);
        }
        let tested = match m.test_unet_alone {
            Some(s) => {
                row(&mut out, m.round, "U-Net alone, Testing (label gate)", &s);
                "checked masks"
            }
            None => "U-Net",
        };
        if let Some(s) = m.test_label_gate.get("all") {
            row(
                &mut out,
                m.round,
                &format!("{tested}, Testing (label gate)"),
                s,
            );
        }
        if let Some(s) = m.test_prediction_gate.get("all") {
            row(
                &mut out,
                m.round,
                &format!("{tested}, Testing (classifier gate)"),
                s,
            );
        }
        if let Some(s) = &m.test_vs_pseudo {
            row(&mut out, m.round, "U-Net vs pseudo-masks, Testing", s);
        }
    }
    if let Some(s) = &seg.reference_disc {
        row(
            &mut out,
            0,
            "centred disc of the mean lesion area, Testing",
            s,
        );
        out.push_str(
            "
Round 0 is the trivial reference: the same disc at the centre of every tumour image, its area the \
             mean true lesion area of the Training images. A useful U-Net beats it.\n",
        );
    }
    if let Some(last) = seg.round_metrics.last() {
        if let Some([unet, recipe]) = last.test_kept {
            out.push_str(&format!(
                "\nChecked masks (the U-Net setting `confirm`, as `segment` and `serve` give them): each tumour \
                 image's U-Net mask or the pseudo-mask recipe's mask of the same image, whichever the classifier \
                 confirms — each is blacked out of the image, and the one whose removal takes its evidence away is \
                 kept (the recipe's deletion rule). Last round, Testing, label gate: the U-Net's mask kept for \
                 {unet} tumour images, the recipe's for {recipe}.\n"
            ));
        }
        if let Some((lo, hi)) = last.test_dice_interval {
            out.push_str(&format!(
                "\nLast round, Testing, label gate: mean Dice 95 % interval {lo:.3}–{hi:.3} (percentile bootstrap \
                 of the tumour images, 2,000 resamples).\n"
            ));
        }
        out.push_str("\nLast round, Testing, per class (label gate):\n\n| class | images | Dice | IoU | pooled Dice | HD95 px | ASD px | pixel acc. | empty correct |\n|---|---|---|---|---|---|---|---|---|\n");
        for (class, s) in &last.test_label_gate {
            out.push_str(&format!(
                "| {class} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.images,
                fmt(s.dice),
                fmt(s.iou),
                fmt(s.pooled_dice),
                distance(s.hd95),
                distance(s.asd),
                fmt(s.pixel_accuracy),
                fmt(s.empty_correct)
            ));
        }
    }
    out
}

/// The trivial reference: a centred disc of the mean true lesion area of the Training tumour images, scored on the
/// Testing images (no-tumour images get an empty mask, as the label gate gives them). `None` without true masks.
fn disc_reference(
    train_items: &[&Item],
    test_items: &[&Item],
    side: usize,
) -> Option<SegmentationScores> {
    let areas: Vec<f64> = train_items
        .iter()
        .filter(|i| i.entry.class.is_tumour())
        .filter_map(|i| i.truth.as_ref())
        .map(|t| t.iter().filter(|p| **p).count() as f64)
        .collect();
    if areas.is_empty() {
        return None;
    }
    let disc = crate::metrics::segmentation::centred_disc(
        side,
        areas.iter().sum::<f64>() / areas.len() as f64,
    );
    let empty = vec![false; side * side];
    let mut sums = SegmentationSums::default();
    let mut any = false;
    for item in test_items {
        let Some(truth) = &item.truth else { continue };
        any = true;
        let predicted = if item.entry.class.is_tumour() {
            &disc
        } else {
            &empty
        };
        sums.add_image(&MaskScore::between(predicted, truth, side), None);
    }
    any.then(|| sums.scores())
}

/// Testing tumour cases: image | true mask | pseudo-mask | U-Net mask (label gate).
fn write_gallery(
    path: &Path,
    model: &UNet,
    test_items: &[&Item],
    rule: &MaskRule,
    count: usize,
) -> anyhow::Result<()> {
    let per_class = count.div_ceil(3).max(1);
    let mut chosen: Vec<&Item> = Vec::new();
    for class in Class::ALL.iter().filter(|c| c.is_tumour()) {
        chosen.extend(
            test_items
                .iter()
                .filter(|i| i.entry.class == *class)
                .take(per_class)
                .copied(),
        );
    }
    chosen.truncate(count);
    if chosen.is_empty() {
        return Ok(());
    }
    let images: Vec<RgbImage> = chosen.iter().map(|i| i.image.clone()).collect();
    let logits = predict_logits(model, &images, 32, rule.flip)?;
    let side = SIDE as usize;
    let cases: Vec<(Class, [RgbImage; 4])> = chosen
        .iter()
        .zip(&logits)
        .map(|(item, z)| {
            let truth: Vec<u8> = item
                .truth
                .as_ref()
                .map(|t| crate::cam::pseudo::to_stored(t))
                .unwrap_or_else(|| vec![0; side * side]);
            let predicted: Vec<u8> =
                crate::cam::pseudo::to_stored(&image_mask(z, &item.image, rule, true));
            (
                item.entry.class,
                [
                    item.image.clone(),
                    masks::mask_tile(&truth, SIDE, SIDE),
                    masks::mask_tile(&item.pseudo, SIDE, SIDE),
                    masks::mask_tile(&predicted, SIDE, SIDE),
                ],
            )
        })
        .collect();
    grid::save_case_gallery(
        path,
        "Testing: image | true mask | pseudo-mask | U-Net mask",
        &cases,
        &["image", "true mask", "pseudo-mask", "U-Net"],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudo::manifest::{DeletionCandidate, DeletionRecord};

    #[test]
    fn only_training_masks_whose_removal_left_too_much_probability_are_unconfirmed() {
        let candidate = |probability_after: f32| DeletionCandidate {
            map: "cam".into(),
            area: 100,
            probability_after,
            dice: None,
        };
        // p = 0.8 before; the kept candidate (index 1) leaves 0.2 = a quarter of it, the other 0.01.
        let record = DeletionRecord {
            probability: 0.8,
            kept: 1,
            candidates: vec![candidate(0.01), candidate(0.2)],
        };
        let entry = |split: Split, deletion: Option<DeletionRecord>| PseudoEntry {
            image: "x.png".into(),
            split,
            class: Class::Pituitary,
            predicted: Class::Pituitary,
            confidence: 0.8,
            target: Class::Pituitary,
            mask: "masks/x.png".into(),
            true_mask: None,
            dice: None,
            deletion,
        };
        let training = entry(Split::Training, Some(record.clone()));
        assert!(unconfirmed(&training, 0.1));
        assert!(unconfirmed(&training, 0.24));
        assert!(!unconfirmed(&training, 0.25));
        assert!(!unconfirmed(&training, 0.5));
        // Testing images are scored, never left out; an image without a record is kept.
        assert!(!unconfirmed(&entry(Split::Testing, Some(record)), 0.1));
        assert!(!unconfirmed(&entry(Split::Training, None), 0.1));
    }
}
