//! One file per subcommand; each exposes `run(&Args) -> anyhow::Result<()>`.

pub mod bench;
pub mod cam;
pub mod config;
pub mod demo;
pub mod evaluate;
pub mod inspect;
pub mod merge_masks;
pub mod predict;
pub mod pseudo_masks;
pub mod report;
pub mod segment;
pub mod serve;
pub mod synth;
pub mod train;
pub mod train_seg;
pub mod weights;

pub use crate::data::scan::scan_logged as scan_dataset;

pub use crate::progress::{load_batch, progress_bar};
