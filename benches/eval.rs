//! Benchmark: ResNet18 inference (eval mode, 224×224) images/s at several batch sizes, through burn's own layers
//! and through the folded path `predict` uses (BatchNorm in the convolutions), median of 5 timed
//! passes after 2 warm-up passes (the same measurement as `tumornet bench --mode eval`). Run:
//! `cargo bench --bench eval [-- 16 64]`. Compare with `tools/bench_torch_eval.py` on the same machine.

fn main() -> anyhow::Result<()> {
    tumornet::allocator::tune();
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batches = if batches.is_empty() {
        vec![16, 64]
    } else {
        batches
    };
    for batch in batches {
        let layers = tumornet::commands::bench::bench_eval_layers(batch, 2, 5)?;
        let folded = tumornet::commands::bench::bench_eval(batch, 2, 5)?;
        for (name, r) in [("burn layers", layers), ("folded", folded)] {
            println!(
                "{name} eval batch={batch}: median {:.1} ms, {:.1} images/s",
                r.median_step_s * 1e3,
                r.images_per_s
            );
        }
    }
    Ok(())
}
