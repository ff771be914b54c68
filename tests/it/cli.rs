//! The binary: exit codes and messages a user sees.

use crate::common::{temp_dir, tumornet};

#[test]
fn synth_then_inspect_through_the_binary() {
    let dir = temp_dir();
    let data = dir.path().join("p");
    let out = tumornet()
        .args([
            "synth",
            "--train",
            "2",
            "--test",
            "1",
            "--min-size",
            "128",
            "--max-size",
            "160",
            "--seed",
            "3",
        ])
        .arg(&data)
        .output()
        .expect("run synth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Wrote 12 images"));

    // A second run into the same folder refuses to overwrite.
    let again = tumornet()
        .args(["synth", "--train", "1", "--test", "1"])
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let report = dir.path().join("report");
    let out = tumornet()
        .arg("inspect")
        .arg(&data)
        .arg("--out")
        .arg(&report)
        .output()
        .expect("run inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("12 images"), "{stdout}");
    assert!(report.join("analysis.png").is_file());
}

#[test]
fn bad_input_exits_with_code_3_and_names_the_folder() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dataset");
    let out = tumornet()
        .arg("inspect")
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dataset"));

    let out = tumornet()
        .args(["synth", "--min-size", "900", "--max-size", "300"])
        .arg(dir.path().join("x"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_quick_runs_the_pipeline_end_to_end_from_the_phantom_backbone() {
    let dir = temp_dir();
    let out_dir = dir.path().join("demo");
    let out = tumornet()
        .args(["-q", "demo", "--quick", "--out"])
        .arg(&out_dir)
        // No cached ImageNet weights may leak in from the machine: an empty cache, so the built-in phantom
        // backbone is the start.
        .env("TUMORNET_CACHE", dir.path().join("cache"))
        .output()
        .expect("demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).expect("summary.md");
    assert!(summary.contains("phantom-trained ResNet18"), "{summary}");
    assert!(summary.contains("not a model for real scans"), "{summary}");
    for stage in ["Baseline", "Fine-tuned"] {
        assert!(summary.contains(stage), "{stage} missing: {summary}");
    }
    let read = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out_dir.join(path)).expect(path)).expect(path)
    };
    let metrics = read("run/metrics.json");
    assert_eq!(metrics["weights_origin"]["kind"], "phantom");
    assert!(
        metrics["stages"]["full"].is_null(),
        "no full stage: {metrics}"
    );
    // What the shipped backbone must always give: the seed's two stages far above chance (0.25) on a phantom set
    // of another seed, from 8 training images per class.
    for stage in ["baseline", "finetune"] {
        let accuracy = metrics["stages"][stage]["test"]["accuracy"]
            .as_f64()
            .unwrap_or_else(|| panic!("{stage}: {metrics}"));
        assert!(accuracy >= 0.5, "{stage}: test accuracy {accuracy}");
    }
    let cam = read("cam/cam.json");
    assert_eq!(cam["images"].as_array().expect("images").len(), 16);
    assert_eq!(cam["quality"]["grad-cam"]["all"]["masked"], 12);
    assert!(read("inspect/inspect.json").is_object());
    let seg = read("seg/seg.json");
    // The best recipe and the U-Net's best measured settings (per-image Dice loss, cosine rate, one round).
    assert_eq!(seg["pseudo_recipe"]["cam"]["method"], "layercam");
    assert!(summary.contains("by the `best` recipe"), "{summary}");
    assert_eq!(seg["config"]["dice_loss"], "per_image");
    assert_eq!(seg["config"]["cosine_lr"], true);
    assert_eq!(seg["round_metrics"].as_array().expect("rounds").len(), 1);
    // The U-Net beats the trivial mask, a centred disc of the mean lesion area, on its own and with its masks
    // checked against the recipe's (what `segment` and `serve` give).
    assert_eq!(seg["config"]["confirm"], true);
    let round = &seg["round_metrics"][0];
    let unet = round["test_unet_alone"]["dice"]
        .as_f64()
        .expect("U-Net Dice");
    let checked = round["test_label_gate"]["all"]["dice"]
        .as_f64()
        .expect("checked Dice");
    let disc = seg["reference_disc"]["dice"].as_f64().expect("disc Dice");
    assert!(
        unet > disc && checked > disc,
        "U-Net Dice {unet} (checked: {checked}) does not beat the centred disc's {disc}"
    );
    // The default recipe earns its place: from the same classifier, its masks beat the seed recipe's (Grad-CAM
    // on layer4 cut at half its peak) against the true masks.
    let seed_masks = dir.path().join("seed-masks");
    tumornet::workflow::pseudo_masks::make_pseudo_masks(
        &tumornet::workflow::pseudo_masks::PseudoSettings {
            run: out_dir.join("run"),
            data: out_dir.join("data"),
            out: seed_masks.clone(),
            recipe: tumornet::pseudo::Recipe::preset("seed").expect("seed recipe"),
            shard: tumornet::data::shard::Shard::ALL,
            batch_size: 16,
            gallery: 0,
            save_cams: false,
        },
    )
    .expect("seed pseudo-masks");
    let mean_dice = |dir: &std::path::Path| {
        let manifest = tumornet::pseudo::read_manifest(dir).expect("manifest");
        let dice: Vec<f64> = manifest.entries.iter().filter_map(|e| e.dice).collect();
        assert_eq!(
            dice.len(),
            36,
            "scored masks: the tumour images of both splits"
        );
        dice.iter().sum::<f64>() / dice.len() as f64
    };
    let (best, seed) = (
        mean_dice(&out_dir.join("seg/pseudo-masks")),
        mean_dice(&seed_masks),
    );
    assert!(best > seed, "best recipe Dice {best} vs seed recipe {seed}");
    assert!(summary.contains("Segmentation"), "{summary}");
    let html = std::fs::read_to_string(out_dir.join("report.html")).expect("report.html");
    for part in [
        "id=\"dataset\"",
        "id=\"grad-cam\"",
        "id=\"segmentation\"",
        "Reliability, stage finetune",
        "Phantom-trained backbone",
    ] {
        assert!(html.contains(part), "{part} missing from the report");
    }
    assert!(!html.contains("src=\"http"));
    for figure in [
        "inspect/analysis.png",
        "run/curves.png",
        "cam/grid.png",
        "seg/gallery.png",
        "seg/pseudo-masks/gallery.png",
    ] {
        assert!(
            image::image_dimensions(out_dir.join(figure)).is_ok(),
            "{figure}"
        );
    }
}
