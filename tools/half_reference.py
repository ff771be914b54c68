#!/usr/bin/env python3
"""Dev-time: a half-precision checkpoint written by PyTorch itself, for tests/it/model.rs.

The 4-class formula model of tools/resnet_reference.py, cast with `model.half()` as a notebook would, saved with
safetensors' `save_file`; only conv1, bn1 and fc are kept, so the fixture stays small (≈ 24 KB):
  tests/fixtures/resnet/half_partial.safetensors
Run: /opt/ref/bin/python tools/half_reference.py  (torch, torchvision, safetensors, numpy)
"""
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from resnet_reference import formula_model  # noqa: E402

OUT = Path("tests/fixtures/resnet")
model = formula_model(4)
model.half()
kept = {k: v.contiguous() for k, v in model.state_dict().items()
        if k.split(".")[0] in ("conv1", "bn1", "fc") and not k.endswith("num_batches_tracked")}
save_file(kept, str(OUT / "half_partial.safetensors"))
print("wrote", OUT / "half_partial.safetensors", {k: str(v.dtype) for k, v in kept.items()})
