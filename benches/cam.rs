//! Benchmark: Grad-CAM maps per second (forward, backward to layer4, weights, post-processing to 224×224),
//! batch 16, median of 5 after 2 warm-ups. Compare with `tools/bench_torch_cam.py` (pytorch-grad-cam).

use burn::tensor::{Distribution, Tensor};
use std::time::Instant;
use tumornet::cam::{compute, CamMethod};
use tumornet::model::ResNet18;

fn main() {
    tumornet::allocator::tune();
    let batch = 16;
    let device = tumornet::device::training();
    device.seed(0);
    let model = ResNet18::new(4, &device);
    let x = Tensor::<4>::random(
        [batch, 3, 224, 224],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
        let mut times = Vec::new();
        for pass in 0..7 {
            let start = Instant::now();
            let cams = compute(&model, x.clone(), method, &[]).expect("cam");
            let maps = cams.finished_all(224, 224);
            assert_eq!(maps.len(), batch);
            if pass >= 2 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "burn flex {} batch={batch}: median {:.0} ms, {:.1} CAMs/s",
            method.name(),
            median * 1e3,
            batch as f64 / median
        );
    }
}
