#!/usr/bin/env python3
"""Dev-time: PyTorch reference outputs for the ResNet18 parity tests (tests/it/model.rs).

Every tensor of torchvision's resnet18 state dict gets values from a fixed formula (below) that the Rust test
computes too, so no multi-MB weights are committed. Writes, under tests/fixtures/resnet/:
  keys.json         [name, shape] of every state-dict tensor, in torchvision's order
  input.f32         not written: the input is a formula too (see `formula_input`)
  pooled.f32        [3, 512] global-average-pooled layer4 features (little-endian f32), eval mode
  logits1000.f32    [3, 1000] logits of the 1000-class (ImageNet-layout) model, eval mode
  partial.pth       a torch.save'd state dict holding a few tensors (conv1, bn1, layer2.0.downsample, a 4-class
                    fc), to test the pickle path and key mapping
Run: /opt/ref/bin/python tools/resnet_reference.py  (torch, torchvision, numpy)
"""
import json
from pathlib import Path

import numpy as np
import torch
import torchvision

OUT = Path("tests/fixtures/resnet")


def formula_tensor(index, name, shape):
    """Deterministic values for tensor number `index` of the state dict."""
    n = int(np.prod(shape)) if shape else 1
    j = np.arange(n, dtype=np.float64)
    t = float(index)
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    if name.endswith("running_var"):
        v = 1.0 + 0.25 * np.sin(j * 0.9 + t) ** 2
    elif name.endswith("running_mean"):
        v = 0.1 * np.sin(j * 1.1 + t)
    elif len(shape) == 1 and name.endswith("weight"):   # BN gamma
        v = 1.0 + 0.1 * np.sin(j * 0.7 + t)
    elif len(shape) == 1 and name.endswith("bias"):     # BN beta, fc bias
        v = 0.1 * np.cos(j * 0.3 + t)
    elif len(shape) == 4:                                # conv [out, in, k, k]
        fan_in = shape[1] * shape[2] * shape[3]
        v = 2.0 / np.sqrt(fan_in) * np.sin(j * 0.61803 + t * 1.3)
    elif len(shape) == 2:                                # fc [out, in]
        v = 1.0 / np.sqrt(shape[1]) * np.sin(j * 0.61803 + t * 1.3)
    else:
        raise ValueError(name)
    return v.astype(np.float32).reshape(shape)


def formula_model(num_classes=4):
    """torchvision's resnet18 with the formula weights (a 4-class head takes the first rows of the 1000-class fc)."""
    keys = json.loads((OUT / "keys.json").read_text())
    sd = {}
    for i, (k, s) in enumerate(keys):
        v = torch.from_numpy(formula_tensor(i, k, tuple(s)))
        sd[k] = v[:num_classes].clone() if k.startswith("fc.") else v
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.load_state_dict(sd)
    return model.eval()


def formula_input(n=3):
    """[n, 3, 224, 224] normalised-image-like input."""
    nn_, c, h, w = np.meshgrid(np.arange(n), np.arange(3), np.arange(224), np.arange(224), indexing="ij")
    v = 1.5 * np.sin(0.05 * h + 0.031 * w * (c + 1) + nn_) * np.cos(0.02 * (h - w))
    return v.astype(np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = torchvision.models.resnet18()  # 1000 classes, the ImageNet layout
    sd = model.state_dict()
    keys = [[k, list(v.shape)] for k, v in sd.items()]
    (OUT / "keys.json").write_text(json.dumps(keys))
    values = {k: torch.from_numpy(formula_tensor(i, k, tuple(s))) for i, (k, s) in enumerate(keys)}
    model.load_state_dict(values)
    model.eval()
    x = torch.from_numpy(formula_input())
    with torch.no_grad():
        feats = model.layer4(model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))))
        pooled = feats.mean(dim=(2, 3))
        logits = model(x)
    pooled.numpy().astype("<f4").tofile(OUT / "pooled.f32")
    logits.numpy().astype("<f4").tofile(OUT / "logits1000.f32")
    subset = [k for k in values if k.startswith(("conv1.", "bn1.", "layer2.0.downsample."))]
    partial = {k: values[k] for k in subset}
    partial["fc.weight"] = values["fc.weight"][:4].clone()
    partial["fc.bias"] = values["fc.bias"][:4].clone()
    torch.save(partial, OUT / "partial.pth")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: {len(keys)} tensors;",
          f"logits[0,:4]={logits[0, :4].tolist()}; pooled mean {pooled.mean().item():.6f}")


if __name__ == "__main__":
    main()
