//! The `tch` feature's LibTorch backend computes what the default backend computes. Built only with that
//! feature (`tools/tch_build.sh test` links it against a PyPI torch wheel's libtorch and runs it with that
//! libtorch on the loader's path); CI builds neither.
//!
//! One test function: the backend is chosen once per process, so the default backend's figures are taken
//! first (its own host paths: folded convolutions and pooling), then LibTorch is selected and the same model
//! runs there.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use tumornet::device::{self, Backend, Precision};
use tumornet::model::inference::Predictor;
use tumornet::model::ResNet18;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

/// Largest |a − b| relative to the largest |b|.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Eval-mode logits and one training step's loss and gradients (fc, layer4's last conv, the stem) of `model`
/// on `device`.
fn figures(model: &ResNet18, x: &Tensor<4>, device: &Device) -> Vec<Vec<f32>> {
    let eval = device::from_host(model.clone(), device);
    let logits = values(eval.forward(x.clone().to_device(device)));
    let learner = device::from_host(model.clone(), device).train();
    let out = learner.forward(x.clone().to_device(device));
    let loss = out.clone().powi_scalar(2).mean(); // [1]
    let grads = loss.backward();
    let grad = |p: &burn::module::Param<Tensor<4>>| values(p.val().grad(&grads).expect("gradient"));
    vec![
        logits,
        values(loss.inner()),
        values(learner.fc.weight.val().grad(&grads).expect("fc gradient")),
        grad(&learner.layer4[1].conv2.weight),
        grad(&learner.conv1.weight),
    ]
}

#[test]
fn libtorch_matches_the_default_backend_in_inference_and_in_a_training_step() {
    let host = device::host();
    host.seed(17);
    let model = ResNet18::new(4, &host);
    let x = Tensor::<4>::random([2, 3, 112, 112], Distribution::Normal(0.0, 1.0), &host);
    let reference = figures(&model, &x, &device::inference());
    assert_eq!(device::backend(), Backend::Cpu);

    device::select(Backend::Libtorch).expect("libtorch opens");
    let libtorch = figures(&model, &x, &device::inference());
    let names = [
        "logits",
        "loss",
        "fc grad",
        "layer4 conv2 grad",
        "conv1 grad",
    ];
    for ((name, ours), theirs) in names.iter().zip(&libtorch).zip(&reference) {
        let gap = relative_gap(ours, theirs);
        eprintln!("{name}: {} values, relative gap {gap:.2e}", ours.len());
        assert!(gap < 1e-4, "{name}: libtorch and flex differ by {gap:.2e}");
    }
    // Half precision (what `--precision f16` runs on a GPU): within a percent of the f32 logits.
    let device = device::inference();
    let half =
        Predictor::with_precision(&device::from_host(model.clone(), &device), Precision::F16)
            .logits(x.clone().to_device(&device))
            .expect("f16 logits");
    let gap = relative_gap(&values(half), &reference[0]);
    eprintln!("f16 logits: relative gap {gap:.2e}");
    assert!(gap < 1e-2, "f16 logits differ by {gap:.2e}");
    // A control: a different input gives other logits, so the comparison can fail.
    let other = Tensor::<4>::random([2, 3, 112, 112], Distribution::Normal(0.0, 1.0), &host);
    let moved = figures(&model, &other, &device::inference());
    assert!(relative_gap(&moved[0], &reference[0]) > 1e-2);
}
