//! CAM parity with pytorch-grad-cam 1.5.7 (fixtures by tools/gradcam_reference.py on the formula weights).

use crate::common::{fixtures, temp_dir};
use crate::model::{formula_input, max_abs_difference as max_abs, write_checkpoint};
use burn::tensor::{Tensor, TensorData};
use tumornet::cam::{compute, postprocess, CamMethod};
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
    let bytes = std::fs::read(fixtures().join("cam").join(name)).expect("fixture");
    bytes
        .chunks_exact(2)
        .map(|c| {
            let h = u16::from_le_bytes([c[0], c[1]]);
            let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exponent = i32::from((h >> 10) & 0x1f);
            let mantissa = f32::from(h & 0x3ff);
            sign * match exponent {
                0 => mantissa * 2f32.powi(-24),
                e => (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
            }
        })
        .collect()
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

#[test]
fn cams_match_pytorch_grad_cam() {
    let dir = temp_dir();
    let path = dir.path().join("four-class.safetensors");
    write_checkpoint(&path, 4, |_| {});
    let device = tumornet::device::training();
    let (model, _) = load_torchvision(ResNet18::new(4, &device), &path).expect("load");
    let input: Vec<f32> = formula_input()[..2 * 3 * 224 * 224].to_vec();
    let x = Tensor::<4>::from_data(TensorData::new(input, [2, 3, 224, 224]), &device);

    let batch = compute(&model, x.clone(), CamMethod::GradCam, &[None, Some(3)]).expect("grad-cam");
    assert_eq!(
        batch.targets,
        vec![1, 3],
        "predicted class of image 0, then the requested class"
    );
    let reference = read_f32("gradcam.f32");
    for (i, raw) in batch.raw.iter().enumerate() {
        let ours = postprocess::finish(raw, batch.height, batch.width, 224, 224);
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
        let ours = postprocess::finish(&batch.raw[0], batch.height, batch.width, 224, 224);
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
