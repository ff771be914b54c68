//! The steps a user runs, as library functions with typed settings: each reads its inputs, runs the algorithms
//! of the layers below, and writes its results and figures. Commands parse arguments into these settings and
//! print; `demo` chains the steps.

pub mod analysis;
pub mod classifier;
pub mod demo;
pub mod explain;
pub mod pseudo_masks;
pub mod report;
pub mod unet;
