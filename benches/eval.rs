//! Benchmark: ResNet18 inference (eval mode, 224×224) images/s at several batch sizes, median of 5 timed
//! passes after 2 warm-up passes. Run: `cargo bench --bench eval [-- 16 64]`. Compare with
//! `tools/bench_torch_eval.py` on the same machine.

use burn::tensor::{Distribution, Tensor};
use std::time::Instant;
use tumornet::model::ResNet18;

fn main() {
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batches = if batches.is_empty() {
        vec![16, 64]
    } else {
        batches
    };
    let device = tumornet::device::inference();
    device.seed(0);
    let model = ResNet18::new(4, &device);
    for batch in batches {
        let x = Tensor::<4>::random(
            [batch, 3, 224, 224],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut times = Vec::new();
        for pass in 0..7 {
            let start = Instant::now();
            let logits = model.forward(x.clone());
            let _ = logits.into_data();
            if pass >= 2 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "burn flex eval batch={batch}: median {:.1} ms, {:.1} images/s (passes: {})",
            median * 1e3,
            batch as f64 / median,
            times
                .iter()
                .map(|t| format!("{:.0}", t * 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
