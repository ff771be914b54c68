//! Integration tests: one binary, one module per area.

mod bad_inputs;
mod cam;
mod cli;
mod common;
mod dataset;
mod docs;
mod inspect;
mod medical;
mod model;
mod phantom;
mod preprocess;
mod segmentation;
mod serve;
mod train;
