#!/usr/bin/env python3
"""Dev-time: segmentation_models_pytorch reference for the U-Net interop test (tests/it/segmentation.rs).

`smp.Unet("resnet18", encoder_weights=None, classes=1)` gets the formula weights of tools/resnet_reference.py (the
same `formula_tensor`, numbered in smp's state-dict order), so no 57 MB of weights are committed. Writes, under
tests/fixtures/smp/:
  keys.json     [name, shape] of every state-dict tensor, in smp's order
  logits.f32    [1, 1, 64, 64] mask logits (little-endian f32), eval mode, for the top-left 64×64 crop of
                resnet_reference.formula_input(1)
Run: /opt/ref/bin/python tools/smp_reference.py  (torch, segmentation-models-pytorch, numpy)
"""
import json
import sys
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch

sys.path.insert(0, str(Path(__file__).parent))
from resnet_reference import formula_input, formula_tensor  # noqa: E402

OUT = Path("tests/fixtures/smp")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = smp.Unet("resnet18", encoder_weights=None, classes=1)
    sd = model.state_dict()
    keys = [[k, list(v.shape)] for k, v in sd.items()]
    (OUT / "keys.json").write_text(json.dumps(keys))
    values = {k: torch.from_numpy(formula_tensor(i, k, tuple(s))) for i, (k, s) in enumerate(keys)}
    model.load_state_dict(values, strict=True)
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(formula_input(1)[:, :, :64, :64]))
    with torch.no_grad():
        logits = model(x)
    logits.numpy().astype("<f4").tofile(OUT / "logits.f32")
    print(f"torch {torch.__version__}, smp {smp.__version__}: {len(keys)} tensors; logits {tuple(logits.shape)}",
          f"mean {logits.mean().item():.6f}, std {logits.std().item():.6f}, [0,0,0,:4] {logits[0, 0, 0, :4].tolist()}")


if __name__ == "__main__":
    main()
