//! Progress bars and batch loading shared by the long-running steps.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with rate and ETA on stderr (hidden when stderr is not a terminal or output is quiet).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:>12} [{bar:32}] {pos}/{len} {per_sec:>10} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    if !tracing::enabled!(tracing::Level::INFO) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// Load every item of a batch in parallel: the ones that loaded come back with what they loaded as, in order;
/// each failure (its message names the file) goes to `errors` and advances `bar`.
pub fn load_batch<'a, I: Sync, T: Send>(
    chunk: &'a [I],
    load: impl Fn(&I) -> Result<T, String> + Sync,
    errors: &mut Vec<String>,
    bar: &ProgressBar,
) -> Vec<(&'a I, T)> {
    use rayon::prelude::*;
    let loaded: Vec<Result<T, String>> = chunk.par_iter().map(&load).collect();
    let mut ready = Vec::with_capacity(chunk.len());
    for (item, result) in chunk.iter().zip(loaded) {
        match result {
            Ok(value) => ready.push((item, value)),
            Err(e) => errors.push(e),
        }
    }
    bar.inc((chunk.len() - ready.len()) as u64);
    ready
}
