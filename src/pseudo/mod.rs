//! Pseudo-segmentation: class activation maps made into pseudo-masks by a typed [`recipe::Recipe`], the folder's
//! manifest, and merging folders made in shards.

pub mod manifest;
pub mod masker;
pub mod merge;
pub mod recipe;

pub use manifest::{read_manifest, PseudoEntry, PseudoManifest, MANIFEST, SIDE};
pub use recipe::{Gate, Recipe};
