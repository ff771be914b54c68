#!/usr/bin/env python3
"""Dev-time: load a TumorNet run folder's model.safetensors into torchvision's resnet18 and predict images with
torchvision's own preprocessing (PIL open → convert("RGB") → Resize((224,224)) → ToTensor → Normalize), printing
one JSON row per image like `tumornet predict --json`, for comparison.
Usage: /opt/ref/bin/python tools/check_run_in_pytorch.py RUN IMAGE...
"""
import json
import sys

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms

run, images = sys.argv[1], sys.argv[2:]
config = json.load(open(f"{run}/run.json"))
model = torchvision.models.resnet18(num_classes=len(config["classes"]))
result = model.load_state_dict(load_file(f"{run}/model.safetensors"), strict=False)
unexpected_missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
assert not unexpected_missing and not result.unexpected_keys, (unexpected_missing, result.unexpected_keys)
model.eval()
size = config["input_size"]
tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                         transforms.Normalize(config["mean"], config["std"])])
rows = []
with torch.no_grad():
    for path in images:
        x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
        p = torch.softmax(model(x), 1)[0].tolist()
        rows.append({"file": path, "probabilities": dict(zip(config["classes"], p))})
print(json.dumps(rows, indent=1))
