//! The network: a torchvision-exact ResNet18 whose feature list serves the classifier head, Grad-CAM and the
//! U-Net; its training policies; weights in and out; run folders.

pub mod backbone;
pub mod classifier;
pub mod conv;
pub mod fetch;
pub mod folded;
pub mod inference;
pub mod matmul;
pub mod pool;
pub mod resnet;
pub mod run;
pub mod unet;
pub mod weights;

pub use resnet::ResNet18;
