//! Which parts of the ResNet18 learn, and how its BatchNorm layers behave while others learn.
//!
//! BatchNorm semantics, decided on purpose: a frozen part is frozen completely — its parameters get no
//! gradient, and its BatchNorm layers normalise with their running statistics and never update them (burn's
//! `freeze()`: eval-mode BN on the training device). Parts that learn keep train-mode BN (batch statistics,
//! running statistics updated), as PyTorch's `model.train()` does. This differs from the seed notebook, where
//! `requires_grad=False` left the frozen backbone's BN in train mode, normalising with batch statistics and
//! drifting its running statistics towards the MRI data; the training stage offers a recalibration of the
//! frozen running statistics on the training images for that effect, measured rather than assumed.

use super::resnet::ResNet18;
use burn::module::Module;
use serde::{Deserialize, Serialize};

/// What learns in a training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainable {
    /// Stage `baseline`: only `fc`; the backbone is frozen.
    Head,
    /// Stage `finetune`: `layer4` and `fc`; conv1 … layer3 frozen.
    Layer4AndHead,
    /// Stage `full`: everything.
    All,
}

impl Trainable {
    /// Apply this policy to a model that lives on the training (autodiff) device, whatever an earlier stage
    /// froze: everything is unfrozen first.
    pub fn apply(self, model: ResNet18) -> ResNet18 {
        let mut model = model.unfreeze();
        let freeze_to_layer3 = matches!(self, Trainable::Head | Trainable::Layer4AndHead);
        if freeze_to_layer3 {
            model.conv1 = model.conv1.freeze();
            model.bn1 = model.bn1.freeze();
            model.layer1 = model.layer1.freeze();
            model.layer2 = model.layer2.freeze();
            model.layer3 = model.layer3.freeze();
        }
        if self == Trainable::Head {
            model.layer4 = model.layer4.freeze();
        }
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};

    fn running_mean_sum(model: &ResNet18) -> (f32, f32) {
        let sum = |t: Tensor<1>| t.sum().into_scalar::<f32>();
        (
            sum(model.layer3[0].bn1.running_mean.value_sync()),
            sum(model.layer4[0].bn1.running_mean.value_sync()),
        )
    }

    #[test]
    fn frozen_parts_keep_running_statistics_and_learning_parts_update_them() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.5, 1.0), &device);
        for (policy, layer4_updates) in [(Trainable::Head, false), (Trainable::Layer4AndHead, true)]
        {
            let model = policy.apply(ResNet18::new(4, &device));
            let before = running_mean_sum(&model);
            let _ = model.forward(x.clone());
            let after = running_mean_sum(&model);
            assert_eq!(
                before.0, after.0,
                "{policy:?}: frozen layer3 BN must not move"
            );
            assert_eq!(
                before.1 != after.1,
                layer4_updates,
                "{policy:?}: layer4 BN update"
            );
        }
    }

    #[test]
    fn only_learning_parts_receive_gradients() {
        let device = Device::flex().autodiff();
        let model = Trainable::Layer4AndHead.apply(ResNet18::new(4, &device));
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let grads = model.forward(x).sum().backward();
        assert!(model.fc.weight.val().grad(&grads).is_some());
        assert!(model.layer4[1].conv2.weight.val().grad(&grads).is_some());
        assert!(model.layer3[1].conv2.weight.val().grad(&grads).is_none());
        assert!(model.conv1.weight.val().grad(&grads).is_none());
    }
}
