#!/usr/bin/env python3
"""Dev-time: a half-precision checkpoint written by PyTorch itself, for tests/it/model.rs.

The 4-class formula model of tools/resnet_reference.py, cast with `model.half()` as a notebook would, saved with
safetensors' `save_file`; only conv1, bn1 and fc are kept, so the fixture stays small (≈ 24 KB):
  tests/fixtures/resnet/half_partial.safetensors
Run: /opt/ref/bin/python tools/half_reference.py  (torch, torchvision, safetensors, numpy)
"""
import json
import sys
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from resnet_reference import formula_tensor  # noqa: E402

OUT = Path("tests/fixtures/resnet")
keys = json.loads((OUT / "keys.json").read_text())
sd = {}
for i, (k, s) in enumerate(keys):
    v = torch.from_numpy(formula_tensor(i, k, tuple(s)))
    sd[k] = v[:4].clone() if k.startswith("fc.") else v
model = torchvision.models.resnet18(num_classes=4)
model.load_state_dict(sd)
model.half()
kept = {k: v.contiguous() for k, v in model.state_dict().items()
        if k.split(".")[0] in ("conv1", "bn1", "fc") and not k.endswith("num_batches_tracked")}
save_file(kept, str(OUT / "half_partial.safetensors"))
print("wrote", OUT / "half_partial.safetensors", {k: str(v.dtype) for k, v in kept.items()})
