//! TumorNet: brain MRI tumour classification, Grad-CAM explanations and pseudo-segmentation.

pub mod allocator;
pub mod cam;
pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod progress;
pub mod pseudo;
pub mod report;
pub mod rng;
pub mod server;
pub mod settings;
pub mod train;
pub mod viz;
pub mod workflow;
