//! Pseudo-masks → train-seg → segment → report, end to end on a small phantom set with a formula model.

use crate::common::{brightness_dataset, import_formula_run, small_phantom, temp_dir, tumornet};
use base64::Engine;
use burn::module::Module;
use std::path::{Path, PathBuf};
use tumornet::model::inference::values;

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("json")
}

/// A small phantom (`train`/`test` images per class, `seed`) and the formula run in `dir`, and `pseudo-masks` on
/// them with `flags` into `dir/pseudo`: (data, run, pseudo).
fn phantom_pseudo_masks(
    dir: &Path,
    (train, test, seed): (usize, usize, u64),
    flags: &[&str],
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let data = dir.join("data");
    small_phantom(&data, train, test, seed);
    let run = import_formula_run(dir);
    let pseudo = dir.join("pseudo");
    let stdout = run_pseudo_masks(&run, &data, &pseudo, flags);
    (data, run, pseudo, stdout)
}

/// `pseudo-masks RUN DATA --out PSEUDO FLAGS…`, which must succeed; its stdout.
fn run_pseudo_masks(run: &Path, data: &Path, pseudo: &Path, flags: &[&str]) -> String {
    let out = ok(tumornet()
        .args(["-q", "pseudo-masks"])
        .arg(run)
        .arg(data)
        .arg("--out")
        .arg(pseudo)
        .args(flags)
        .output()
        .expect("pseudo-masks"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `train-seg RUN DATA --pseudo PSEUDO --out OUT`, to which a test adds its flags.
fn train_seg(run: &Path, data: &Path, pseudo: &Path, out: &Path) -> std::process::Command {
    let mut command = tumornet();
    command
        .arg("train-seg")
        .arg(run)
        .arg(data)
        .arg("--pseudo")
        .arg(pseudo)
        .arg("--out")
        .arg(out);
    command
}

#[test]
fn pseudo_masks_train_seg_segment_and_report() {
    let dir = temp_dir();
    // Pseudo-masks: one per image, 128×128, values 0/128/255, empty for no-tumour images (label gate).
    let (data, run, pseudo, stdout) = phantom_pseudo_masks(
        dir.path(),
        (3, 2, 21),
        &[
            "--recipe",
            "seed",
            "--set",
            "mask.ignore_below=0.1",
            "--set",
            "cam.scales=[1, 0.75]",
            "--batch-size",
            "5",
            "--save-cams",
        ],
    );
    let manifest = json(&pseudo.join("pseudo_masks.json"));
    let entries = manifest["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4 * (3 + 2));
    let (mut tumour_pixels, mut cam_pixels) = (0usize, 0usize);
    for entry in entries {
        let mask = image::open(pseudo.join(entry["mask"].as_str().expect("mask")))
            .expect("mask png")
            .to_luma8();
        assert_eq!(mask.dimensions(), (128, 128));
        assert!(mask.pixels().all(|p| [0, 128, 255].contains(&p.0[0])));
        // --save-cams: the map beside it (cams/ for masks/), 128×128.
        let relative = entry["mask"]
            .as_str()
            .expect("mask")
            .replacen("masks", "cams", 1);
        let cam = image::open(pseudo.join(&relative))
            .expect("cam png")
            .to_luma8();
        assert_eq!(cam.dimensions(), (128, 128));
        cam_pixels += cam.pixels().filter(|p| p.0[0] > 0).count();
        let foreground = mask.pixels().filter(|p| p.0[0] == 255).count();
        if entry["class"] == "notumor" {
            assert_eq!(foreground, 0, "the class gate empties no-tumour masks");
        }
        tumour_pixels += foreground;
    }
    assert!(tumour_pixels > 0 && cam_pixels > 0);
    // Each entry carries its mask's Dice (none where mask and truth are both empty: the no-tumour images); their
    // mean over a split's tumour images is the split's Dice in the quality table.
    assert!(entries
        .iter()
        .filter(|e| e["class"] == "notumor")
        .all(|e| e.get("dice").is_none()));
    for split in ["Training", "Testing"] {
        let dice: Vec<f64> = entries
            .iter()
            .filter(|e| e["split"] == split.to_lowercase() && e["class"] != "notumor")
            .map(|e| e["dice"].as_f64().expect("a tumour image's Dice"))
            .collect();
        let mean = dice.iter().sum::<f64>() / dice.len() as f64;
        let table = manifest["quality"]["fraction:0.5"][split]["all"]["dice"]
            .as_f64()
            .expect("table Dice");
        assert!((mean - table).abs() < 1e-9, "{split}: {mean} vs {table}");
    }
    // Every compared threshold is scored on both splits against the true masks, and both tables are printed.
    for threshold in ["appearance:10", "fraction:0.5", "otsu", "top:5"] {
        let all = &manifest["quality"][threshold]["Training"]["all"];
        assert_eq!(all["images"], 12, "{threshold}: {all}");
        assert_eq!(all["empty_images"], 3);
        assert_eq!(
            manifest["quality"][threshold]["Testing"]["all"]["images"],
            8
        );
    }
    for split in ["Training", "Testing"] {
        assert!(
            stdout.contains(&format!("against the true masks, {split}:")),
            "{stdout}"
        );
    }
    assert!(image::image_dimensions(pseudo.join("gallery.png")).is_ok());

    // Two self-training rounds of one epoch each on those masks, encoder frozen.
    let segrun = dir.path().join("segrun");
    ok(train_seg(&run, &data, &pseudo, &segrun)
        .arg("-q")
        .args([
            "--set",
            "rounds=2",
            "--epochs",
            "1",
            "--set",
            "round_epochs=1",
            "--set",
            "batch_size=4",
        ])
        .output()
        .expect("train-seg"));
    let seg = json(&segrun.join("seg.json"));
    // The best measured U-Net settings are the defaults: cosine rate, per-image Dice loss.
    assert_eq!(seg["config"]["cosine_lr"], true);
    assert_eq!(seg["config"]["dice_loss"], "per_image");
    assert_eq!(seg["config"]["rounds"], 2);
    assert_eq!(seg["config"]["epochs"], 1);
    assert!(seg["config"].get("drop_unconfirmed").is_none());
    // By default every tumour mask the run gives is checked against the recipe's mask of the same image.
    assert_eq!(seg["config"]["confirm"], true);
    // The recipe is recorded typed, as the manifest has it.
    assert_eq!(seg["pseudo_recipe"], manifest["recipe"]);
    // These pseudo-masks have no deletion records: nothing to select by.
    let refused = train_seg(&run, &data, &pseudo, &dir.path().join("refused"))
        .args(["--set", "drop_unconfirmed=0.1"])
        .output()
        .expect("train-seg --set drop_unconfirmed=0.1");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("confirm_by_deletion"), "{stderr}");
    assert_eq!(seg["round_metrics"].as_array().expect("rounds").len(), 2);
    assert_eq!(seg["history"].as_array().expect("history").len(), 2);
    let first = &seg["round_metrics"][0];
    // Round 1 trains on the pseudo-masks (by default Grad-CAM on layer4, half its maximum): their score against
    // the truth is what the pseudo-mask command measured.
    assert_eq!(manifest["recipe"]["cam"]["method"], "grad-cam");
    assert_eq!(manifest["recipe"]["cam"]["layer"], "layer4");
    assert_eq!(
        first["targets_vs_truth"]["dice"],
        manifest["quality"]["fraction:0.5"]["Training"]["all"]["dice"]
    );
    assert_eq!(first["test_label_gate"]["all"]["images"], 8);
    assert!(image::image_dimensions(segrun.join("gallery.png")).is_ok());

    // The frozen encoder is still exactly the classifier, BatchNorm statistics included.
    let device = tumornet::device::inference();
    let (classifier, _) = tumornet::model::run::load_run(&run, &device).expect("run");
    let unet = tumornet::model::unet::load_unet(&segrun.join("unet.safetensors"), 4, &device)
        .expect("unet");
    assert_eq!(
        values(unet.encoder.conv1.weight.val()).expect("a"),
        values(classifier.conv1.weight.val()).expect("b")
    );
    assert_eq!(
        values(unet.encoder.layer2[0].bn1.running_mean.value()).expect("a"),
        values(classifier.layer2[0].bn1.running_mean.value()).expect("b")
    );
    assert_eq!(
        unet.num_params() - classifier.num_params(),
        3_151_552 + 145 + 2 * 992
    );

    // segment: a mask and an outline per test image, at the image's size; gated by the classifier.
    let out = dir.path().join("segment");
    ok(tumornet()
        .args(["-q", "segment"])
        .arg(&segrun)
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("segment"));
    let report = json(&out.join("segment.json"));
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 8);
    for image in images {
        let file = Path::new(image["file"].as_str().expect("file"));
        let size = image::image_dimensions(file).expect("input");
        assert_eq!(
            image::image_dimensions(image["mask"].as_str().expect("mask")).expect("mask"),
            size
        );
        assert_eq!(
            image::image_dimensions(image["overlay"].as_str().expect("overlay")).expect("overlay"),
            size
        );
        if image["predicted"] == "notumor" {
            assert_eq!(image["tumour_fraction"], 0.0);
        }
    }
    assert_eq!(report["scores"]["all"]["images"], 8);
    // The mean Dice's bootstrap interval brackets it (a one-epoch U-Net may find nothing: then both are 0).
    let dice = report["scores"]["all"]["dice"].as_f64().expect("dice");
    let interval = report["dice_interval"].as_array().expect("interval");
    let (lo, hi) = (
        interval[0].as_f64().expect("lo"),
        interval[1].as_f64().expect("hi"),
    );
    assert!(lo <= dice && dice <= hi, "{lo} {dice} {hi}");
    // Without the gate a tumour image is scored as train-seg scores its label gate: the same mean Dice, and the
    // same interval from the same per-image values (train-seg's own code path, in seg.json and metrics.md). Given
    // the split folder rather than the dataset, it still finds the true masks beside it.
    let segment_testing = |out: &str, flags: &[&str]| -> serde_json::Value {
        let out = dir.path().join(out);
        ok(tumornet()
            .args(["-q", "segment"])
            .arg(&segrun)
            .arg(data.join("Testing"))
            .arg("--out")
            .arg(&out)
            .args(flags)
            .output()
            .unwrap_or_else(|e| panic!("segment {flags:?}: {e}")));
        json(&out.join("segment.json"))
    };
    let no_gate = segment_testing("segment-no-gate", &["--no-gate"]);
    let last = &seg["round_metrics"][1];
    assert_eq!(no_gate["confirm"], true);
    assert_eq!(
        no_gate["scores"]["all"]["dice"],
        last["test_label_gate"]["all"]["dice"]
    );
    assert!(last["test_dice_interval"].is_array(), "{last}");
    assert_eq!(no_gate["dice_interval"], last["test_dice_interval"]);
    // The check kept, for every Testing tumour image, either the U-Net's mask or the recipe's; the U-Net's own
    // masks are scored beside it, and `segment --unet-only` gives them.
    let tumour_images: u64 = ["glioma", "meningioma", "pituitary"]
        .iter()
        .filter_map(|c| last["test_label_gate"][c]["images"].as_u64())
        .sum();
    let kept = last["test_kept"].as_array().expect("test_kept");
    assert_eq!(
        kept.iter().filter_map(|k| k.as_u64()).sum::<u64>(),
        tumour_images,
        "{last}"
    );
    let alone = segment_testing("segment-unet-only", &["--no-gate", "--unet-only"]);
    assert_eq!(alone["confirm"], false);
    assert_eq!(
        alone["scores"]["all"]["dice"],
        last["test_unet_alone"]["dice"]
    );
    // Where the check kept the recipe's mask, the checked scores differ from the U-Net's own.
    if kept[1].as_u64() == Some(0) {
        assert_eq!(
            alone["scores"]["all"]["dice"],
            no_gate["scores"]["all"]["dice"]
        );
    }
    let table = std::fs::read_to_string(segrun.join("metrics.md")).expect("metrics.md");
    assert!(table.contains("mean Dice 95 % interval"), "{table}");
    // Without the gate and with --never-empty every image gets a mask, whatever a U-Net of one epoch predicts at
    // 0.5; both prediction options are recorded.
    let all = dir.path().join("segment-all");
    ok(tumornet()
        .args(["-q", "segment"])
        .arg(&segrun)
        .arg(&data)
        .arg("--out")
        .arg(&all)
        .args(["--no-gate", "--never-empty", "--flip-tta"])
        .output()
        .expect("segment --never-empty"));
    let report = json(&all.join("segment.json"));
    assert_eq!(report["never_empty"], true);
    assert_eq!(report["flip_tta"], true);
    for image in report["images"].as_array().expect("images") {
        assert!(
            image["tumour_fraction"].as_f64().expect("fraction") > 0.0,
            "{image}"
        );
    }
    segment_volumes_align_with_their_inputs(&segrun, &dir.path().join("segment-volumes"));
    segment_scores_phantom_volumes_against_their_truth(&segrun, &dir.path().join("volumes3d"));

    // serve --seg: the answer carries the tumour outline at the upload's size, gated by the prediction.
    let server = crate::serve::launch(run.clone(), Some(segrun.clone()), 8 << 20, None, None);
    let upload = Path::new(images[0]["file"].as_str().expect("file"));
    let bytes = std::fs::read(upload).expect("upload");
    let (status, body) = crate::serve::http(
        server.addr,
        "POST /api/predict?name=x.jpg HTTP/1.1\r\nContent-Type: application/octet-stream",
        &bytes,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = crate::serve::json(&body);
    let decode = |key: &str| {
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer[key].as_str().expect(key))
            .expect("base64");
        image::load_from_memory(&png).expect("png")
    };
    let size = image::image_dimensions(upload).expect("size");
    let outline = decode("outline_png");
    assert_eq!((outline.width(), outline.height()), size);
    // mask_png is the binary mask itself at the upload's size, covering the fraction the answer states.
    let mask = decode("mask_png").to_luma8();
    assert_eq!(mask.dimensions(), size);
    assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    let covered = mask.pixels().filter(|p| p.0[0] == 255).count() as f64 / (size.0 * size.1) as f64;
    let fraction = answer["tumour_fraction"].as_f64().expect("fraction");
    assert!((0.0..=1.0).contains(&fraction));
    assert!((covered - fraction).abs() < 0.02, "{covered} vs {fraction}");
    if answer["class"] == "notumor" {
        assert_eq!(fraction, 0.0);
    }

    // A NIfTI upload with ?volume=true answers with the mask volume: the same voxels `segment` writes for the
    // same volume and plane, with the upload's header.
    let volume_input = crate::common::fixtures().join("medical/colin27_lps.nii.gz");
    let (status, body) = crate::serve::http(
        server.addr,
        "POST /api/predict?name=head.nii.gz&plane=coronal&volume=true HTTP/1.1\r\nContent-Type: application/octet-stream",
        &std::fs::read(&volume_input).expect("nii"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = crate::serve::json(&body);
    let volume = &answer["volume"];
    let answered = dir.path().join("answered.mask.nii.gz");
    std::fs::write(
        &answered,
        base64::engine::general_purpose::STANDARD
            .decode(volume["mask_nii_gz"].as_str().expect("mask volume"))
            .expect("base64"),
    )
    .expect("write");
    let by_segment = dir.path().join("segment-volume");
    ok(tumornet()
        .args(["-q", "segment"])
        .arg(&segrun)
        .arg(&volume_input)
        .args(["--plane", "coronal", "--out"])
        .arg(&by_segment)
        .output()
        .expect("segment"));
    let read = |path: &Path| {
        use ::nifti::{IntoNdArray, NiftiObject};
        let object = ::nifti::ReaderOptions::new()
            .read_file(path)
            .expect("nifti");
        let header = object.header().clone();
        (
            header,
            object.into_volume().into_ndarray::<f32>().expect("array"),
        )
    };
    let (answer_header, answer_voxels) = read(&answered);
    let (segment_header, segment_voxels) =
        read(&by_segment.join("volumes/colin27_lps.mask.nii.gz"));
    let (input_header, _) = read(&volume_input);
    assert_eq!(answer_voxels, segment_voxels);
    for header in [&answer_header, &segment_header] {
        assert_eq!(
            (
                header.sform_code,
                header.qform_code,
                header.srow_x,
                header.srow_y,
                header.srow_z,
                header.dim[..4].to_vec()
            ),
            (
                input_header.sform_code,
                input_header.qform_code,
                input_header.srow_x,
                input_header.srow_y,
                input_header.srow_z,
                input_header.dim[..4].to_vec()
            )
        );
    }
    assert_eq!(
        volume["tumour_voxels"].as_u64().expect("voxels") as usize,
        answer_voxels.iter().filter(|v| **v == 1.0).count()
    );
    let coronal = tumornet::data::medical::nifti::read_canonical(&volume_input, 0)
        .expect("volume")
        .count(tumornet::data::medical::Plane::Coronal);
    assert_eq!(volume["slices"].as_u64(), Some(coronal as u64));

    // The report: one HTML file, figures inline, no external requests, every part present.
    ok(tumornet()
        .args(["-q", "report"])
        .arg(&run)
        .args(["--pseudo"])
        .arg(&pseudo)
        .arg("--seg")
        .arg(&segrun)
        .output()
        .expect("report"));
    let html = std::fs::read_to_string(run.join("report.html")).expect("report.html");
    for part in [
        "<h2 id=\"classification\"",
        "<h2 id=\"pseudo-masks\"",
        "<h2 id=\"segmentation\"",
        "data:image/png;base64,",
        "Research use only, not for clinical decisions.",
        "HD95 px",
    ] {
        assert!(html.contains(part), "{part} missing");
    }
    for external in ["src=\"http", "href=\"http", "url(http", "<script", "<link"] {
        assert!(!html.contains(external), "{external} in the report");
    }
    assert!(run.join("report.md").is_file());

    // A run folder of an older format is refused with a message that says to train it again.
    let mut old = seg.clone();
    old.as_object_mut().expect("object").remove("config");
    std::fs::write(
        segrun.join("seg.json"),
        serde_json::to_string(&old).expect("json"),
    )
    .expect("write");
    let out = tumornet()
        .args(["-q", "segment"])
        .arg(&segrun)
        .arg(upload)
        .arg("--out")
        .arg(dir.path().join("segment-old"))
        .output()
        .expect("segment an old run");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trained again"), "{stderr}");
}

#[test]
fn a_split_without_true_masks_is_said_to_be_unscored() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    small_phantom(&data, 1, 1, 9);
    std::fs::remove_dir_all(data.join("masks").join("Testing")).expect("remove Testing masks");
    let run = import_formula_run(dir.path());
    let pseudo = dir.path().join("pseudo");
    let stdout = run_pseudo_masks(&run, &data, &pseudo, &["--recipe", "seed"]);
    // Testing's images still get masks, but only Training has a table (stdout and quality.md).
    assert_eq!(
        json(&pseudo.join("pseudo_masks.json"))["entries"]
            .as_array()
            .expect("entries")
            .len(),
        8
    );
    assert!(
        stdout.contains("against the true masks, Training:"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("against the true masks, Testing:"),
        "{stdout}"
    );
    let quality = std::fs::read_to_string(pseudo.join("quality.md")).expect("quality.md");
    let (training, testing) = quality.split_once("## Testing").expect("Testing section");
    assert!(training.contains("| threshold | class |"), "{quality}");
    assert!(testing.contains("nothing scored"), "{quality}");
    assert!(!testing.contains("| threshold | class |"), "{quality}");
}

#[test]
fn train_seg_and_segment_name_what_is_wrong() {
    let dir = temp_dir();
    let out = tumornet()
        .args(["segment"])
        .arg(dir.path())
        .arg(dir.path())
        .output()
        .expect("segment");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a segmentation run"), "{stderr}");
    let out = tumornet()
        .args(["pseudo-masks"])
        .arg(dir.path())
        .arg(dir.path())
        .args(["--set", "mask.threshold=median"])
        .output()
        .expect("pseudo-masks");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mask.threshold=median") && stderr.contains("otsu"),
        "{stderr}"
    );
    // An unknown key is a usage error that names it and the valid keys.
    let out = tumornet()
        .args(["pseudo-masks"])
        .arg(dir.path())
        .arg(dir.path())
        .args(["--set", "cam.lyer=layer3"])
        .output()
        .expect("pseudo-masks");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lyer") && stderr.contains("`layer`"),
        "{stderr}"
    );
}

#[test]
fn pseudo_masks_with_occlusion_record_it_and_confirm_a_mask_per_tumour_image() {
    let dir = temp_dir();
    // 112-pixel windows at stride 112: 4 per image, the cheapest real occlusion.
    let (data, run, pseudo, stdout) = phantom_pseudo_masks(
        dir.path(),
        (2, 1, 5),
        &[
            "--recipe",
            "seed",
            "--set",
            "occlusion.patch=112",
            "--set",
            "occlusion.stride=112",
            "--set",
            "occlusion.confirm_by_deletion=true",
            "--set",
            "class.glioma.occlusion=true",
            "--set",
            "class.pituitary.occlusion=true",
            "--set",
            "class.pituitary.sharpen=[2, 3]",
        ],
    );
    let manifest = json(&pseudo.join("pseudo_masks.json"));
    let recipe = &manifest["recipe"];
    assert_eq!(
        recipe["occlusion"],
        serde_json::json!({"patch": 112, "stride": 112, "weight": 0.5, "confirm_by_deletion": true})
    );
    assert_eq!(
        recipe["class"]["pituitary"]["sharpen"],
        serde_json::json!([2.0, 3.0])
    );
    assert_eq!(recipe["class"]["glioma"]["occlusion"], true);
    assert!(recipe["class"].get("meningioma").is_none(), "{recipe}");
    // Label gate: the 2 occluded classes × 3 images get an occlusion map and a confirmed mask (of the CAM, the
    // combined map or one of its two sharpened versions); meningioma (not occluded) and no-tumour images none.
    let counts = manifest["confirmed"].as_object().expect("confirmed counts");
    assert!(
        counts
            .keys()
            .all(|k| ["cam", "combined", "combined^2", "combined^3"].contains(&k.as_str())),
        "{counts:?}"
    );
    let total: u64 = counts.values().map(|n| n.as_u64().expect("count")).sum();
    assert_eq!(total, 6, "{counts:?}");
    assert!(stdout.contains("Deletion check, masks kept"), "{stdout}");
    for entry in manifest["entries"].as_array().expect("entries") {
        let mask = image::open(pseudo.join(entry["mask"].as_str().expect("mask")))
            .expect("mask png")
            .to_luma8();
        assert_eq!(mask.dimensions(), (128, 128));
        if entry["class"] == "notumor" {
            assert!(mask.pixels().all(|p| p.0[0] == 0));
            assert!(entry.get("deletion").is_none(), "{entry}");
            continue;
        }
        if entry["class"] == "meningioma" {
            assert!(entry.get("deletion").is_none(), "{entry}");
            continue;
        }
        // Each occluded image records its candidates: gliomas only the CAM and the combined map (no sharpen list),
        // pituitary tumours both sharpened maps too; the kept one is the mask written.
        let record = &entry["deletion"];
        let candidates = record["candidates"].as_array().expect("candidates");
        let names: Vec<&str> = candidates
            .iter()
            .map(|c| c["map"].as_str().expect("map"))
            .collect();
        if entry["class"] == "glioma" {
            assert_eq!(names, ["cam", "combined"], "{entry}");
        } else {
            assert_eq!(
                names,
                ["cam", "combined", "combined^2", "combined^3"],
                "{entry}"
            );
        }
        let kept = record["kept"].as_u64().expect("kept") as usize;
        let tumour_pixels = mask.pixels().filter(|p| p.0[0] == 255).count() as u64;
        assert_eq!(candidates[kept]["area"], tumour_pixels, "{entry}");
        // The rule, re-applied to the record: the smallest non-empty candidate whose removal halves the
        // probability, else the non-empty one that lowers it most.
        let base = record["probability"].as_f64().expect("probability");
        let usable: Vec<(usize, u64, f64)> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    i,
                    c["area"].as_u64().expect("area"),
                    c["probability_after"].as_f64().expect("after"),
                )
            })
            .filter(|(_, area, _)| *area > 0)
            .collect();
        let halving = usable
            .iter()
            .filter(|(_, _, after)| *after <= base / 2.0)
            .min_by_key(|(_, area, _)| *area);
        let lowest = usable.iter().min_by(|a, b| a.2.total_cmp(&b.2));
        if let Some((expect, _, _)) = halving.or(lowest) {
            assert_eq!(kept, *expect, "{record}");
        }
        // The phantom has true masks: every candidate is scored (a lesion is never empty, so Dice is defined).
        for c in candidates {
            let dice = c["dice"].as_f64().expect("dice");
            assert!((0.0..=1.0).contains(&dice), "{c}");
        }
    }

    // train-seg's drop_unconfirmed = F leaves out the Training images whose kept mask, blacked out, left more than F
    // of the probability: F halfway between the records' lowest and highest share, so some go and some stay.
    let shares: Vec<f64> = manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["split"] == "training" && e.get("deletion").is_some())
        .map(|e| {
            let record = &e["deletion"];
            let kept = record["kept"].as_u64().expect("kept") as usize;
            record["candidates"][kept]["probability_after"]
                .as_f64()
                .expect("after")
                / record["probability"].as_f64().expect("probability")
        })
        .collect();
    assert_eq!(shares.len(), 4);
    let (low, high) = shares
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(high > low, "{shares:?}");
    let fraction = ((low + high) / 2.0) as f32;
    let dropped = shares.iter().filter(|v| **v > fraction as f64).count();
    let segrun = dir.path().join("segrun");
    let out = ok(train_seg(&run, &data, &pseudo, &segrun)
        .args(["--epochs", "1", "--set", "batch_size=4"])
        .args(["--set", &format!("drop_unconfirmed={fraction}")])
        .output()
        .expect("train-seg drop_unconfirmed"));
    let seg = json(&segrun.join("seg.json"));
    assert_eq!(seg["dropped_unconfirmed"], dropped as u64);
    assert_eq!(
        seg["round_metrics"][0]["targets_vs_truth"]["images"],
        (8 - dropped) as u64
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{dropped} Training images left out")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Occluding a class needs an [occlusion] table, sharpening needs the deletion check; a malformed window, an
    // exponent that sharpens nothing and settings for the no-tumour class are refused, naming the key.
    for (sets, expect) in [
        (&["class.glioma.occlusion=true"][..], "[occlusion]"),
        (
            &["occlusion.patch=16", "occlusion.stride=32"][..],
            "PATCH:STRIDE",
        ),
        (
            &[
                "occlusion.patch=48",
                "class.pituitary.occlusion=true",
                "class.pituitary.sharpen=[2]",
            ][..],
            "confirm_by_deletion",
        ),
        (
            &[
                "occlusion.confirm_by_deletion=true",
                "class.pituitary.occlusion=true",
                "class.pituitary.sharpen=[1]",
            ][..],
            "above 1",
        ),
        (&["class.notumor.cam_power=2"][..], "no lesion"),
    ] {
        let mut command = tumornet();
        command
            .arg("pseudo-masks")
            .arg(&run)
            .arg(&data)
            .args(["--recipe", "seed"]);
        for set in sets {
            command.args(["--set", set]);
        }
        let out = command.output().expect("pseudo-masks");
        assert_eq!(out.status.code(), Some(2), "{sets:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{sets:?}: {stderr}");
    }
}

/// The per-class option tests' folder, phantom (2 Training and 1 Testing image per class) and formula run.
struct PerClassFixture {
    dir: tempfile::TempDir,
    data: PathBuf,
    run: PathBuf,
}

impl PerClassFixture {
    fn new() -> Self {
        let dir = temp_dir();
        let data = dir.path().join("data");
        small_phantom(&data, 2, 1, 11);
        let run = import_formula_run(dir.path());
        Self { dir, data, run }
    }

    /// Run pseudo-masks into the folder's `name` with `flags`: its manifest, and every image's class and mask
    /// bytes by image path.
    fn masks(
        &self,
        name: &str,
        flags: &[&str],
    ) -> (
        serde_json::Value,
        std::collections::BTreeMap<String, (String, Vec<u8>)>,
    ) {
        let out = self.dir.path().join(name);
        run_pseudo_masks(&self.run, &self.data, &out, flags);
        let manifest = json(&out.join("pseudo_masks.json"));
        let by_image = manifest["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                let mask = image::open(out.join(e["mask"].as_str().expect("mask")))
                    .expect("mask png")
                    .to_luma8()
                    .into_raw();
                (
                    e["image"].as_str().expect("image").to_string(),
                    (e["class"].as_str().expect("class").to_string(), mask),
                )
            })
            .collect();
        (manifest, by_image)
    }

    /// pseudo-masks refuses each case's flags: it exits with the case's code and says its text on stderr.
    fn assert_refused(&self, cases: &[(&[&str], i32, &str)]) {
        for &(flags, code, expect) in cases {
            let output = tumornet()
                .arg("pseudo-masks")
                .arg(&self.run)
                .arg(&self.data)
                .arg("--out")
                .arg(self.dir.path().join("refused"))
                .args(flags)
                .output()
                .expect("pseudo-masks");
            assert_eq!(output.status.code(), Some(code), "{flags:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(expect), "{flags:?}: {stderr}");
        }
    }
}

#[test]
fn cam_power_reshapes_the_maps_of_the_listed_classes_only() {
    let fixture = PerClassFixture::new();
    // The fraction threshold 0.5 of the CAM raised to 0.5 keeps the pixels at ≥ 0.25 of the CAM's maximum: the
    // masks of `fraction:0.25`. Classes not listed keep the masks of the plain `fraction:0.5`.
    let (_, plain) = fixture.masks("plain", &["--recipe", "seed"]);
    let (_, quarter) = fixture.masks(
        "quarter",
        &["--recipe", "seed", "--set", "mask.threshold=fraction:0.25"],
    );
    let (manifest, powered) = fixture.masks(
        "powered",
        &["--recipe", "seed", "--set", "class.glioma.cam_power=0.5"],
    );
    assert_eq!(
        manifest["recipe"]["class"],
        serde_json::json!({"glioma": {"cam_power": 0.5, "occlusion": false}})
    );
    assert_eq!(powered.len(), 12);
    let mut widened = 0;
    for (image, (class, mask)) in &powered {
        if class == "glioma" {
            assert_eq!(mask, &quarter[image].1, "{image}");
            let area = |m: &[u8]| m.iter().filter(|v| **v == 255).count();
            assert!(area(mask) >= area(&plain[image].1), "{image}");
            widened += usize::from(mask != &plain[image].1);
        } else {
            assert_eq!(mask, &plain[image].1, "{image}");
        }
    }
    assert!(widened > 0, "the power changed no glioma mask");

    // A class without a lesion, a power that is not positive and a missing `=` are refused, naming the key.
    fixture.assert_refused(&[
        (&["--set", "class.notumor.cam_power=2"][..], 2, "no lesion"),
        (
            &["--set", "class.glioma.cam_power=0"][..],
            2,
            "class.glioma.cam_power must be a positive number",
        ),
        (&["--set", "class.glioma.cam_power"][..], 2, "KEY=VALUE"),
    ]);
}

#[test]
fn a_posterior_level_moves_the_appearance_masks_of_the_listed_classes_only() {
    let fixture = PerClassFixture::new();
    let appearance = ["--recipe", "seed", "--set", "mask.threshold=appearance:10"];
    let with = |extra: &'static str| {
        let mut flags = appearance.to_vec();
        flags.extend(["--set", extra]);
        flags
    };
    let (plain_manifest, plain) = fixture.masks("plain", &appearance);
    assert!(plain_manifest["recipe"].get("class").is_none());
    // Level 0.5 is the default: the same masks.
    let (_, half) = fixture.masks("half", &with("class.glioma.posterior_level=0.5"));
    assert_eq!(half, plain);
    let (manifest, low) = fixture.masks("low", &with("class.glioma.posterior_level=0.01"));
    assert_eq!(
        manifest["recipe"]["class"]["glioma"]["posterior_level"]
            .as_f64()
            .map(|v| (v - 0.01).abs() < 1e-6),
        Some(true)
    );
    assert_eq!(manifest["recipe"]["mask"], plain_manifest["recipe"]["mask"]);
    assert_eq!(low.len(), 12);
    let mut moved = 0;
    for (image, (class, mask)) in &low {
        if class == "glioma" {
            moved += usize::from(mask != &plain[image].1);
        } else {
            assert_eq!(mask, &plain[image].1, "{image}");
        }
    }
    assert!(moved > 0, "the level changed no glioma mask");

    // Another threshold, a level outside (0, 1) and a class without a lesion are refused, naming the key.
    fixture.assert_refused(&[
        (
            &[
                "--recipe",
                "seed",
                "--set",
                "class.glioma.posterior_level=0.3",
            ][..],
            2,
            "needs mask.threshold = \"appearance:N\"",
        ),
        (
            &with("class.glioma.posterior_level=1")[..],
            2,
            "posterior_level must lie in (0, 1)",
        ),
        (
            &with("class.notumor.posterior_level=0.3")[..],
            2,
            "no lesion",
        ),
    ]);
}

#[test]
fn merged_shards_give_the_masks_and_scores_of_one_run() {
    let dir = temp_dir();
    let seed = ["--recipe", "seed"];
    let (data, run, whole, _) = phantom_pseudo_masks(dir.path(), (2, 1, 13), &seed);
    let (pa, pb) = (dir.path().join("pseudo-a"), dir.path().join("pseudo-b"));
    run_pseudo_masks(&run, &data, &pa, &["--recipe", "seed", "--shard", "0/2"]);
    // The second shard as a Slurm array task sees it (task 8 of 7..8).
    ok(tumornet()
        .args(["-q", "pseudo-masks"])
        .arg(&run)
        .arg(&data)
        .arg("--out")
        .arg(&pb)
        .args(["--recipe", "seed", "--shard", "slurm"])
        .env("SLURM_ARRAY_TASK_ID", "8")
        .env("SLURM_ARRAY_TASK_MIN", "7")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .expect("pseudo-masks --shard slurm"));
    let shard_sizes: Vec<usize> = [&pa, &pb]
        .iter()
        .map(|p| {
            json(&p.join("pseudo_masks.json"))["entries"]
                .as_array()
                .expect("entries")
                .len()
        })
        .collect();
    assert_eq!(shard_sizes, [6, 6]);
    let merged = dir.path().join("merged");
    let merge = |parts: &[&Path], out: &Path| {
        tumornet()
            .arg("merge-masks")
            .args(parts)
            .arg("--out")
            .arg(out)
            .output()
            .expect("merge-masks")
    };
    let out = ok(merge(&[&pa, &pb], &merged));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Merged 12 pseudo-masks (8 Training, 4 Testing) from 2 folders"),
        "{stdout}"
    );

    // Every image once, its mask (named by absolute path, left in its part) the one a single run made.
    let key = |e: &serde_json::Value| {
        let image = Path::new(e["image"].as_str().expect("image"));
        format!(
            "{}/{}/{}",
            e["split"].as_str().expect("split"),
            e["class"].as_str().expect("class"),
            image.file_name().expect("name").to_string_lossy()
        )
    };
    let whole_manifest = json(&whole.join("pseudo_masks.json"));
    let whole_masks: std::collections::BTreeMap<String, Vec<u8>> = whole_manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let mask = whole.join(e["mask"].as_str().expect("mask"));
            (
                key(e),
                image::open(mask).expect("mask").to_luma8().into_raw(),
            )
        })
        .collect();
    let manifest = json(&merged.join("pseudo_masks.json"));
    assert_eq!(manifest["parts"], serde_json::json!([pa, pb]));
    let entries = manifest["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 12);
    let mut keys = std::collections::BTreeSet::new();
    for e in entries {
        let mask = Path::new(e["mask"].as_str().expect("mask"));
        assert!(
            mask.is_absolute() && mask.starts_with(dir.path()),
            "{mask:?}"
        );
        let bytes = image::open(mask).expect("mask").to_luma8().into_raw();
        assert_eq!(bytes, whole_masks[&key(e)], "{}", key(e));
        assert!(keys.insert(key(e)));
    }
    // The chosen threshold scored over both parts: the single run's figures for it.
    let threshold = "fraction:0.5";
    assert_eq!(
        manifest["quality"]
            .as_object()
            .expect("quality")
            .keys()
            .collect::<Vec<_>>(),
        [threshold]
    );
    let (merged_scores, whole_scores) = (
        &manifest["quality"][threshold],
        &whole_manifest["quality"][threshold],
    );
    for split in ["Training", "Testing"] {
        assert!(
            whole_scores[split]["all"]["dice"].as_f64().is_some(),
            "{split}"
        );
        for class in ["all", "glioma", "meningioma", "notumor", "pituitary"] {
            for field in [
                "images",
                "dice",
                "pooled_dice",
                "pixel_accuracy",
                "empty_correct",
            ] {
                let (m, w) = (
                    &merged_scores[split][class][field],
                    &whole_scores[split][class][field],
                );
                match (m.as_f64(), w.as_f64()) {
                    (Some(m), Some(w)) => assert!((m - w).abs() < 1e-9, "{split} {class} {field}"),
                    _ => assert_eq!(m, w, "{split} {class} {field}"),
                }
            }
        }
    }
    assert!(std::fs::read_to_string(merged.join("quality.md"))
        .expect("quality.md")
        .contains(&format!("| {threshold} | all | 8 |")));
    // train-seg takes the merged folder.
    ok(train_seg(&run, &data, &merged, &dir.path().join("segrun"))
        .args(["-q", "--epochs", "0"])
        .output()
        .expect("train-seg"));

    // Refused: parts made by another recipe (the difference named), an image in two parts, the output folder
    // among the parts, a file that is gone. Nothing is written then.
    let otsu = dir.path().join("pseudo-otsu");
    run_pseudo_masks(
        &run,
        &data,
        &otsu,
        &[
            "--recipe",
            "seed",
            "--set",
            "mask.threshold=otsu",
            "--shard",
            "1/2",
        ],
    );
    std::fs::remove_file(
        data.join("Testing/glioma")
            .read_dir()
            .expect("folder")
            .next()
            .expect("image")
            .expect("image")
            .path(),
    )
    .expect("remove");
    for (parts, out, expect) in [
        (
            vec![&pa, &otsu],
            "refused",
            "mask.threshold: \"otsu\" vs \"fraction:0.5\"",
        ),
        (vec![&pa, &pb, &pa], "refused", "in both"),
        (vec![&pa, &pb], "pseudo-a", "is one of the parts"),
        (vec![&pa, &pb], "refused", "not there"),
    ] {
        let parts: Vec<&Path> = parts.iter().map(|p| p.as_path()).collect();
        let out = merge(&parts, &dir.path().join(out));
        assert_eq!(out.status.code(), Some(1), "{expect}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{expect}: {stderr}");
        assert!(!dir.path().join("refused").exists(), "{expect}");
    }
}

/// Each step with its default output folder, run from one working folder, leaves what `report RUN` looks for
/// beside the run: every section of the report is there.
#[test]
fn default_output_folders_give_a_report_with_every_section() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    small_phantom(&data, 1, 1, 17);
    let run = import_formula_run(dir.path());
    let step = |args: &[&str]| {
        ok(tumornet()
            .current_dir(dir.path())
            .arg("-q")
            .args(args)
            .output()
            .expect("step"));
    };
    step(&["inspect", "data"]);
    step(&["cam", "run", "data", "--raw", "none"]);
    step(&["pseudo-masks", "run", "data", "--recipe", "seed"]);
    step(&[
        "train-seg",
        "run",
        "data",
        "--pseudo",
        "pseudo-masks",
        "--epochs",
        "1",
    ]);
    step(&["report", "run"]);
    for folder in ["inspect", "cam", "pseudo-masks", "seg"] {
        assert!(dir.path().join(folder).is_dir(), "{folder}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).expect("report.html");
    for section in [
        "id=\"dataset\"",
        "id=\"classification\"",
        "id=\"grad-cam\"",
        "id=\"pseudo-masks\"",
        "id=\"segmentation\"",
    ] {
        assert!(html.contains(section), "{section} missing from the report");
    }
}

/// The class gate end to end: with a classifier that tells its images apart (a brightness task it learns in a
/// few baseline epochs), `segment` and `serve --seg` give every image predicted no-tumour an empty mask, while
/// the same U-Net without the gate (and never empty) outlines something on those very images.
#[test]
fn images_predicted_no_tumour_get_empty_masks_through_segment_and_serve() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    brightness_dataset(&data, 12, 4);
    let run = dir.path().join("run");
    let step = |args: &[&str]| {
        ok(tumornet()
            .current_dir(dir.path())
            .arg("-q")
            .args(args)
            .env("TUMORNET_CACHE", dir.path().join("no-cache"))
            .output()
            .expect("step"))
    };
    step(&[
        "train",
        "data",
        "--out",
        "run",
        "--baseline-epochs",
        "20",
        "--finetune-epochs",
        "0",
        "--full-epochs",
        "0",
        "--set",
        "baseline_lr=1e-2",
        "--set",
        "batch_size=8",
        "--set",
        "recalibrate_batch_norm=true",
    ]);
    step(&[
        "train-seg",
        "run",
        "data",
        "--recipe",
        "seed",
        "--epochs",
        "1",
    ]);
    let segment = |out: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["segment", "seg", "data/Testing", "--out", out];
        args.extend(extra);
        step(&args);
        json(&dir.path().join(out).join("segment.json"))["images"]
            .as_array()
            .expect("images")
            .clone()
    };
    let gated = segment("gated", &[]);
    let open = segment("open", &["--no-gate", "--never-empty"]);
    assert_eq!(gated.len(), 16);
    let no_tumour: Vec<&serde_json::Value> = gated
        .iter()
        .filter(|i| i["predicted"] == "notumor")
        .collect();
    assert!(
        no_tumour.len() >= 3,
        "the classifier predicted no-tumour {} times",
        no_tumour.len()
    );
    for image in &no_tumour {
        assert_eq!(image["tumour_fraction"], 0.0, "{image}");
        let same = open
            .iter()
            .find(|o| o["file"] == image["file"])
            .expect("the same image without the gate");
        assert!(
            same["tumour_fraction"].as_f64().expect("fraction") > 0.0,
            "{same}"
        );
    }
    // serve --seg gates the same way (here behind a token): the binary mask is all zero.
    let server = crate::serve::launch(
        run,
        Some(dir.path().join("seg")),
        8 << 20,
        None,
        Some("s3cret"),
    );
    let upload = no_tumour[0]["file"].as_str().expect("file");
    let (status, body) = crate::serve::http(
        server.addr,
        "POST /api/predict?name=x.png HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/octet-stream",
        &std::fs::read(dir.path().join(upload)).expect("upload"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = crate::serve::json(&body);
    assert_eq!(answer["class"], "notumor");
    assert_eq!(answer["tumour_fraction"], 0.0);
    let mask = base64::engine::general_purpose::STANDARD
        .decode(answer["mask_png"].as_str().expect("mask_png"))
        .expect("base64");
    let mask = image::load_from_memory(&mask).expect("png").to_luma8();
    assert!(mask.pixels().all(|p| p.0[0] == 0));
}

/// HD95 and the average surface distance against MONAI 1.6.1 (fixture by tools/make_surface_fixture.py): 2-D and
/// 3-D blobs, anisotropic spacing, masks on the grid's border, a one-pixel mask, identical and empty masks.
#[test]
fn surface_distances_match_monai() {
    use tumornet::metrics::surface::{surface_distance, SurfaceDistance};
    let text = std::fs::read_to_string(
        crate::common::fixtures()
            .join("surface")
            .join("monai_surface.json"),
    )
    .expect("fixture");
    let fixture: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 14);
    let mut measured = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let dims: Vec<usize> = serde_json::from_value(case["dims"].clone()).expect("dims");
        let spacing: Vec<f64> = serde_json::from_value(case["spacing"].clone()).expect("spacing");
        let mask = |key: &str| {
            let mut mask = vec![false; dims.iter().product()];
            for index in case[key].as_array().expect("indices") {
                mask[index.as_u64().expect("index") as usize] = true;
            }
            mask
        };
        let got = surface_distance(&mask("predicted"), &mask("reference"), &dims, &spacing);
        match got {
            SurfaceDistance::Measured { hd95, asd } => {
                let expected_hd95 = case["hd95"].as_f64().expect("finite hd95");
                let expected_asd = case["asd"].as_f64().expect("finite asd");
                // MONAI computes in float32.
                assert!(
                    (hd95 - expected_hd95).abs() < 1e-4 * expected_hd95.max(1.0),
                    "{name}: HD95 {hd95} vs {expected_hd95}"
                );
                assert!(
                    (asd - expected_asd).abs() < 1e-4 * expected_asd.max(1.0),
                    "{name}: ASD {asd} vs {expected_asd}"
                );
                measured += 1;
            }
            // MONAI: an infinite Hausdorff distance when exactly one mask is empty, NaN when both are.
            SurfaceDistance::OneEmpty => assert_eq!(case["hd"], "inf", "{name}"),
            SurfaceDistance::BothEmpty => assert!(case["hd"].is_null(), "{name}"),
        }
    }
    assert_eq!(measured, 11);
}

/// U-Net interop with segmentation_models_pytorch 0.6.0 (fixture by tools/smp_reference.py): a file in smp's
/// names with the formula weights loads, gives smp's logits within 1e-4, and `save_unet_smp` writes exactly
/// smp's state-dict keys and shapes (num_batches_tracked included) with the same values, which load again.
#[test]
fn the_unet_reads_and_writes_segmentation_models_pytorch_names() {
    use tumornet::model::unet::{load_unet, save_unet_smp};
    let dir = temp_dir();
    let fixture = crate::common::fixtures().join("smp");
    let keys: Vec<(String, Vec<usize>)> =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("keys.json")).expect("keys"))
            .expect("parse keys");
    assert_eq!(keys.len(), 182);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>, bool)> = keys
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            if name.ends_with("num_batches_tracked") {
                (
                    name.clone(),
                    shape.clone(),
                    0i64.to_le_bytes().to_vec(),
                    true,
                )
            } else {
                let values = crate::model::formula(i, name, shape);
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), shape.clone(), bytes, false)
            }
        })
        .collect();
    let smp_file = dir.path().join("smp.safetensors");
    crate::model::write_tensors(&smp_file, &tensors);

    let device = tumornet::device::inference();
    let unet = load_unet(&smp_file, 4, &device).expect("an smp-named U-Net loads");
    // The top-left 64×64 of the first formula image.
    let full = crate::model::formula_input();
    let mut crop = Vec::with_capacity(3 * 64 * 64);
    for c in 0..3 {
        for h in 0..64 {
            let start = (c * 224 + h) * 224;
            crop.extend_from_slice(&full[start..start + 64]);
        }
    }
    let x = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(crop, [1, 3, 64, 64]),
        &device,
    );
    let logits = values(unet.forward(x.clone())).expect("logits");
    let expected: Vec<f32> = std::fs::read(fixture.join("logits.f32"))
        .expect("logits")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(logits.len(), expected.len());
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest difference from smp {worst}");

    // Written back in smp's names: the same keys, shapes and values.
    let exported = dir.path().join("exported.safetensors");
    save_unet_smp(&unet, &exported, &[]).expect("export");
    let bytes = std::fs::read(&exported).expect("read");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let mut written: Vec<(String, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    let mut wanted = keys.clone();
    written.sort();
    wanted.sort();
    assert_eq!(written, wanted);
    for (name, shape, bytes, _) in &tensors {
        let view = file.tensor(name).expect("tensor");
        assert_eq!(view.shape(), shape.as_slice(), "{name}");
        assert_eq!(view.data(), bytes.as_slice(), "{name}");
    }
    let again = load_unet(&exported, 4, &device).expect("reload");
    assert_eq!(values(again.forward(x)).expect("logits"), logits);
}

/// `segment` on NIfTI volumes (an LPS anatomy, and an oblique axis-permuted one) writes one mask volume per input with
/// the input's header, each slice's mask (the 2-D PNG it also writes) on exactly the voxels the slice came from.
fn segment_volumes_align_with_their_inputs(segrun: &Path, out: &Path) {
    use tumornet::data::medical::nifti::VolumeGeometry;
    use tumornet::data::medical::Plane;
    let medical = crate::common::fixtures().join("medical");
    let inputs = [
        medical.join("colin27_lps.nii.gz"),
        medical.join("orient_slp_sform.nii.gz"),
    ];
    ok(tumornet()
        .args(["-q", "segment"])
        .arg(segrun)
        .args(&inputs)
        .arg("--out")
        .arg(out)
        .args([
            "--no-gate",
            "--never-empty",
            "--all-components",
            "--plane",
            "coronal",
        ])
        .output()
        .expect("segment volumes"));
    let report = json(&out.join("segment.json"));
    let volumes = report["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 2);
    let mut total_voxels = 0;
    for input in &inputs {
        let volume = volumes
            .iter()
            .find(|v| v["input"].as_str() == Some(&input.display().to_string()))
            .expect("a volume for each input");
        let geometry = VolumeGeometry::read(input).expect("geometry");
        let mask_file = PathBuf::from(volume["mask"].as_str().expect("mask"));
        let written = VolumeGeometry::read(&mask_file).expect("mask volume");
        assert_eq!(written.dims, geometry.dims);
        let (a, b) = (&written.header, &geometry.header);
        assert_eq!(
            (
                a.sform_code,
                a.qform_code,
                a.srow_x,
                a.srow_y,
                a.srow_z,
                a.quatern_b,
                a.quatern_c,
                a.quatern_d
            ),
            (
                b.sform_code,
                b.qform_code,
                b.srow_x,
                b.srow_y,
                b.srow_z,
                b.quatern_b,
                b.quatern_c,
                b.quatern_d
            )
        );
        use ::nifti::{IntoNdArray, NiftiObject};
        let labels = ::nifti::ReaderOptions::new()
            .read_file(&mask_file)
            .expect("read")
            .into_volume()
            .into_ndarray::<f32>()
            .expect("array")
            .into_dimensionality::<ndarray::Ix3>()
            .expect("3-D");
        let name = input
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let mut expected_voxels = 0;
        let mut slices = 0;
        for image in report["images"].as_array().expect("images") {
            let Some(index) = image["input"]
                .as_str()
                .expect("input")
                .strip_prefix(&format!("{}#coronal:", input.display()))
            else {
                continue;
            };
            let index: usize = index.parse().expect("index");
            slices += 1;
            let mask = image::open(image["mask"].as_str().expect("png"))
                .expect("mask png")
                .to_luma8();
            for (column, row, pixel) in mask.enumerate_pixels() {
                let [x, y, z] =
                    geometry.voxel_of(Plane::Coronal, index, row as usize, column as usize);
                assert_eq!(
                    labels[[x, y, z]] == 1.0,
                    pixel.0[0] > 0,
                    "{name} slice {index} ({row}, {column})"
                );
                expected_voxels += usize::from(pixel.0[0] > 0);
            }
        }
        assert_eq!(
            slices,
            volume["slices"].as_u64().expect("slices") as usize,
            "{name}"
        );
        assert_eq!(
            slices,
            tumornet::data::medical::nifti::read_canonical(input, 0)
                .expect("volume")
                .count(Plane::Coronal),
            "{name}: every coronal slice"
        );
        total_voxels += expected_voxels;
        assert_eq!(
            labels.iter().filter(|v| **v == 1.0).count(),
            expected_voxels,
            "{name}"
        );
        assert_eq!(volume["tumour_voxels"], expected_voxels);
        let ml = volume["tumour_ml"].as_f64().expect("ml");
        assert!(
            (ml - expected_voxels as f64 * geometry.voxel_ml()).abs() < 1e-9,
            "{name}"
        );
    }
    // --never-empty gives every slice a mask at 128×128; on the anatomy's 46-pixel slices they survive resizing
    // (the other volume's 6×5 slices may lose them).
    assert!(total_voxels > 0, "no mask voxel at all");
}

/// `synth --volumes` then `segment --truth`: each mask volume scored against its true volume, figures that agree
/// with the files (Dice, volumes in ml) recomputed here, per class and `all`; a missing truth names the input.
fn segment_scores_phantom_volumes_against_their_truth(segrun: &Path, dir: &Path) {
    let phantom = dir.join("phantom");
    ok(tumornet()
        .args(["-q", "synth"])
        .arg(&phantom)
        .args(["--volumes", "1", "--seed", "3", "--lesion-scale", "2"])
        .output()
        .expect("synth volumes"));
    let manifest = json(&phantom.join("volumes.json"));
    // Four slices of each volume (input: NIfTI files or DICOM series), scored against the true volumes.
    let segment = |input: &str, flags: &[&str], out: &str| -> serde_json::Value {
        let out = dir.join(out);
        ok(tumornet()
            .args(["-q", "segment"])
            .arg(segrun)
            .arg(phantom.join(input))
            .arg("--truth")
            .arg(phantom.join("truth"))
            .args(["--slices", "60:63", "--no-gate", "--never-empty"])
            .args(flags)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("segment {input} {flags:?}: {e}")));
        json(&out.join("segment.json"))
    };
    let report = segment("volumes", &[], "segment");
    let volumes = report["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 4);
    let read = |path: &Path| -> Vec<bool> {
        use ::nifti::{IntoNdArray, NiftiObject};
        let object = ::nifti::ReaderOptions::new()
            .read_file(path)
            .expect("nifti");
        let voxels = object.into_volume().into_ndarray::<f32>().expect("array");
        voxels.iter().map(|v| *v > 0.5).collect()
    };
    for record in manifest["volumes"].as_array().expect("records") {
        let class = record["class"].as_str().expect("class");
        let image = phantom.join(record["image"].as_str().expect("image"));
        let volume = volumes
            .iter()
            .find(|v| v["input"].as_str() == Some(&image.display().to_string()))
            .expect("a mask volume per input");
        assert_eq!(volume["class"], class);
        let truth = phantom.join(record["truth"].as_str().expect("truth"));
        assert_eq!(
            volume["truth"].as_str(),
            Some(truth.display().to_string().as_str())
        );
        let predicted = read(Path::new(volume["mask"].as_str().expect("mask")));
        let reference = read(&truth);
        let both = predicted
            .iter()
            .zip(&reference)
            .filter(|(p, t)| **p && **t)
            .count();
        let (p, t) = (
            predicted.iter().filter(|v| **v).count(),
            reference.iter().filter(|v| **v).count(),
        );
        let score = &volume["score"];
        // 1 mm voxels: 1,000 per millilitre.
        assert!((score["true_ml"].as_f64().expect("true ml") - t as f64 / 1000.0).abs() < 1e-9);
        assert!((score["predicted_ml"].as_f64().expect("ml") - p as f64 / 1000.0).abs() < 1e-9);
        assert_eq!(record["tumour_voxels"].as_u64(), Some(t as u64));
        // Never-empty masks on 4 slices: every volume has a predicted tumour, cut to one connected body.
        assert!(p > 0, "{class}");
        assert_eq!(components_6(&predicted, [181, 217, 181]), 1, "{class}");
        if class == "notumor" {
            assert!(score["dice"].is_null() && score["error_percent"].is_null());
        } else {
            let dice = 2.0 * both as f64 / (p + t) as f64;
            assert!(
                (score["dice"].as_f64().expect("dice") - dice).abs() < 1e-12,
                "{class}"
            );
            assert!(score["hd95_mm"].as_f64().expect("hd95") > 0.0);
        }
    }
    // The same volumes read from their DICOM series score the same.
    let dicom_report = segment("dicom", &["--dicom-series"], "segment-dicom");
    assert_eq!(dicom_report["volumes"].as_array().map(Vec::len), Some(4));
    assert_eq!(dicom_report["volume_scores"], report["volume_scores"]);
    // A volume's slices keep the U-Net's masks: the run's check of 2-D images does not apply to them.
    assert_eq!(report["confirm"], true);
    let unet_only = segment("volumes", &["--unet-only"], "segment-unet-only");
    assert_eq!(unet_only["volume_scores"], report["volume_scores"]);
    let scores = &report["volume_scores"];
    for group in ["glioma", "meningioma", "pituitary", "notumor", "all"] {
        assert!(scores[group]["volumes"].as_u64().is_some(), "{group}");
    }
    assert_eq!(scores["all"]["volumes"], 4);
    assert_eq!(scores["all"]["dice"]["n"], 3);
    assert_eq!(scores["notumor"]["empty_volumes"], 1);
    assert_eq!(scores["notumor"]["empty_correct"], 0);

    // A truth folder without the input's file: the error names it, the mask volume is still written.
    let empty = dir.join("no-truth");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let output = tumornet()
        .args(["-q", "segment"])
        .arg(segrun)
        .arg(phantom.join("volumes/glioma/vol-gl_0001.nii.gz"))
        .arg("--truth")
        .arg(&empty)
        .args(["--slices", "60:60", "--out"])
        .arg(dir.join("segment-no-truth"))
        .output()
        .expect("segment");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no vol-gl_0001.nii or vol-gl_0001.nii.gz under"),
        "{stderr}"
    );
    assert!(dir
        .join("segment-no-truth/volumes/vol-gl_0001.mask.nii.gz")
        .is_file());
}

/// Number of 6-connected components of a flat `[x, y, z]` mask (z fastest).
fn components_6(mask: &[bool], dims: [usize; 3]) -> usize {
    let mut seen = vec![false; mask.len()];
    let strides = [dims[1] * dims[2], dims[2], 1];
    let mut count = 0;
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        count += 1;
        seen[start] = true;
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for axis in 0..3 {
                let coordinate = (i / strides[axis]) % dims[axis];
                let mut next = Vec::new();
                if coordinate > 0 {
                    next.push(i - strides[axis]);
                }
                if coordinate + 1 < dims[axis] {
                    next.push(i + strides[axis]);
                }
                for j in next {
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
    }
    count
}
