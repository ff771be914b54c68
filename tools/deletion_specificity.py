#!/usr/bin/env python3
"""Dev-time: is the deletion check's evidence specific to the lesion? For every tumour image of a phantom set
(a folder in the Kaggle layout with true masks under masks/, e.g. one class of a `tumornet synth` split), the
classifier's probability of the true class — read with `tumornet predict` — on:
  - the image as it is;
  - the true lesion blacked out (what `pseudo-masks --confirm-by-deletion` does to a candidate), or painted with
    the mean colour of a ring around it (3/128 of the side wide), each also with the lesion dilated by that ring;
  - the same lesion shape blacked out 20/128 of the side above or to the right of the lesion, or 40/128 above.
A removal that is specific to the lesion drops the probability only when it covers the lesion; one that drops it
wherever it lands near the lesion cannot tell a right candidate mask from a wrong one.
Prints, per class and imaging plane (from the phantom's phantom.json), the mean probability and how many images keep the
class, for each variant.

    /tmp/pyv/bin/python tools/deletion_specificity.py TUMORNET RUN DATA PHANTOM/phantom.json [WORK]

numpy and Pillow only (a throwaway venv: python3 -m venv /tmp/pyv && /tmp/pyv/bin/pip install numpy pillow).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image, ImageFilter

if len(sys.argv) < 5:
    sys.exit(__doc__)
tumornet, run, data, phantom_json = sys.argv[1:5]
work = sys.argv[5] if len(sys.argv) > 5 else "/tmp/deletion-specificity"
VARIANTS = ["original", "black", "black, dilated", "ring colour", "ring colour, dilated",
            "black 20 up", "black 20 right", "black 40 up"]
with open(phantom_json) as f:
    phantom = json.load(f)
plane = {os.path.splitext(os.path.basename(i["image"]))[0]: i["plane"] for i in phantom["images"]}


def dilated(mask, r):
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.array(img.filter(ImageFilter.MaxFilter(2 * r + 1))) > 127


for index in range(len(VARIANTS)):  # no stale images from an earlier run in WORK
    shutil.rmtree(os.path.join(work, str(index)), ignore_errors=True)
truth = {}  # stem -> true class folder
for split in ("Training", "Testing"):
    for cls in sorted(os.listdir(os.path.join(data, split))) if os.path.isdir(os.path.join(data, split)) else []:
        mask_dir = os.path.join(data, "masks", split, cls)
        if not os.path.isdir(mask_dir):
            continue
        for name in sorted(os.listdir(os.path.join(data, split, cls))):
            stem = os.path.splitext(name)[0]
            image = np.array(Image.open(os.path.join(data, split, cls, name)).convert("RGB"))
            lesion = np.array(Image.open(os.path.join(mask_dir, stem + ".png")).convert("L")) > 127
            if not lesion.any():
                continue
            truth[stem] = cls
            side = image.shape[0]
            r, k = max(1, round(3 * side / 128)), round(20 * side / 128)
            out = {"original": image}
            for suffix, m in (("", lesion), (", dilated", dilated(lesion, r))):
                ring = dilated(m, r) & ~m
                black, painted = image.copy(), image.copy()
                black[m] = 0
                painted[m] = image[ring].mean(axis=0).round().astype(np.uint8)
                out["black" + suffix], out["ring colour" + suffix] = black, painted
            for name_, (dy, dx) in (("black 20 up", (-k, 0)), ("black 20 right", (0, k)),
                                    ("black 40 up", (-2 * k, 0))):
                moved = np.roll(np.roll(lesion, dy, axis=0), dx, axis=1)
                copy = image.copy()
                copy[moved] = 0
                out[name_] = copy
            for variant, pixels in out.items():
                folder = os.path.join(work, VARIANTS.index(variant).__str__())
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(pixels).save(os.path.join(folder, stem + ".png"))
if not truth:
    sys.exit(f"{data}: no tumour images with true masks")

print(f"{len(truth)} tumour images; mean probability of the true class (images still given it)")
results = {}  # variant -> (class, plane) -> [(p, kept)]
for index, variant in enumerate(VARIANTS):
    folder = os.path.join(work, str(index))
    result = subprocess.run([tumornet, "-q", "predict", run, folder, "--json"], check=True,
                            capture_output=True, text=True)
    cells = results.setdefault(variant, {})
    for entry in json.loads(result.stdout):
        stem = os.path.splitext(os.path.basename(entry["file"]))[0]
        cls = truth[stem]
        cells.setdefault((cls, plane[stem]), []).append((entry["probabilities"][cls], entry["class"] == cls))
for cls in sorted(set(truth.values())):
    print(f"\n{cls}\n\n| variant | axial | coronal | sagittal |\n| --- | --- | --- | --- |")
    for variant in VARIANTS:
        cells = []
        for pl in ("axial", "coronal", "sagittal"):
            rows = results[variant].get((cls, pl), [])
            cells.append(f"{np.mean([p for p, _ in rows]):.3f} ({sum(k for _, k in rows)}/{len(rows)})"
                         if rows else "–")
        print(f"| {variant} | " + " | ".join(cells) + " |")
