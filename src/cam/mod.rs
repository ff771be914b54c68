//! Class activation maps on `layer4` (or `layer3`), computed as pytorch-grad-cam computes them.
//!
//! Every method differs only in its channel weights (pytorch-grad-cam's `get_cam_weights`): given layer4's
//! activations A and the gradients G of the target score with respect to them, a method returns weights W that
//! broadcast against A; the map is `ReLU(Σ_k W_k ⊙ A_k)`. Post-processing (per-image min-max, cv2-style bilinear
//! resize to the input size, min-max again) is shared and lives in [`postprocess`]. Computing is apart from
//! drawing: this module returns maps, `viz` draws them.

pub mod postprocess;
pub mod pseudo;
pub mod quality;
pub mod refine;

use crate::model::inference::{values, InferenceError};
use crate::model::ResNet18;
use burn::module::Module;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The CAM methods on offer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CamMethod {
    /// Grad-CAM: weights = mean gradient over H, W (Selvaraju et al. 2017).
    #[value(name = "grad-cam", alias = "gradcam")]
    GradCam,
    /// Grad-CAM++: second-order weights (Chattopadhay et al. 2018).
    #[value(name = "grad-cam++", alias = "gradcam++", alias = "grad-cam-plus-plus")]
    GradCamPlusPlus,
    /// HiResCAM: element-wise gradient ⊙ activation (Draelos & Carin 2020).
    #[value(name = "hirescam", alias = "hi-res-cam")]
    HiResCam,
    /// LayerCAM: element-wise ReLU(gradient) ⊙ activation (Jiang et al. 2021).
    #[value(name = "layercam", alias = "layer-cam")]
    LayerCam,
}

impl CamMethod {
    pub const ALL: [CamMethod; 4] = [
        CamMethod::GradCam,
        CamMethod::GradCamPlusPlus,
        CamMethod::HiResCam,
        CamMethod::LayerCam,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "grad-cam",
            CamMethod::GradCamPlusPlus => "grad-cam++",
            CamMethod::HiResCam => "hirescam",
            CamMethod::LayerCam => "layercam",
        }
    }

    /// The one override point: weights for activations `a` and gradients `g` (both `[N, K, H, W]`), broadcastable
    /// to `[N, K, H, W]`.
    pub fn weights(self, a: Tensor<4>, g: Tensor<4>) -> Tensor<4> {
        match self {
            CamMethod::GradCam => g.mean_dims(&[2, 3]), // [N, K, 1, 1]
            CamMethod::GradCamPlusPlus => {
                // pytorch-grad-cam: aij = g² / (2g² + Σ_hw(A)·g³ + 1e-6), zero where g = 0; w = Σ_hw(ReLU(g)·aij).
                let g2 = g.clone().powi_scalar(2); // [N, K, H, W]
                let g3 = g.clone().powi_scalar(3); // [N, K, H, W]
                let sum_a = a.sum_dims(&[2, 3]); // [N, K, 1, 1]
                let aij = g2
                    .clone()
                    .div(g2.mul_scalar(2.0).add(sum_a.mul(g3)).add_scalar(1e-6)); // [N, K, H, W]
                let aij = aij.mask_fill(g.clone().equal_elem(0.0), 0.0);
                relu(g).mul(aij).sum_dims(&[2, 3]) // [N, K, 1, 1]
            }
            CamMethod::HiResCam => g,       // [N, K, H, W]
            CamMethod::LayerCam => relu(g), // [N, K, H, W]
        }
    }
}

/// The layer whose activations and gradients make the map. `layer4` (7×7 at 224², the seed's and
/// pytorch-grad-cam's usual choice) sees the whole class evidence; `layer3` (14×14) halves the cell size, which
/// matters for lesions smaller than a layer4 cell (LayerCAM's paper fuses shallower layers for that reason).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CamLayer {
    Layer3,
    #[default]
    Layer4,
}

/// Maps for a batch: the raw maps at the chosen layer's resolution and what the model predicted.
pub struct CamBatch {
    /// `[N][h·w]` ReLU'd maps at layer4 resolution, before any scaling.
    pub raw: Vec<Vec<f32>>,
    pub height: usize,
    pub width: usize,
    /// Class each map explains.
    pub targets: Vec<usize>,
    /// Softmax probabilities per image.
    pub probabilities: Vec<Vec<f32>>,
}

/// Compute `method`'s maps for a normalised batch `x` (`[N, 3, H, W]`) with `model` on an autodiff device, for
/// `targets` (the predicted class where `None`). The model is used frozen: eval-mode BatchNorm, no parameter
/// gradients — only layer4's output is made a leaf that requires a gradient.
pub fn compute(
    model: &ResNet18,
    x: Tensor<4>,
    method: CamMethod,
    targets: &[Option<usize>],
) -> Result<CamBatch, InferenceError> {
    compute_at(model, x, method, targets, CamLayer::Layer4)
}

/// [`compute`] on `layer`: its output is the leaf whose activations and gradients make the map.
pub fn compute_at(
    model: &ResNet18,
    x: Tensor<4>,
    method: CamMethod,
    targets: &[Option<usize>],
    layer: CamLayer,
) -> Result<CamBatch, InferenceError> {
    let model = model.clone().freeze();
    let layer3 = model.to_layer3(x); // [N, 256, h3, w3]
    let (acts, logits) = match layer {
        CamLayer::Layer4 => {
            let acts = model.layer4(layer3).detach().require_grad(); // [N, 512, h, w]
            let logits = model.head(acts.clone()); // [N, classes]
            (acts, logits)
        }
        CamLayer::Layer3 => {
            let acts = layer3.detach().require_grad(); // [N, 256, h3, w3]
            let logits = model.head(model.layer4(acts.clone())); // [N, classes]
            (acts, logits)
        }
    };
    let [n, classes] = logits.dims();
    let probabilities: Vec<Vec<f32>> = values(softmax(logits.clone().detach(), 1))?
        .chunks(classes)
        .map(<[f32]>::to_vec)
        .collect();
    let chosen: Vec<usize> = probabilities
        .iter()
        .zip(targets.iter().chain(std::iter::repeat(&None)))
        .map(|(p, t)| t.unwrap_or_else(|| crate::metrics::argmax(p).0))
        .collect();
    let mut onehot = vec![0f32; n * classes];
    for (i, c) in chosen.iter().enumerate() {
        onehot[i * classes + c.min(&(classes - 1))] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n, classes]), &logits.device());
    let score = (logits * onehot).sum(); // [1]
    let grads = score.backward();
    let g = acts
        .grad(&grads)
        .ok_or_else(|| InferenceError::Readback("no gradient reached the CAM layer".into()))?; // [N, K, h, w]
    let a = acts.inner(); // [N, K, h, w]
    let [_, _, height, width] = a.dims();
    let cam = relu(method.weights(a.clone(), g).mul(a).sum_dim(1)); // [N, 1, h, w]
    let raw = values(cam)?
        .chunks(height * width)
        .map(<[f32]>::to_vec)
        .collect();
    Ok(CamBatch {
        raw,
        height,
        width,
        targets: chosen,
        probabilities,
    })
}

/// [`compute`], and with `flip_smooth` averaged with the map of the mirrored image mirrored back (pytorch-grad-cam's
/// `aug_smooth`, restricted to horizontal flips). The mirrored pass explains the classes chosen for the original
/// images; the probabilities reported are the original's.
pub fn compute_smoothed(
    model: &ResNet18,
    x: Tensor<4>,
    method: CamMethod,
    targets: &[Option<usize>],
    flip_smooth: bool,
    layer: CamLayer,
) -> Result<CamBatch, InferenceError> {
    let mut first = compute_at(model, x.clone(), method, targets, layer)?;
    if !flip_smooth {
        return Ok(first);
    }
    let chosen: Vec<Option<usize>> = first.targets.iter().map(|&t| Some(t)).collect();
    let mirrored = compute_at(model, x.flip([3]), method, &chosen, layer)?;
    let (h, w) = (first.height, first.width);
    for (map, back) in first.raw.iter_mut().zip(&mirrored.raw) {
        for y in 0..h {
            for x in 0..w {
                map[y * w + x] = 0.5 * (map[y * w + x] + back[y * w + (w - 1 - x)]);
            }
        }
    }
    Ok(first)
}
