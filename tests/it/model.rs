//! ResNet18 parity with torchvision, weights in both formats, run folders, `predict`, `weights fetch`.
//!
//! The weights follow a formula that `tools/resnet_reference.py` computes too; the expected outputs are what
//! PyTorch 2.15 / torchvision 0.29.2 produced from them (tests/fixtures/resnet).

use crate::common::{f16_values, fixtures, import_checkpoint, small_phantom, temp_dir, tumornet};
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tumornet::model::inference::values;
use tumornet::model::run::{load_run, save_run, RunConfig, WeightsOrigin};
use tumornet::model::weights::{load_torchvision, load_torchvision_with, Missing, WeightsError};
use tumornet::model::ResNet18;

type Keys = Vec<(String, Vec<usize>)>;

fn keys() -> Keys {
    let text = std::fs::read_to_string(fixtures().join("resnet/keys.json")).expect("keys.json");
    serde_json::from_str(&text).expect("parse keys")
}

/// The formula of `tools/resnet_reference.py::formula_tensor` (computed in f64, stored as f32).
pub(crate) fn formula(index: usize, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product::<usize>().max(1);
    let t = index as f64;
    (0..n)
        .map(|j| {
            let j = j as f64;
            let v = if name.ends_with("running_var") {
                1.0 + 0.25 * (j * 0.9 + t).sin().powi(2)
            } else if name.ends_with("running_mean") {
                0.1 * (j * 1.1 + t).sin()
            } else if shape.len() == 1 && name.ends_with("weight") {
                1.0 + 0.1 * (j * 0.7 + t).sin()
            } else if shape.len() == 1 && name.ends_with("bias") {
                0.1 * (j * 0.3 + t).cos()
            } else if shape.len() == 4 {
                2.0 / ((shape[1] * shape[2] * shape[3]) as f64).sqrt()
                    * (j * 0.61803 + t * 1.3).sin()
            } else {
                1.0 / (shape[1] as f64).sqrt() * (j * 0.61803 + t * 1.3).sin()
            };
            v as f32
        })
        .collect()
}

pub(crate) fn formula_input() -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * 3 * 224 * 224);
    for n in 0..3 {
        for c in 0..3 {
            for h in 0..224 {
                for w in 0..224 {
                    let (n, c, h, w) = (n as f64, c as f64, h as f64, w as f64);
                    v.push(
                        (1.5 * (0.05 * h + 0.031 * w * (c + 1.0) + n).sin()
                            * (0.02 * (h - w)).cos()) as f32,
                    );
                }
            }
        }
    }
    v
}

/// Write the formula weights as a torchvision-layout safetensors file with `classes` outputs, independently of
/// burn (the `safetensors` crate), with `edit` applied to the tensor list first.
pub(crate) fn write_checkpoint(
    path: &Path,
    classes: usize,
    edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>, bool)>),
) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, bool)> = Vec::new();
    for (i, (name, shape)) in keys().iter().enumerate() {
        if name.ends_with("num_batches_tracked") {
            tensors.push((
                name.clone(),
                shape.clone(),
                0i64.to_le_bytes().to_vec(),
                true,
            ));
            continue;
        }
        let mut values = formula(i, name, shape);
        let mut shape = shape.clone();
        if name.starts_with("fc.") {
            // Rows of the [1000, 512] weight (or the 1000 biases) are contiguous: keep the first `classes`.
            values.truncate(classes * values.len() / 1000);
            shape[0] = classes;
        }
        tensors.push((
            name.clone(),
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            false,
        ));
    }
    edit(&mut tensors);
    write_tensors(path, &tensors);
}

/// Write (name, shape, little-endian bytes, is i64) tensors as a safetensors file with the `safetensors` crate.
pub(crate) fn write_tensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<u8>, bool)]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes, int)| {
            let dtype = if *int {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                name.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

fn reference(name: &str, rows: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(fixtures().join("resnet").join(name)).expect("reference");
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    all.chunks(all.len() / rows).map(<[f32]>::to_vec).collect()
}

fn input(device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::<4>::from_data(TensorData::new(formula_input(), [3, 3, 224, 224]), device)
}

pub(crate) fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn forward_pass_matches_pytorch_on_a_torchvision_checkpoint() {
    let dir = temp_dir();
    let path = dir.path().join("imagenet-layout.safetensors");
    write_checkpoint(&path, 1000, |_| {});
    let device = tumornet::device::inference();
    let (model, report) = load_torchvision(ResNet18::new(1000, &device), &path).expect("load");
    assert_eq!(report.head_replaced, None);
    assert_eq!(
        report.applied, 102,
        "62 weights/biases + 40 running statistics"
    );
    let logits = values(model.forward(input(&device))).expect("logits");
    let expected: Vec<f32> = reference("logits1000.f32", 3).concat();
    let difference = max_abs_difference(&logits, &expected);
    eprintln!("logits max |Δ| vs PyTorch: {difference:.2e}");
    // Measured 8.9e-8; the limit must lie well below what telling the inputs apart takes (their logits differ
    // by ≈ 3e-4), or a model that ignored its input would pass.
    assert!(difference <= 1e-6, "max |Δ| {difference}");
    let rows: Vec<&[f32]> = expected.chunks(1000).collect();
    let apart = max_abs_difference(rows[0], rows[1]).max(max_abs_difference(rows[0], rows[2]));
    assert!(
        apart > 100.0 * 1e-6,
        "the inputs' logits differ by only {apart}"
    );
    // The folded CPU path (`predict`, `evaluate`) against the same reference.
    let predictor = tumornet::model::inference::Predictor::new(&model);
    let folded = values(predictor.logits(input(&device)).expect("folded")).expect("logits");
    let difference = max_abs_difference(&folded, &expected);
    eprintln!("folded logits max |Δ| vs PyTorch: {difference:.2e}");
    assert!(difference <= 1e-6, "folded: max |Δ| {difference}");
}

#[test]
fn a_half_precision_checkpoint_loads_as_f32_instead_of_crashing() {
    use tumornet::model::weights::{cast_floats, save_torchvision};
    let dir = temp_dir();
    let path = dir.path().join("formula.safetensors");
    write_checkpoint(&path, 4, |_| {});
    let device = tumornet::device::inference();
    let load = || {
        load_torchvision(ResNet18::new(4, &device), &path)
            .expect("load")
            .0
    };
    // The same weights saved in f16, as `model.half()` in PyTorch would. (A fresh copy: a module's clone shares
    // its BatchNorm running statistics, and the cast replaces them in place.)
    let half = dir.path().join("half.safetensors");
    save_torchvision(&cast_floats(load(), burn::tensor::DType::F16), &half, &[]).expect("save f16");
    let model = load();
    let bytes = std::fs::read(&half).expect("read");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let dtypes: std::collections::BTreeSet<String> = file
        .tensors()
        .iter()
        .map(|(_, view)| format!("{:?}", view.dtype()))
        .collect();
    assert!(
        dtypes.contains("F16") && !dtypes.contains("F32"),
        "{dtypes:?}"
    );

    let (loaded, report) = load_torchvision(ResNet18::new(4, &device), &half).expect("f16 loads");
    assert_eq!(report.applied, 102);
    let x = input(&device);
    let expected = values(model.forward(x.clone())).expect("f32 logits");
    let logits = values(loaded.forward(x)).expect("logits from the f16 file");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let difference = max_abs_difference(&logits, &expected);
    eprintln!("f16 checkpoint: logits max |Δ| {difference:.2e} (logits up to {scale:.3})");
    // The weights' f16 rounding (2^-11 relative) moves these logits by far less than 1 % of their size.
    assert!(
        difference <= 1e-2 * scale,
        "max |Δ| {difference} (logits up to {scale})"
    );
}

/// A checkpoint that PyTorch itself cast with `model.half()` (conv1, bn1 and fc of the formula model, by
/// `tools/half_reference.py`) loads with exactly PyTorch's f16 values, and TumorNet's own f16 cast of the same
/// f32 weights writes the same bits.
#[test]
fn a_checkpoint_pytorch_cast_to_half_loads_and_our_cast_writes_the_same_bits() {
    use tumornet::model::weights::{cast_floats, save_torchvision};
    let path = fixtures().join("resnet/half_partial.safetensors");
    let theirs = std::fs::read(&path).expect("fixture");
    let theirs = safetensors::SafeTensors::deserialize(&theirs).expect("safetensors");
    let conv1 = theirs.tensor("conv1.weight").expect("conv1.weight");
    assert_eq!(format!("{:?}", conv1.dtype()), "F16");
    let device = tumornet::device::inference();
    let (model, report) =
        load_torchvision_with(ResNet18::new(4, &device), &path, Missing::Allow).expect("f16 loads");
    assert_eq!(report.head_replaced, None);
    let loaded = values(model.conv1.weight.val()).expect("conv1");
    assert_eq!(
        loaded,
        f16_values(conv1.data()),
        "conv1 as PyTorch rounded it"
    );
    // Rounded, not truncated: each value within half an f16 step of the f32 formula value.
    let exact = formula(0, "conv1.weight", &[64, 3, 7, 7]);
    for (h, f) in loaded.iter().zip(&exact) {
        assert!(
            (h - f).abs() <= f.abs() * 2f32.powi(-11) + 2f32.powi(-25),
            "{h} vs {f}"
        );
    }
    // Our cast of the f32 weights, saved, holds the same bits as PyTorch's file.
    let dir = temp_dir();
    let f32_path = dir.path().join("formula.safetensors");
    write_checkpoint(&f32_path, 4, |_| {});
    let (full, _) = load_torchvision(ResNet18::new(4, &device), &f32_path).expect("load");
    let ours_path = dir.path().join("ours-half.safetensors");
    save_torchvision(
        &cast_floats(full, burn::tensor::DType::F16),
        &ours_path,
        &[],
    )
    .expect("save");
    let ours = std::fs::read(&ours_path).expect("read");
    let ours = safetensors::SafeTensors::deserialize(&ours).expect("safetensors");
    for name in [
        "conv1.weight",
        "bn1.weight",
        "bn1.running_var",
        "fc.weight",
        "fc.bias",
    ] {
        let (a, b) = (
            ours.tensor(name).expect(name),
            theirs.tensor(name).expect(name),
        );
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert!(
            a.data() == b.data(),
            "{name}: our f16 bits differ from PyTorch's"
        );
    }
}

#[test]
fn an_imagenet_checkpoint_loads_into_a_four_class_model_with_a_fresh_head() {
    let dir = temp_dir();
    let path = dir.path().join("imagenet-layout.safetensors");
    write_checkpoint(&path, 1000, |_| {});
    let device = tumornet::device::inference();
    let (model, report) = load_torchvision(ResNet18::new(4, &device), &path).expect("load");
    assert_eq!(report.head_replaced, Some(1000));
    assert_eq!(model.num_classes(), 4);
    let pooled = values(ResNet18::pool(
        model.layer4(model.to_layer3(input(&device))),
    ))
    .expect("pooled");
    let difference = max_abs_difference(&pooled, &reference("pooled.f32", 3).concat());
    assert!(difference <= 1e-4, "pooled features max |Δ| {difference}");
    // The head is fresh: not the file's first four rows (PyTorch's [4, 512] layout; burn keeps [512, 4]).
    let fc = values(model.fc.weight.val().transpose()).expect("fc");
    let file_rows = formula(120, "fc.weight", &[1000, 512]);
    assert!(max_abs_difference(&fc, &file_rows[..2048]) > 1e-3);
}

#[test]
fn a_four_class_checkpoint_loads_whole_and_run_folders_round_trip() {
    let dir = temp_dir();
    let path = dir.path().join("four-class.safetensors");
    write_checkpoint(&path, 4, |_| {});
    let device = tumornet::device::inference();
    let (model, report) = load_torchvision(ResNet18::new(4, &device), &path).expect("load");
    assert_eq!(report.head_replaced, None);
    let logits = values(model.forward(input(&device))).expect("logits");
    let expected: Vec<f32> = reference("logits1000.f32", 3)
        .iter()
        .flat_map(|row| row[..4].to_vec())
        .collect();
    assert!(max_abs_difference(&logits, &expected) <= 1e-4);

    // Save as a run: torchvision key names in the file, and the same outputs after loading it back.
    let run_dir = dir.path().join("run");
    let origin = WeightsOrigin::File {
        path: path.clone(),
        sha256: "test".into(),
    };
    save_run(&run_dir, &model, &RunConfig::new("imported", origin, 0)).expect("save run");
    let bytes = std::fs::read(run_dir.join("model.safetensors")).expect("read");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let mut saved: Vec<(String, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    saved.sort();
    let mut want: Vec<(String, Vec<usize>)> = keys()
        .into_iter()
        .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
        .map(|(name, shape)| {
            if name == "fc.weight" {
                (name, vec![4, 512])
            } else if name == "fc.bias" {
                (name, vec![4])
            } else {
                (name, shape)
            }
        })
        .collect();
    want.sort();
    assert_eq!(saved, want, "saved names and shapes are torchvision's");
    let (reloaded, config) = load_run(&run_dir, &device).expect("load run");
    assert_eq!(config.classes.len(), 4);
    let again = values(reloaded.forward(input(&device))).expect("logits");
    assert!(max_abs_difference(&logits, &again) == 0.0);
    assert!(!dir.path().join("run").read_dir().expect("list").any(|e| {
        e.map(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .unwrap_or(false)
    }));
}

#[test]
fn the_pickle_path_maps_keys_and_layouts() {
    let path = fixtures().join("resnet/partial.pth");
    let device = tumornet::device::inference();
    // Strict: the error names what is missing.
    match load_torchvision(ResNet18::new(4, &device), &path) {
        Err(WeightsError::Missing { tensors, .. }) => {
            assert!(
                tensors.contains(&"layer1.0.conv1.weight".to_string()),
                "{tensors:?}"
            );
            assert!(
                !tensors
                    .iter()
                    .any(|t| t.starts_with("conv1") || t.starts_with("fc")),
                "{tensors:?}"
            );
        }
        other => panic!("expected a Missing error, got {other:?}"),
    }
    // Partial: the tensors present arrive with their values, BN names and Linear layout mapped.
    let (model, report) =
        load_torchvision_with(ResNet18::new(4, &device), &path, Missing::Allow).expect("load");
    assert_eq!(report.head_replaced, None);
    let index: HashMap<String, (usize, Vec<usize>)> = keys()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| (name, (i, shape)))
        .collect();
    let want = |name: &str| {
        let (i, shape) = &index[name];
        formula(*i, name, shape)
    };
    let close = |got: Vec<f32>, want: Vec<f32>, what: &str| {
        assert!(max_abs_difference(&got, &want) == 0.0, "{what}");
    };
    close(
        values(model.conv1.weight.val()).expect("conv1"),
        want("conv1.weight"),
        "conv1.weight",
    );
    close(
        values(model.bn1.gamma.val()).expect("gamma"),
        want("bn1.weight"),
        "bn1.weight → gamma",
    );
    close(
        values(model.bn1.running_var.value()).expect("var"),
        want("bn1.running_var"),
        "bn1.running_var",
    );
    let downsample = model.layer2[0].downsample.as_ref().expect("downsample");
    close(
        values(downsample.conv.weight.val()).expect("ds"),
        want("layer2.0.downsample.0.weight"),
        "downsample.0",
    );
    close(
        values(downsample.bn.beta.val()).expect("ds bn"),
        want("layer2.0.downsample.1.bias"),
        "downsample.1",
    );
    // fc: the file holds [4, 512] (PyTorch layout); burn keeps [512, 4].
    let fc_file = want("fc.weight")[..2048].to_vec();
    let fc_burn = values(model.fc.weight.val().transpose()).expect("fc");
    close(fc_burn, fc_file, "fc.weight transposed");
}

#[test]
fn wrong_shapes_unknown_tensors_and_bad_files_are_named() {
    let dir = temp_dir();
    let device = tumornet::device::inference();
    let misshapen = dir.path().join("misshapen.safetensors");
    write_checkpoint(&misshapen, 4, |tensors| {
        let conv1 = tensors
            .iter_mut()
            .find(|t| t.0 == "conv1.weight")
            .expect("conv1");
        conv1.1 = vec![64, 1, 21, 7];
    });
    let error = load_torchvision(ResNet18::new(4, &device), &misshapen).expect_err("misshapen");
    assert!(
        matches!(error, WeightsError::Shape { .. }) && error.to_string().contains("conv1.weight"),
        "{error}"
    );

    let extra = dir.path().join("extra.safetensors");
    write_checkpoint(&extra, 4, |tensors| {
        tensors.push(("classifier.weight".into(), vec![2], vec![0; 8], false));
    });
    let error = load_torchvision(ResNet18::new(4, &device), &extra).expect_err("extra");
    assert!(error.to_string().contains("classifier.weight"), "{error}");

    let missing = dir.path().join("missing.safetensors");
    write_checkpoint(&missing, 4, |tensors| {
        tensors.retain(|t| t.0 != "layer3.1.bn2.running_mean")
    });
    let error = load_torchvision(ResNet18::new(4, &device), &missing).expect_err("missing");
    assert!(
        error.to_string().contains("layer3.1.bn2.running_mean"),
        "{error}"
    );

    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "not a pickle").expect("write");
    let error = load_torchvision(ResNet18::new(4, &device), &text).expect_err("text");
    assert!(error.to_string().contains("notes.pth"), "{error}");
    let error = load_torchvision(ResNet18::new(4, &device), &dir.path().join("none.pth"))
        .expect_err("none");
    assert!(matches!(error, WeightsError::NotFound(_)));
}

#[test]
fn import_then_predict_through_the_binary() {
    let dir = temp_dir();
    let (run, out) = import_checkpoint(dir.path(), 1000);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fresh 4-class head"));

    let data = dir.path().join("data");
    small_phantom(&data, 1, 0, 2);
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(data.join("Training"))
        .arg("--json")
        .output()
        .expect("predict");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let probabilities = row["probabilities"].as_object().expect("probabilities");
        assert_eq!(probabilities.len(), 4);
        let sum: f64 = probabilities
            .values()
            .map(|v| v.as_f64().expect("number"))
            .sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        let class = row["class"].as_str().expect("class");
        assert!(probabilities.contains_key(class));
    }

    // A missing image: exit code 3 and the path in the message; a corrupt one among good ones: the good ones
    // are still predicted, the bad one is named, exit code 3.
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(dir.path().join("nope.jpg"))
        .output()
        .expect("predict");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.jpg"));
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xFF\xD8 not really").expect("write");
    let good = data.join("Training/glioma/Tr-gl_0001.jpg");
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(&good)
        .arg(&corrupt)
        .output()
        .expect("predict");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Tr-gl_0001.jpg"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.jpg"));
    // Not a run folder.
    let out = tumornet()
        .arg("predict")
        .arg(dir.path())
        .arg(&good)
        .output()
        .expect("predict");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run folder"));
}

/// Serve `body` once per connection on loopback; returns the URL.
fn serve(body: Vec<u8>, connections: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.expect("accept");
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(header.as_bytes()).expect("write header");
            stream.write_all(&body).expect("write body");
        }
    });
    format!("http://{address}/resnet18-f37072fd.pth")
}

#[test]
fn fetch_verifies_the_checksum_and_leaves_nothing_behind_on_a_mismatch() {
    let dir = temp_dir();
    let cache: PathBuf = dir.path().join("cache");
    let body = b"pretend weights".to_vec();
    // SHA-256 of "pretend weights".
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let url = serve(body, 2);
    let out = tumornet()
        .env("TUMORNET_CACHE", &cache)
        .args([
            "weights",
            "fetch",
            "--url",
            &url,
            "--sha256-prefix",
            "00000000",
        ])
        .output()
        .expect("fetch");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not start with 00000000"));
    assert_eq!(
        std::fs::read_dir(&cache).expect("cache").count(),
        0,
        "no partial file left"
    );
    let out = tumornet()
        .env("TUMORNET_CACHE", &cache)
        .args([
            "weights",
            "fetch",
            "--url",
            &url,
            "--sha256-prefix",
            &digest[..8],
        ])
        .output()
        .expect("fetch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(cache.join("resnet18-f37072fd.pth")).expect("cached"),
        b"pretend weights"
    );
}
