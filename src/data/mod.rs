//! Everything before the model: classes, dataset scanning, decoding, preprocessing, the batcher, the phantom.

pub mod audit;
pub mod batcher;
pub mod classes;
pub mod decode;
pub mod inputs;
pub mod medical;
pub mod phantom;
pub mod preprocess;
pub mod provenance;
pub mod scan;
pub mod shard;

pub use classes::Class;
