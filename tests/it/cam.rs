//! CAM parity with pytorch-grad-cam 1.5.7 (fixtures by tools/gradcam_reference.py on the formula weights).

use crate::common::f16_values;
use crate::common::{fixtures, import_formula_run, small_phantom, temp_dir, tumornet};
use crate::model::{formula_input, max_abs_difference as max_abs, write_checkpoint};
use burn::tensor::{Tensor, TensorData};
use tumornet::cam::{compute, compute_at, compute_smoothed, postprocess, CamLayer, CamMethod};
use tumornet::model::weights::load_torchvision;
use tumornet::model::ResNet18;

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join("cam").join(name)).expect("fixture");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_f16(name: &str) -> Vec<f32> {
    f16_values(&std::fs::read(fixtures().join("cam").join(name)).expect("fixture"))
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|v| f64::from(*v)).sum::<f64>() / n,
        b.iter().map(|v| f64::from(*v)).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(*x) - ma, f64::from(*y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa.sqrt() * sbb.sqrt())
}

/// The 4-class model of the fixtures (tools/gradcam_reference.py): the formula weights, fc cut to 4 rows.
fn four_class_model() -> ResNet18 {
    let dir = temp_dir();
    let path = dir.path().join("four-class.safetensors");
    write_checkpoint(&path, 4, |_| {});
    let device = tumornet::device::training();
    load_torchvision(ResNet18::new(4, &device), &path)
        .expect("load")
        .0
}

/// The occlusion fixtures' model (tools/occlusion_reference.py): the 4-class model with its fc weight × 300, on
/// the inference device.
fn sharpened_model() -> ResNet18 {
    let dir = temp_dir();
    let path = dir.path().join("sharpened.safetensors");
    write_checkpoint(&path, 4, |tensors| {
        for (name, _, bytes, _) in tensors.iter_mut() {
            if name == "fc.weight" {
                *bytes = bytes
                    .chunks_exact(4)
                    .flat_map(|c| {
                        (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 300.0).to_le_bytes()
                    })
                    .collect();
            }
        }
    });
    let device = tumornet::device::inference();
    load_torchvision(ResNet18::new(4, &device), &path)
        .expect("load")
        .0
}

/// The first `n` images of the formula input (those of the fixtures), on the training device.
fn formula_batch(n: usize) -> Tensor<4> {
    let input: Vec<f32> = formula_input()[..n * 3 * 224 * 224].to_vec();
    Tensor::<4>::from_data(
        TensorData::new(input, [n, 3, 224, 224]),
        &tumornet::device::training(),
    )
}

#[test]
fn cams_match_pytorch_grad_cam() {
    let model = four_class_model();
    let x = formula_batch(2);

    let batch = compute(&model, x.clone(), CamMethod::GradCam, &[None, Some(3)]).expect("grad-cam");
    assert_eq!(
        batch.targets,
        vec![1, 3],
        "predicted class of image 0, then the requested class"
    );
    let reference = read_f32("gradcam.f32");
    let layer = &batch.layers[0];
    assert_eq!(batch.layers.len(), 1, "layer4 alone");
    for (i, raw) in layer.raw.iter().enumerate() {
        let ours = postprocess::finish(raw, layer.height, layer.width, 224, 224);
        assert_eq!(
            ours,
            batch.finished(i, 224, 224),
            "one layer: finished = finish"
        );
        let theirs = &reference[i * 224 * 224..(i + 1) * 224 * 224];
        let (r, d) = (pearson(&ours, theirs), max_abs(&ours, theirs));
        eprintln!("grad-cam image {i}: r = {r:.7}, max |Δ| = {d:.2e}");
        assert!(r >= 0.999 && d <= 1e-3, "image {i}: r {r}, max |Δ| {d}");
    }

    // The other methods, image 0 (fixtures stored as f16: ±5e-4 of rounding).
    for (method, file) in [
        (CamMethod::GradCamPlusPlus, "gradcam++.f16"),
        (CamMethod::HiResCam, "hirescam.f16"),
        (CamMethod::LayerCam, "layercam.f16"),
    ] {
        let batch = compute(&model, x.clone(), method, &[None, None]).expect("cam");
        let ours = batch.finished(0, 224, 224);
        let theirs = read_f16(file);
        let (r, d) = (pearson(&ours, &theirs), max_abs(&ours, &theirs));
        eprintln!("{}: r = {r:.7}, max |Δ| = {d:.2e}", method.name());
        assert!(
            r >= 0.999 && d <= 2e-3,
            "{}: r {r}, max |Δ| {d}",
            method.name()
        );
    }
}

/// On layer3 the gradient varies over the positions, so HiResCAM (gradient ⊙ activation) is not Grad-CAM (mean
/// gradient): each matches pytorch-grad-cam's own map of that method, and the two references differ by far more
/// than the tolerance, so a HiResCAM that returned Grad-CAM's map would fail (at layer4 the two are equal).
#[test]
fn hirescam_differs_from_grad_cam_on_layer3_as_in_pytorch_grad_cam() {
    let model = four_class_model();
    let x = formula_batch(1);
    let (hires, grad) = (
        read_f16("hirescam-layer3.f16"),
        read_f16("gradcam-layer3.f16"),
    );
    let apart = max_abs(&hires, &grad);
    assert!(apart > 0.05, "the references differ by only {apart}");
    // With these formula weights Grad-CAM's channel weights sum to a negative map on layer3, which the ReLU
    // empties: pytorch-grad-cam's map is all zero there, HiResCAM's is not (81 % of the pixels above zero).
    assert!(grad.iter().all(|v| *v == 0.0));
    let at_layer3 = |method| {
        compute_at(&model, x.clone(), method, &[None], CamLayer::Layer3)
            .expect("cam")
            .finished(0, 224, 224)
    };
    let ours = at_layer3(CamMethod::HiResCam);
    let (r, d) = (pearson(&ours, &hires), max_abs(&ours, &hires));
    eprintln!("hirescam on layer3: r = {r:.7}, max |Δ| = {d:.2e}");
    assert!(r >= 0.999 && d <= 2e-3, "hirescam: r {r}, max |Δ| {d}");
    let d = max_abs(&at_layer3(CamMethod::GradCam), &grad);
    assert!(d <= 2e-3, "grad-cam on layer3: max |Δ| {d}");
}

#[test]
fn shallower_and_fused_cams_match_pytorch_grad_cam() {
    let model = four_class_model();
    let x = formula_batch(1);
    // layer3 alone; layer1 + layer2 + layer3 in one backward pass (zero-tensor probes on the deeper two),
    // aggregated as pytorch-grad-cam aggregates several target layers. The fused bound is looser: with these
    // synthetic weights about half of layer2's pre-activations are exactly zero in PyTorch, and where the two
    // libraries round one to opposite sides the ReLU passes or blocks layer1's gradient — layer1's own map
    // differs by up to 4 % of its maximum in one 7×9-cell patch (layer2 alone matches to 1.2e-6, checked by
    // hand); the fused map by 1.7e-2 there, r = 0.999996.
    for (layer, file, sizes, r_min, d_max) in [
        (
            CamLayer::Layer3,
            "layercam-layer3.f16",
            vec![14],
            0.999,
            2e-3,
        ),
        (
            CamLayer::Fused,
            "layercam-fused.f16",
            vec![56, 28, 14],
            0.99999,
            2.5e-2,
        ),
    ] {
        let batch =
            compute_at(&model, x.clone(), CamMethod::LayerCam, &[None], layer).expect("cam");
        let got: Vec<usize> = batch.layers.iter().map(|l| l.height).collect();
        assert_eq!(got, sizes, "{layer:?}: layer resolutions");
        assert!(batch.layers.iter().all(|l| l.height == l.width));
        let ours = batch.finished(0, 224, 224);
        let theirs = read_f16(file);
        let (r, d) = (pearson(&ours, &theirs), max_abs(&ours, &theirs));
        eprintln!("layercam on {layer:?}: r = {r:.7}, max |Δ| = {d:.2e}");
        assert!(r >= r_min && d <= d_max, "{layer:?}: r {r}, max |Δ| {d}");
    }
}

#[test]
fn fused_layers_equal_the_single_layer_maps_in_one_pass() {
    // The zero-tensor probes of the fused pass give each layer the map its own pass (that layer's output as the
    // leaf) gives, for every method: Grad-CAM's mean gradient and LayerCAM's element-wise one.
    let model = four_class_model();
    let x = formula_batch(2);
    for method in [CamMethod::GradCam, CamMethod::LayerCam] {
        let fused = compute_at(&model, x.clone(), method, &[None, Some(3)], CamLayer::Fused)
            .expect("fused");
        assert_eq!(fused.layers.len(), 3);
        for (k, single) in [CamLayer::Layer1, CamLayer::Layer2, CamLayer::Layer3]
            .into_iter()
            .enumerate()
        {
            let alone =
                compute_at(&model, x.clone(), method, &[None, Some(3)], single).expect("single");
            assert_eq!(alone.targets, fused.targets);
            let mut nonzero = 0;
            for (a, b) in alone.layers[0].raw.iter().zip(&fused.layers[k].raw) {
                let scale = a.iter().chain(b).copied().fold(0f32, f32::max);
                nonzero += usize::from(scale > 0.0);
                let d = max_abs(a, b);
                assert!(
                    d <= 1e-5 * scale,
                    "{} {single:?}: max |Δ| {d} of {scale}",
                    method.name()
                );
            }
            assert!(
                nonzero > 0,
                "{single:?}: maps that are all zero test nothing"
            );
        }
    }
}

#[test]
fn flip_smoothing_is_mirror_symmetric() {
    // Smoothing averages a map with the mirrored map of the mirrored image, so the smoothed map of the mirrored
    // image is the mirror of the smoothed map of the image. Random-init weights: the formula weights happen to
    // make the network mirror-equivariant, which would hide the effect of smoothing.
    let device = tumornet::device::training();
    device.seed(7);
    let model = ResNet18::new(4, &device);
    // The formula input, with a bright left third so the image is clearly not mirror-symmetric.
    let mut input: Vec<f32> = formula_input()[..3 * 224 * 224].to_vec();
    for (i, v) in input.iter_mut().enumerate() {
        if i % 224 < 75 {
            *v += 2.0;
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, 224, 224]), &device);
    let a = compute_smoothed(
        &model,
        x.clone(),
        CamMethod::GradCam,
        &[Some(2)],
        true,
        CamLayer::Layer4,
    )
    .expect("a");
    let b = compute_smoothed(
        &model,
        x.clone().flip([3]),
        CamMethod::GradCam,
        &[Some(2)],
        true,
        CamLayer::Layer4,
    )
    .expect("b");
    let plain = compute(&model, x, CamMethod::GradCam, &[Some(2)]).expect("plain");
    let (a, b, plain) = (&a.layers[0], &b.layers[0], &plain.layers[0]);
    let (h, w) = (a.height, a.width);
    let mirrored: Vec<f32> = (0..h * w)
        .map(|i| b.raw[0][(i / w) * w + (w - 1 - i % w)])
        .collect();
    let d = max_abs(&a.raw[0], &mirrored);
    let scale = a.raw[0].iter().copied().fold(0f32, f32::max);
    assert!(d <= 1e-4 * scale.max(1.0), "max |Δ| {d} (map max {scale})");
    // And smoothing changes an asymmetric input's map.
    assert!(
        max_abs(&a.raw[0], &plain.raw[0]) > 1e-3 * scale,
        "smoothing had no effect"
    );
}

#[test]
fn occlusion_map_and_deletion_check_match_pytorch() {
    use tumornet::cam::occlusion::{confirmed_by_deletion, occlusion_map, Occlusion};
    // Through the folded CPU path, as the pseudo-mask recipe runs it: parity with PyTorch on that path too.
    let model = tumornet::model::inference::Predictor::new(&sharpened_model());
    let device = tumornet::device::inference();
    // The fixture's formula image: grey (3x + 5y) mod 200, +55 in a disc of radius 30 around (150, 80).
    let image = image::RgbImage::from_fn(224, 224, |x, y| {
        let disc = (x as i64 - 150).pow(2) + (y as i64 - 80).pow(2) <= 900;
        let v = ((3 * x + 5 * y) % 200 + if disc { 55 } else { 0 }) as u8;
        image::Rgb([v, v, v])
    });
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("cam").join("occlusion.json")).expect("fixture"),
    )
    .expect("json");
    let target = reference["target"].as_u64().expect("target") as usize;
    let base = reference["probability"].as_f64().expect("p") as f32;

    // 96-pixel windows at stride 80: origins 0, 80 and 128 (flush), 9 windows, batches of 4.
    let occlusion: Occlusion = "96:80".parse().expect("parse");
    assert_eq!(occlusion.origins(224), vec![0, 80, 128]);
    let map =
        occlusion_map(&model, &image, target, base, occlusion, 4, &device).expect("occlusion");
    let expected = read_f32("occlusion.f32");
    let peak = expected.iter().copied().fold(0.0, f32::max);
    assert!(
        peak > 0.01,
        "the fixture's drops are not degenerate: {peak}"
    );
    assert!(expected.contains(&0.0), "a window that raises p is floored");
    let worst = max_abs(&map, &expected);
    assert!(worst < 2e-5, "max |Δ| {worst} against drops up to {peak}");

    // Blacking out 128×128 masks upsampled by nearest neighbour.
    let disc: Vec<bool> = (0..128 * 128)
        .map(|i| ((i % 128) as i64 - 86).pow(2) + ((i / 128) as i64 - 46).pow(2) <= 289)
        .collect();
    let left: Vec<bool> = (0..128 * 128).map(|i| i % 128 < 64).collect();
    let (chosen, after) =
        confirmed_by_deletion(&model, &image, target, base, &[&disc, &left], 128, &device)
            .expect("deletion");
    let removed = [
        reference["removed"]["disc"].as_f64().expect("disc") as f32,
        reference["removed"]["left"].as_f64().expect("left") as f32,
    ];
    assert!(max_abs(&after, &removed) < 2e-5, "{after:?} vs {removed:?}");
    // Neither removal halves p: the one that lowers it most is kept.
    assert!(removed.iter().all(|p| *p > base / 2.0));
    let lowest = if removed[0] <= removed[1] { 0 } else { 1 };
    assert_eq!(chosen, lowest);
}

fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("npy");
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "header padded to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + len]).expect("ascii header");
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape")
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

#[test]
fn cam_command_writes_overlays_maps_grid_and_scores_against_masks() {
    let dir = temp_dir();
    let run = import_formula_run(dir.path());
    let data = dir.path().join("data");
    small_phantom(&data, 0, 1, 3);
    let cams = dir.path().join("cams");
    let out = tumornet()
        .arg("cam")
        .arg(&run)
        .arg(&data)
        .arg("--out")
        .arg(&cams)
        .args([
            "--method",
            "grad-cam,layercam",
            "--flip-smooth",
            "--layer",
            "fused",
        ])
        .output()
        .expect("cam");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| grad-cam | all | 3 |"));

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cams.join("cam.json")).expect("cam.json"))
            .expect("json");
    assert_eq!(report["layer"], "fused");
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 4);
    for image in images {
        let file = std::path::PathBuf::from(image["file"].as_str().expect("file"));
        let original = image::image_dimensions(&file).expect("original");
        let overlay =
            image::image_dimensions(image["overlay"].as_str().expect("overlay")).expect("png");
        assert_eq!(
            overlay, original,
            "the overlay is drawn on the image as given"
        );
        let methods = image["methods"].as_array().expect("methods");
        assert_eq!(methods.len(), 2);
        let tumour = image["true_class"] != "notumor";
        for m in methods {
            let (shape, values) = read_npy(std::path::Path::new(m["map"].as_str().expect("map")));
            assert_eq!(shape, vec![224, 224]);
            let max = values.iter().copied().fold(f32::MIN, f32::max);
            let min = values.iter().copied().fold(f32::MAX, f32::min);
            assert!(
                min >= 0.0 && (max - 1.0).abs() < 1e-3,
                "map range {min}..{max}"
            );
            // Tumour images are scored against their mask, no-tumour images are not; all get a deletion score.
            assert_eq!(m["mask"].is_object(), tumour, "{m}");
            assert!(m["deletion_drop"].is_number() && m["random_drop"].is_number());
        }
    }
    let all = &report["quality"]["layercam"]["all"];
    assert_eq!(all["masked"], 3);
    assert_eq!(all["deletion_images"], 4);
    assert!(image::image_dimensions(cams.join("grid.png")).is_ok());
    assert!(std::fs::read_to_string(cams.join("quality.md"))
        .expect("table")
        .contains("pointing game"));

    // A corrupt file among good ones: the good one is still explained, the bad one named, exit code 3.
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"not an image").expect("write");
    let good = data.join("Testing/glioma/Te-gl_0001.jpg");
    let out = tumornet()
        .arg("cam")
        .arg(&run)
        .arg(&good)
        .arg(&corrupt)
        .arg("--out")
        .arg(dir.path().join("cams2"))
        .output()
        .expect("cam");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.jpg"));
    assert!(dir.path().join("cams2/overlays/Te-gl_0001.png").is_file());
}
