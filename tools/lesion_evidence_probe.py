#!/usr/bin/env python3
"""Dev-time: where is a TumorNet classifier's evidence, and which fill removes it? For the tumour images of a
phantom set's Testing/ split (true masks under masks/), the mean probability of the true class
  - after the true lesion (dilated by 3 pixels) is filled: black (0), Gaussian blur (σ 10), harmonic (Laplace)
    in-painting from its border, harmonic + noise of the border's spread, the brain's median grey level;
  - with the lesion-free twins of `tumornet synth --without-lesions` (same seed, other folder): the twin, the
    original with only its lesion pixels taken from the twin, and the twin with the original's lesion pasted in.
A fill that the classifier reads as "no lesion" is one an occlusion map can use (the pseudo-mask recipe's occlusion uses
black); the twin swaps say whether the evidence lies inside the lesion's pixels at all.
Usage: /opt/ref/bin/python tools/lesion_evidence_probe.py RUN DATA TWINS [IMAGES_PER_CLASS]
"""
import glob
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from torch_run import load_run  # noqa: E402

run, data, twins = sys.argv[1], sys.argv[2], sys.argv[3]
per_class = int(sys.argv[4]) if len(sys.argv) > 4 else 30
torch.set_num_threads(2)
model, config, tf = load_run(run)
classes = config["classes"]
rng = np.random.default_rng(0)


def harmonic(a, region, iterations=400):
    out = a.copy()
    out[region] = a[ndi.binary_dilation(region) & ~region].mean()
    for _ in range(iterations):
        s = (np.roll(out, 1, 0) + np.roll(out, -1, 0) + np.roll(out, 1, 1) + np.roll(out, -1, 1)) / 4
        out[region] = s[region]
    return out


def probability(grey, c):
    x = tf(Image.fromarray(grey.clip(0, 255).astype(np.uint8)).convert("RGB"))[None]
    with torch.no_grad():
        return torch.softmax(model(x), 1)[0, c].item()


for cls in [c for c in classes if c not in ("notumor", "no_tumor")]:
    c = classes.index(cls)
    rows = {}
    for f in sorted(glob.glob(f"{data}/Testing/{cls}/*"))[:per_class]:
        name = os.path.basename(f)
        stem = os.path.splitext(name)[0]
        a = np.asarray(Image.open(f).convert("L")).astype(np.float32)
        truth = Image.open(f"{data}/masks/Testing/{cls}/{stem}.png").convert("L")
        t = np.asarray(truth.resize((a.shape[1], a.shape[0]), Image.NEAREST)) > 127
        region = ndi.binary_dilation(t, iterations=3)
        border = ndi.binary_dilation(region, iterations=4) & ~region
        variants = {"original": a}
        for label, fill in [("black", 0.0), ("blur 10", ndi.gaussian_filter(a, 10)),
                            ("harmonic", harmonic(a, region)), ("brain median", np.median(a[a > 20]))]:
            v = a.copy()
            v[region] = fill[region] if isinstance(fill, np.ndarray) else fill
            variants[label] = v
        v = harmonic(a, region)
        v[region] += rng.normal(0, a[border].std(), region.sum())
        variants["harmonic + noise"] = v
        twin_path = f"{twins}/Testing/{cls}/{name}"
        if os.path.exists(twin_path):
            b = np.asarray(Image.open(twin_path).convert("L")).astype(np.float32)
            variants["twin"] = b
            v = a.copy()
            v[t] = b[t]
            variants["original, lesion pixels from twin"] = v
            v = b.copy()
            v[t] = a[t]
            variants["twin, lesion pixels pasted in"] = v
        for label, grey in variants.items():
            rows.setdefault(label, []).append(probability(grey, c))
    print(f"{cls} ({len(rows['original'])} images): mean p({cls})")
    for label, values in rows.items():
        print(f"  {label:36s} {np.mean(values):.2f}")
