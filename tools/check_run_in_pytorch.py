#!/usr/bin/env python3
"""Dev-time: load a TumorNet run folder's model.safetensors into torchvision's resnet18 and predict images with
torchvision's own preprocessing (PIL open → convert("RGB") → Resize((224,224)) → ToTensor → Normalize), printing
one JSON row per image like `tumornet predict --json`, for comparison.
Usage: /opt/ref/bin/python tools/check_run_in_pytorch.py RUN IMAGE...
"""
import json
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from torch_run import load_run  # noqa: E402

run, images = sys.argv[1], sys.argv[2:]
model, config, tf = load_run(run)
rows = []
with torch.no_grad():
    for path in images:
        x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
        p = torch.softmax(model(x), 1)[0].tolist()
        rows.append({"file": path, "probabilities": dict(zip(config["classes"], p))})
print(json.dumps(rows, indent=1))
