#!/usr/bin/env python3
"""Dev-time: PyTorch reference for the occlusion maps and deletion checks (tests/it/cam.rs).

The 4-class formula model of tools/gradcam_reference.py with its fc weight × 300, on a formula image (8-bit grey, R = G = B):
  v(x, y) = (3x + 5y) mod 200, plus 55 inside the disc of radius 30 around (x, y) = (150, 80); 224×224.
Writes under tests/fixtures/cam/:
  occlusion.f32   [224, 224] occlusion map for the predicted class, 96-pixel black windows at origins 0, 80, 128
                  on each axis (stride 80, the last window flush with the edge): per pixel, the mean over the
                  windows covering it of p(class) − p(class | window black), floored at 0; little-endian f32
  occlusion.json  the class, its probability, and the probabilities after blacking out two 128×128 masks
                  upsampled to 224 by nearest neighbour (PIL's convention: source = floor((x + 0.5)·128/224)):
                  "disc" (x − 86)² + (y − 46)² ≤ 17², "left" x < 64
Run: /opt/ref/bin/python tools/occlusion_reference.py  (torch, torchvision, numpy)
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from resnet_reference import formula_tensor  # noqa: E402

OUT = Path("tests/fixtures/cam")
FC_SCALE = 300.0  # sharpens the formula model's near-uniform softmax so occlusion moves it
keys = json.loads(Path("tests/fixtures/resnet/keys.json").read_text())
sd = {}
for i, (k, s) in enumerate(keys):
    v = torch.from_numpy(formula_tensor(i, k, tuple(s)))
    sd[k] = v[:4].clone() if k.startswith("fc.") else v
sd["fc.weight"] = sd["fc.weight"] * FC_SCALE
model = torchvision.models.resnet18(num_classes=4)
model.load_state_dict(sd)
model.eval()

y, x = np.mgrid[0:224, 0:224]
grey = (3 * x + 5 * y) % 200 + 55 * ((x - 150) ** 2 + (y - 80) ** 2 <= 30 ** 2)
image = np.repeat(grey.astype(np.uint8)[None], 3, 0)  # [3, 224, 224] uint8
mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def probs(batch):
    """uint8 [N, 3, 224, 224] → softmax [N, 4] (ToTensor + Normalize)."""
    t = (torch.from_numpy(batch).float() / 255 - mean) / std
    with torch.no_grad():
        return torch.softmax(model(t), 1).numpy()


base = probs(image[None])[0]
target = int(base.argmax())
patch, origins = 96, [0, 80, 128]
windows = [(oy, ox) for oy in origins for ox in origins]
batch = np.repeat(image[None], len(windows), 0)
for k, (oy, ox) in enumerate(windows):
    batch[k, :, oy:oy + patch, ox:ox + patch] = 0
after = probs(batch)[:, target]
total = np.zeros((224, 224))
count = np.zeros((224, 224))
for (oy, ox), p in zip(windows, after):
    total[oy:oy + patch, ox:ox + patch] += base[target] - p
    count[oy:oy + patch, ox:ox + patch] += 1
occlusion = np.maximum(total / count, 0).astype("<f4")
occlusion.tofile(OUT / "occlusion.f32")

my, mx = np.mgrid[0:128, 0:128]
masks = {"disc": (mx - 86) ** 2 + (my - 46) ** 2 <= 17 ** 2, "left": mx < 64}
source = np.floor((np.arange(224) + 0.5) * 128 / 224).astype(int)
removed = {}
for name, mask in masks.items():
    big = mask[source][:, source]
    img = image.copy()
    img[:, big] = 0
    removed[name] = float(probs(img[None])[0, target])
(OUT / "occlusion.json").write_text(json.dumps(
    {"target": target, "probability": float(base[target]), "removed": removed,
     "window_probabilities": [float(p) for p in after]}, indent=1))
print("target", target, "p", base[target], "windows", after, "removed", removed, "max map", occlusion.max())
