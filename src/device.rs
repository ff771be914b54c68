//! The one place that names a compute backend.

use burn::tensor::Device;

/// The device inference runs on: burn's `flex` CPU backend.
pub fn inference() -> Device {
    Device::flex()
}

/// The device training runs on: `flex` with autodiff.
pub fn training() -> Device {
    Device::flex().autodiff()
}
