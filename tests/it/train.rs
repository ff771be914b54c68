//! `train` end to end on a tiny phantom set: every output is written, parses, and the run predicts.

use crate::common::{brightness_dataset, small_phantom, temp_dir};
use tumornet::train::hyper::Hyperparameters;
use tumornet::workflow::classifier::{train, TrainSettings};

fn args(data: std::path::PathBuf, out: std::path::PathBuf) -> TrainSettings {
    TrainSettings {
        data,
        out,
        seed: 4,
        weights: tumornet::model::backbone::BackboneChoice::RandomInit,
        hyper: Hyperparameters {
            batch_size: 8,
            validation_fraction: 0.25,
            recalibrate_batch_norm: true,
            ..Hyperparameters::default()
        },
        baseline_epochs: 2,
        finetune_epochs: 1,
        full_epochs: Some(1),
        strict: true,
        force: false,
        resume: false,
        time_limit: None,
    }
}

#[test]
fn train_writes_checkpoints_history_metrics_and_figures() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    small_phantom(&data, 4, 2, 9);
    let out = dir.path().join("run");
    std::env::set_var("TUMORNET_CACHE", dir.path().join("empty-cache"));
    let report = train(&args(data.clone(), out.clone())).expect("train");

    assert_eq!(report.stages.len(), 3);
    for stage in ["baseline", "finetune", "full"] {
        let s = &report.stages[stage];
        let test = s.test.as_ref().expect("test report");
        assert_eq!(test.images, 8);
        assert!((0.0..=1.0).contains(&test.accuracy));
        assert!(test.accuracy_ci95.0 <= test.accuracy && test.accuracy <= test.accuracy_ci95.1);
        assert!(
            out.join(stage).join("model.safetensors").is_file(),
            "{stage}"
        );
        assert!(
            out.join(format!("confusion_{stage}.png")).is_file(),
            "{stage}"
        );
    }
    let history = std::fs::read_to_string(out.join("history.csv")).expect("history");
    assert_eq!(history.lines().count(), 1 + 2 + 1 + 1, "{history}");
    assert!(history
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("baseline,1,")));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).expect("metrics"))
            .expect("parse");
    assert_eq!(metrics["weights_origin"]["kind"], "random_init");
    assert!(metrics["stages"]["finetune"]["test"]["confusion"]
        .as_array()
        .is_some_and(|r| r.len() == 4));
    assert!(std::fs::read_to_string(out.join("comparison.md"))
        .expect("table")
        .contains("Fine-tuned (layer4 + fc)"));
    assert!(out.join("curves.png").is_file());

    // predictions.csv: every test image once, a real file of the Testing split, agreeing with the final stage's
    // confusion matrix; the figure of the mistakes exactly when there are any.
    let (classes, rows) = tumornet::metrics::predictions::read_csv(&out.join("predictions.csv"))
        .expect("predictions");
    assert_eq!(classes, tumornet::data::Class::ALL.to_vec());
    assert_eq!(rows.len(), 8);
    let mut confusion = vec![vec![0u64; 4]; 4];
    for row in &rows {
        assert!(
            row.path.is_file() && row.path.starts_with(data.join("Testing")),
            "{row:?}"
        );
        assert!((row.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        confusion[row.true_class.index()][row.predicted.index()] += 1;
    }
    let expected: Vec<Vec<u64>> =
        serde_json::from_value(metrics["stages"]["full"]["test"]["confusion"].clone())
            .expect("confusion");
    assert_eq!(confusion, expected);
    assert_eq!(
        out.join("misclassified.png").is_file(),
        rows.iter().any(|r| !r.correct())
    );
    // run.json says which data the run saw: 4 + 2 images per class, and the file list's fingerprint.
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).expect("run.json"))
            .expect("parse");
    assert_eq!(run["data"]["images"], 24);
    assert_eq!(run["data"]["counts"]["Testing"]["pituitary"], 2);
    assert_eq!(
        run["data"]["file_list_sha256"].as_str().map(str::len),
        Some(64)
    );

    // `evaluate` of the same run on the same data writes the same predictions (up to the printed precision).
    let evaluation = dir.path().join("evaluation");
    tumornet::commands::evaluate::evaluate(&tumornet::cli::EvaluateArgs {
        run: out.clone(),
        data: data.clone(),
        out: evaluation.clone(),
        batch_size: 3,
        strict: true,
    })
    .expect("evaluate");
    let (_, again) = tumornet::metrics::predictions::read_csv(&evaluation.join("predictions.csv"))
        .expect("again");
    assert_eq!(again.len(), rows.len());
    for (a, b) in again.iter().zip(&rows) {
        assert_eq!(
            (&a.path, a.true_class, a.predicted),
            (&b.path, b.true_class, b.predicted)
        );
        for (p, q) in a.probabilities.iter().zip(&b.probabilities) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }

    // The final run folder is a usable model.
    let predict = tumornet::cli::PredictArgs {
        run: out.clone(),
        inputs: vec![data.join("Testing")],
        json: true,
        batch_size: 4,
        shard: "0/1".parse().expect("shard"),
        volume: Default::default(),
    };
    let outcomes = tumornet::commands::predict::predict(&predict).expect("predict");
    assert_eq!(outcomes.len(), 8);
    assert!(outcomes.iter().all(|o| o.is_ok()));

    // A second run into the same folder refuses to overwrite it.
    assert!(train(&args(data, out)).is_err());
}

#[test]
fn random_erasing_changes_the_full_stage_only_and_is_recorded() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    small_phantom(&data, 4, 1, 3);
    std::env::set_var("TUMORNET_CACHE", dir.path().join("empty-cache"));
    let run = |name: &str, erasing: Option<f64>, full: usize| {
        let mut a = args(data.clone(), dir.path().join(name));
        a.finetune_epochs = 0;
        a.baseline_epochs = 1;
        a.full_epochs = Some(full);
        a.hyper.random_erasing = erasing.unwrap_or(0.0);
        train(&a)
    };
    let plain = run("plain", None, 1).expect("train");
    let erased = run("erased", Some(1.0), 1).expect("train with erasing");
    let history = |name: &str| {
        std::fs::read_to_string(dir.path().join(name).join("history.csv")).expect("history")
    };
    let (plain_rows, erased_rows) = (history("plain"), history("erased"));
    let row = |h: &str, stage: &str| {
        h.lines()
            .find(|l| l.starts_with(stage))
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .expect("row")
    };
    // Same seed: the cached baseline stage cannot erase and learns the same; the full stage sees black boxes.
    assert_eq!(
        row(&plain_rows, "baseline,"),
        row(&erased_rows, "baseline,")
    );
    assert_ne!(row(&plain_rows, "full,"), row(&erased_rows, "full,"));
    assert_eq!(plain.config.random_erasing, None);
    let erasing = erased.config.random_erasing.expect("recorded");
    assert_eq!(
        (erasing.probability, erasing.scale, erasing.ratio),
        (1.0, (0.02, 0.33), (0.3, 3.3))
    );
    // Erasing with no full stage would do nothing: refused, naming the flag, before the run folder is made.
    let error = run("refused", Some(0.5), 0).expect_err("no full stage");
    assert!(format!("{error:#}").contains("random_erasing"), "{error:#}");
    assert!(!dir.path().join("refused").exists());
}

struct Quiet;

impl tumornet::train::Progress for Quiet {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

fn training_data(root: &std::path::Path) -> tumornet::train::TrainingData {
    use tumornet::data::scan::{scan, ScanOptions, Split};
    use tumornet::train::data::{prepare, stratified_split};
    let dataset = scan(root, ScanOptions { strict: true })
        .expect("scan")
        .dataset;
    let train: Vec<_> = dataset.split(Split::Training).collect();
    let test: Vec<_> = dataset.split(Split::Testing).collect();
    let (all, _) = prepare(&train, 224, &|| {});
    let (test, _) = prepare(&test, 224, &|| {});
    let (t, v) = stratified_split(&all.labels, 0.25, 1);
    tumornet::train::TrainingData {
        train: all.subset(&t),
        validation: all.subset(&v),
        test,
    }
}

/// Interrupted after any epoch (here: inside baseline, inside finetune, between stages), `--resume` finishes
/// with the same history and test predictions as an uninterrupted run.
#[test]
fn resume_after_an_interruption_matches_an_uninterrupted_run() {
    use tumornet::model::run::WeightsOrigin;
    use tumornet::train::checkpoint::read_state;
    use tumornet::train::config::TrainConfig;
    use tumornet::train::{run_protocol, Checkpointing};

    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    small_phantom(&data_dir, 4, 2, 3);
    let data = training_data(&data_dir);
    let mut protocol = TrainConfig::protocol(7, 2, 2, 1);
    protocol.batch_size = 8;
    // One starting model for every run (a fixed file, so no global RNG is involved).
    let start = dir.path().join("start.safetensors");
    let device = tumornet::device::training();
    let initial = tumornet::model::ResNet18::new(4, &device);
    tumornet::model::weights::save_torchvision(&initial, &start, &[]).expect("save start");
    let load = || {
        tumornet::model::weights::load_torchvision(
            tumornet::model::ResNet18::new(4, &device),
            &start,
        )
        .expect("load")
        .0
    };
    let origin = WeightsOrigin::RandomInit { seed: 7 };

    let run_once = |run: &std::path::Path, stop: Option<(&'static str, usize)>| {
        let mut history = Vec::new();
        let trained = std::cell::Cell::new(0usize);
        let mut after = |stage: &str, epoch: usize| {
            trained.set(trained.get() + 1);
            if stop == Some((stage, epoch)) {
                anyhow::bail!("interrupted");
            }
            Ok(())
        };
        let resume = read_state(run).expect("state");
        let checkpointing = Checkpointing {
            run,
            resume,
            weights_origin: origin.clone(),
            after_epoch: &mut after,
            deadline: None,
        };
        let mut on_stage = |outcome: &tumornet::train::StageOutcome| {
            let config = tumornet::model::run::RunConfig::new(
                outcome.config.stage.name(),
                origin.clone(),
                7,
            );
            tumornet::model::run::save_run(
                &run.join(outcome.config.stage.name()),
                &outcome.model,
                &config,
            )?;
            Ok(())
        };
        let result = run_protocol(
            load(),
            &protocol,
            &data,
            &Quiet,
            &mut history,
            checkpointing,
            &mut on_stage,
        );
        result.map(|o| (o, history, trained.get()))
    };

    let straight = dir.path().join("straight");
    let (expected, expected_history, all_epochs) =
        run_once(&straight, None).expect("uninterrupted");
    assert_eq!(all_epochs, 5);
    for stop in [("baseline", 1), ("finetune", 1), ("finetune", 2)] {
        let run = dir.path().join(format!("{}-{}", stop.0, stop.1));
        assert!(
            run_once(&run, Some(stop)).is_err(),
            "{stop:?}: the hook interrupts"
        );
        let state = read_state(&run)
            .expect("read")
            .expect("a checkpoint exists");
        assert_eq!(
            state.history.len(),
            if stop.0 == "baseline" {
                stop.1
            } else {
                2 + stop.1
            }
        );
        let (resumed, history, trained) = run_once(&run, None).expect("resumed");
        assert_eq!(
            trained,
            5 - state.history.len(),
            "{stop:?}: only the epochs after the checkpoint run again"
        );
        assert_eq!(history.len(), expected_history.len(), "{stop:?}");
        for (a, b) in history.iter().zip(&expected_history) {
            assert_eq!((&a.stage, a.epoch), (&b.stage, b.epoch));
            assert!(
                (a.train_loss - b.train_loss).abs() < 1e-4,
                "{stop:?} {a:?} {b:?}"
            );
            assert!(
                (a.validation_accuracy - b.validation_accuracy).abs() < 1e-9,
                "{stop:?} {a:?} {b:?}"
            );
        }
        for (a, b) in resumed.iter().zip(&expected) {
            let (pa, pb) = (
                &a.test.as_ref().expect("test").probabilities,
                &b.test.as_ref().expect("test").probabilities,
            );
            let diff = pa
                .iter()
                .flatten()
                .zip(pb.iter().flatten())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-4,
                "{stop:?} {}: test probabilities differ by {diff}",
                a.config.stage.name()
            );
        }
    }
}

/// The binary killed with SIGKILL in the middle of training, then `--resume`d: it continues from the last complete
/// epoch and ends with the same history and test metrics as an uninterrupted run with the same seed.
#[test]
fn sigkill_then_resume_matches_an_uninterrupted_run() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    small_phantom(&data, 4, 2, 8);
    let train = |out: &std::path::Path| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tumornet"));
        command
            .args(["-q", "train"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args([
                "--seed",
                "4",
                "--baseline-epochs",
                "2",
                "--finetune-epochs",
                "3",
                "--full-epochs",
                "2",
                "--set",
                "batch_size=8",
                "--set",
                "validation_fraction=0.25",
            ])
            .env("TUMORNET_CACHE", dir.path().join("no-cache"));
        command
    };
    let whole = dir.path().join("whole");
    let out = train(&whole).output().expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let killed = dir.path().join("killed");
    let mut child = train(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let state = killed.join("checkpoint/state.json");
    let epochs_done = || -> usize {
        std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["history"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while epochs_done() < 3 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no third epoch within 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = epochs_done();
    assert!(
        (3..7).contains(&at_kill),
        "killed after {at_kill} epochs of 7"
    );
    assert!(
        !killed.join("metrics.json").exists(),
        "killed before the end"
    );

    // Resumed as a user would after a crash: no flags but --resume; the saved configuration decides, and the
    // random-init note names the run's own `full` epochs (2), not the default of a bare command (5).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tumornet"))
        .args(["-q", "train"])
        .arg(&data)
        .arg("--out")
        .arg(&killed)
        .arg("--resume")
        .env("TUMORNET_CACHE", dir.path().join("no-cache"))
        .output()
        .expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("runs too (2 epochs)"), "{stderr}");
    // Same history (the timing columns aside) and the same test metrics.
    let history = |run: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(run.join("history.csv"))
            .expect("history")
            .lines()
            .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(history(&whole), history(&killed));
    let metrics = |run: &std::path::Path| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("metrics.json")).expect("metrics"))
                .expect("json");
        v["stages"]
            .as_object()
            .expect("stages")
            .iter()
            .map(|(k, s)| (k.clone(), s["test"].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    assert_eq!(metrics(&whole), metrics(&killed));
}

/// Training learns what it can learn: on images whose class is their brightness, the baseline stage's training
/// loss falls epoch by epoch and the test accuracy ends far above chance (25 %). A sign error in the loss, a
/// frozen optimizer or labels shuffled against their images would leave it near chance.
#[test]
fn training_learns_a_task_that_can_be_learned() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    brightness_dataset(&data, 12, 6);
    std::env::set_var("TUMORNET_CACHE", dir.path().join("empty-cache"));
    let mut settings = args(data, dir.path().join("run"));
    // Frozen random features, their BatchNorm statistics re-estimated on the images (so they are standardised),
    // and a linear head: the baseline stage alone can learn this.
    settings.baseline_epochs = 20;
    settings.finetune_epochs = 0;
    settings.full_epochs = Some(0);
    settings.hyper.baseline_lr = 1e-2;
    settings.hyper.recalibrate_batch_norm = true;
    let report = train(&settings).expect("train");
    let history = std::fs::read_to_string(dir.path().join("run/history.csv")).expect("history");
    let losses: Vec<f64> = history
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(3)
                .expect("train_loss")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(losses.len(), 20, "{history}");
    assert!(
        losses[19] < 0.5 * losses[0],
        "the training loss did not fall: {losses:?}"
    );
    let test = report.stages["baseline"].test.as_ref().expect("test");
    assert!(test.accuracy >= 0.75, "test accuracy {}", test.accuracy);
}
