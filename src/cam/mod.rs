//! Class activation maps on `layer4` (or a shallower layer, or several fused), computed as pytorch-grad-cam
//! computes them.
//!
//! Every method differs only in its channel weights (pytorch-grad-cam's `get_cam_weights`): given layer4's
//! activations A and the gradients G of the target score with respect to them, a method returns weights W that
//! broadcast against A; the map is `ReLU(Σ_k W_k ⊙ A_k)`. Post-processing (per-image min-max, cv2-style bilinear
//! resize to the input size, min-max again) is shared and lives in [`postprocess`]. Computing is apart from
//! drawing: this module returns maps, `viz` draws them.

pub mod occlusion;
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
pub enum CamMethod {
    /// Grad-CAM: weights = mean gradient over H, W (Selvaraju et al. 2017).
    #[value(name = "grad-cam", alias = "gradcam")]
    #[serde(rename = "grad-cam", alias = "gradcam")]
    GradCam,
    /// Grad-CAM++: second-order weights (Chattopadhay et al. 2018).
    #[value(name = "grad-cam++", alias = "gradcam++", alias = "grad-cam-plus-plus")]
    #[serde(
        rename = "grad-cam++",
        alias = "gradcam++",
        alias = "grad-cam-plus-plus"
    )]
    GradCamPlusPlus,
    /// HiResCAM: element-wise gradient ⊙ activation (Draelos & Carin 2020).
    #[value(name = "hirescam", alias = "hi-res-cam")]
    #[serde(rename = "hirescam", alias = "hi-res-cam")]
    HiResCam,
    /// LayerCAM: element-wise ReLU(gradient) ⊙ activation (Jiang et al. 2021).
    #[value(name = "layercam", alias = "layer-cam")]
    #[serde(rename = "layercam", alias = "layer-cam")]
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
/// pytorch-grad-cam's usual choice) sees the whole class evidence; each shallower layer halves the cell size, which
/// matters for lesions smaller than a layer4 cell; `fused` averages the maps of layer1, layer2 and layer3, as
/// LayerCAM's paper does for fine localisation and as pytorch-grad-cam does with several target layers.
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
    /// layer1 (56×56 at 224²).
    Layer1,
    /// layer2 (28×28).
    Layer2,
    /// layer3 (14×14).
    Layer3,
    /// layer4 (7×7).
    #[default]
    Layer4,
    /// layer1, layer2 and layer3: each map scaled to [0, 1] and resized, then averaged and scaled again
    /// (pytorch-grad-cam with those three target layers).
    Fused,
}

impl CamLayer {
    /// The name users type (`layer3`, `fused`).
    pub fn name(self) -> &'static str {
        match self {
            CamLayer::Layer1 => "layer1",
            CamLayer::Layer2 => "layer2",
            CamLayer::Layer3 => "layer3",
            CamLayer::Layer4 => "layer4",
            CamLayer::Fused => "fused",
        }
    }

    /// The residual stages (1–4) whose maps make this layer's map, shallowest first.
    pub fn stages(self) -> &'static [usize] {
        match self {
            CamLayer::Layer1 => &[1],
            CamLayer::Layer2 => &[2],
            CamLayer::Layer3 => &[3],
            CamLayer::Layer4 => &[4],
            CamLayer::Fused => &[1, 2, 3],
        }
    }
}

/// Raw maps of one layer for a batch.
pub struct LayerMaps {
    /// `[N][h·w]` ReLU'd maps at the layer's resolution, before any scaling.
    pub raw: Vec<Vec<f32>>,
    pub height: usize,
    pub width: usize,
}

/// Maps for a batch: the raw maps of each layer used and what the model predicted.
pub struct CamBatch {
    /// One entry per layer, shallowest first (one for every [`CamLayer`] but `fused`).
    pub layers: Vec<LayerMaps>,
    /// Class each map explains.
    pub targets: Vec<usize>,
    /// Softmax probabilities per image.
    pub probabilities: Vec<Vec<f32>>,
}

impl CamBatch {
    /// Image `i`'s final `out_h`×`out_w` map in [0, 1]: per layer ReLU, min-max, resize; the mean over the
    /// layers, min-max again (pytorch-grad-cam's `compute_cam_per_layer` and `aggregate_multi_layers`; for one
    /// layer this is [`postprocess::finish`]).
    pub fn finished(&self, i: usize, out_h: usize, out_w: usize) -> Vec<f32> {
        let mut sum = vec![0f32; out_h * out_w];
        for layer in &self.layers {
            let Some(raw) = layer.raw.get(i) else {
                continue;
            };
            let big = postprocess::scaled_resized(raw, layer.height, layer.width, out_h, out_w);
            for (s, v) in sum.iter_mut().zip(big) {
                *s += v.max(0.0);
            }
        }
        let count = self.layers.len().max(1) as f32;
        for s in sum.iter_mut() {
            *s /= count;
        }
        postprocess::min_max(&mut sum);
        sum
    }

    /// [`CamBatch::finished`] for every image.
    pub fn finished_all(&self, out_h: usize, out_w: usize) -> Vec<Vec<f32>> {
        (0..self.targets.len())
            .map(|i| self.finished(i, out_h, out_w))
            .collect()
    }
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

/// [`compute`] on `layer`. The shallowest stage's output is made a leaf that requires a gradient (nothing below
/// it is differentiated); each deeper stage used gets a zero tensor added as a further leaf, whose gradient is
/// the gradient with respect to that stage's output — one backward pass serves every layer.
pub fn compute_at(
    model: &ResNet18,
    x: Tensor<4>,
    method: CamMethod,
    targets: &[Option<usize>],
    layer: CamLayer,
) -> Result<CamBatch, InferenceError> {
    let model = model.clone().freeze();
    let stages = layer.stages();
    let mut h = model.stem_pooled(x); // [N, 64, H/4, W/4]

    // (activations, leaf whose gradient is theirs) per stage used.
    let mut probes: Vec<(Tensor<4>, Tensor<4>)> = Vec::with_capacity(stages.len());
    for k in 1..=4 {
        h = model.stage(k, h); // [N, C_k, H/2^(k+1), W/2^(k+1)]
        if !stages.contains(&k) {
            continue;
        }
        if probes.is_empty() {
            h = h.detach().require_grad();
            probes.push((h.clone(), h.clone()));
        } else {
            let zero = Tensor::<4>::zeros(h.dims(), &h.device()).require_grad();
            h = h + zero.clone();
            probes.push((h.clone(), zero));
        }
    }
    let logits = model.head(h); // [N, classes]
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
    let mut layers = Vec::with_capacity(probes.len());
    for (acts, leaf) in probes {
        let g = leaf
            .grad(&grads)
            .ok_or_else(|| InferenceError::Readback("no gradient reached the CAM layer".into()))?; // [N, K, h, w]
        let a = acts.inner(); // [N, K, h, w]
        let [_, _, height, width] = a.dims();
        let cam = relu(method.weights(a.clone(), g).mul(a).sum_dim(1)); // [N, 1, h, w]
        let raw = values(cam)?
            .chunks(height * width)
            .map(<[f32]>::to_vec)
            .collect();
        layers.push(LayerMaps { raw, height, width });
    }
    Ok(CamBatch {
        layers,
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
    for (layer, back_layer) in first.layers.iter_mut().zip(&mirrored.layers) {
        let (h, w) = (layer.height, layer.width);
        for (map, back) in layer.raw.iter_mut().zip(&back_layer.raw) {
            for y in 0..h {
                for x in 0..w {
                    map[y * w + x] = 0.5 * (map[y * w + x] + back[y * w + (w - 1 - x)]);
                }
            }
        }
    }
    Ok(first)
}
