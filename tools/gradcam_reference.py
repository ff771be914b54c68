#!/usr/bin/env python3
"""Dev-time: pytorch-grad-cam reference maps for tests/it/cam.rs.

The 4-class model uses the formula weights of tools/resnet_reference.py (the first 4 rows of its fc) and its formula
input (images 0 and 1). Writes under tests/fixtures/cam/:
  gradcam.f32        [2, 224, 224] Grad-CAM maps, little-endian f32: image 0 for its predicted class, image 1 for
                     class 3 (its class-2 map is all zero after the ReLU: a degenerate check)
  {gradcam++,hirescam,layercam}.f16  [224, 224] image 0, predicted class, little-endian f16
  layercam-layer3.f16  [224, 224] image 0, predicted class, LayerCAM on layer3 (14×14 before resizing)
  layercam-fused.f16   [224, 224] the same with target layers layer1, layer2 and layer3 (pytorch-grad-cam's
                       multi-layer aggregation: per-layer scale and resize, mean, scale)
  {hirescam,gradcam}-layer3.f16  [224, 224] image 0, predicted class, on layer3: there the gradient varies over
                       the positions, so HiResCAM (element-wise) and Grad-CAM (mean gradient) differ, unlike on
                       layer4 where global average pooling makes them equal
  targets.json       the classes explained
Run: /opt/ref/bin/python tools/gradcam_reference.py  (torch, torchvision, grad-cam 1.5.x)
"""
import json
import sys
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, str(Path(__file__).parent))
from resnet_reference import formula_input, formula_model  # noqa: E402

OUT = Path("tests/fixtures/cam")
OUT.mkdir(parents=True, exist_ok=True)
model = formula_model(4)
x = torch.from_numpy(formula_input()[:2].copy())
with torch.no_grad():
    predicted = model(x).argmax(1).tolist()
targets = [predicted[0], 3]
maps = GradCAM(model=model, target_layers=[model.layer4[-1]])(
    input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
maps.astype("<f4").tofile(OUT / "gradcam.f32")
for name, method in [("gradcam++", GradCAMPlusPlus), ("hirescam", HiResCAM), ("layercam", LayerCAM)]:
    m = method(model=model, target_layers=[model.layer4[-1]])(input_tensor=x[:1], targets=[ClassifierOutputTarget(targets[0])])
    m[0].astype("<f2").tofile(OUT / f"{name}.f16")
m = LayerCAM(model=model, target_layers=[model.layer3[-1]])(input_tensor=x[:1], targets=[ClassifierOutputTarget(targets[0])])
m[0].astype("<f2").tofile(OUT / "layercam-layer3.f16")
for name, method in [("hirescam", HiResCAM), ("gradcam", GradCAM)]:
    m = method(model=model, target_layers=[model.layer3[-1]])(input_tensor=x[:1], targets=[ClassifierOutputTarget(targets[0])])
    m[0].astype("<f2").tofile(OUT / f"{name}-layer3.f16")
m = LayerCAM(model=model, target_layers=[model.layer1[-1], model.layer2[-1], model.layer3[-1]])(
    input_tensor=x[:1], targets=[ClassifierOutputTarget(targets[0])])
m[0].astype("<f2").tofile(OUT / "layercam-fused.f16")
(OUT / "targets.json").write_text(json.dumps({"targets": targets, "predicted": predicted}))
import pytorch_grad_cam
print("grad-cam", getattr(pytorch_grad_cam, "__version__", "?"), "targets", targets, "predicted", predicted)
