#!/usr/bin/env python3
"""Dev-time: is the deletion check's evidence specific to the lesion? For every tumour image of a phantom set
(a folder in the Kaggle layout with true masks under masks/, e.g. one class of a `tumornet synth` split), the
classifier's probability of the true class — read with `tumornet predict` — on:
  - the image as it is;
  - the true lesion blacked out (what the pseudo-mask deletion check does to a candidate), or painted with
    the mean colour of a ring around it (3/128 of the side wide), each also with the lesion dilated by that ring;
  - the same lesion shape blacked out 20/128 of the side above or to the right of the lesion, or 40/128 above.
A removal that is specific to the lesion drops the probability only when it covers the lesion; one that drops it
wherever it lands near the lesion cannot tell a right candidate mask from a wrong one.
Prints, per class and imaging plane (from the phantom's phantom.json), the mean probability and how many images keep the
class, for each variant.

    /tmp/pyv/bin/python tools/deletion_specificity.py TUMORNET RUN DATA PHANTOM/phantom.json [WORK]

numpy and Pillow only (a throwaway venv: python3 -m venv /tmp/pyv && /tmp/pyv/bin/pip install numpy pillow).
"""
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).parent))
from by_plane import PLANES, planes, stem  # noqa: E402

if len(sys.argv) < 5:
    sys.exit(__doc__)
tumornet, run, data, phantom_json = sys.argv[1:5]
work = sys.argv[5] if len(sys.argv) > 5 else "/tmp/deletion-specificity"
VARIANTS = ["original", "black", "black, dilated", "ring colour", "ring colour, dilated",
            "black 20 up", "black 20 right", "black 40 up"]
plane = planes(phantom_json)


def dilated(mask, r):
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.array(img.filter(ImageFilter.MaxFilter(2 * r + 1))) > 127


def variants(image, lesion):
    """The image under each of VARIANTS, in that order."""
    side = image.shape[0]
    r, k = max(1, round(3 * side / 128)), round(20 * side / 128)
    out = [image]
    once = dilated(lesion, r)
    blacks, paints = [], []
    for m, around in ((lesion, once), (once, dilated(once, r))):  # the lesion, then the lesion dilated
        ring = around & ~m
        black, painted = image.copy(), image.copy()
        black[m] = 0
        painted[m] = image[ring].mean(axis=0).round().astype(np.uint8)
        blacks.append(black)
        paints.append(painted)
    out += blacks + paints
    for dy, dx in ((-k, 0), (0, k), (-2 * k, 0)):
        copy = image.copy()
        copy[np.roll(np.roll(lesion, dy, axis=0), dx, axis=1)] = 0
        out.append(copy)
    return out


folders = [os.path.join(work, str(i)) for i in range(len(VARIANTS))]
for folder in folders:  # no stale images from an earlier run in WORK
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
truth = {}  # stem -> true class folder
for path in sorted(glob.glob(os.path.join(data, "*", "*", "*"))):
    split, cls = Path(path).parts[-3:-1]
    mask_path = os.path.join(data, "masks", split, cls, stem(path) + ".png")
    if split == "masks" or not os.path.isfile(mask_path):
        continue
    lesion = np.array(Image.open(mask_path).convert("L")) > 127
    if not lesion.any():
        continue
    truth[stem(path)] = cls
    image = np.array(Image.open(path).convert("RGB"))
    for folder, pixels in zip(folders, variants(image, lesion)):
        Image.fromarray(pixels).save(os.path.join(folder, stem(path) + ".png"))
if not truth:
    sys.exit(f"{data}: no tumour images with true masks")

print(f"{len(truth)} tumour images; mean probability of the true class (images still given it)")
results = {}  # variant -> (class, plane) -> [(p, kept)]
for variant, folder in zip(VARIANTS, folders):
    result = subprocess.run([tumornet, "-q", "predict", run, folder, "--json"], check=True,
                            capture_output=True, text=True)
    cells = results.setdefault(variant, {})
    for entry in json.loads(result.stdout):
        name = stem(entry["file"])
        cls = truth[name]
        cells.setdefault((cls, plane[name]), []).append((entry["probabilities"][cls], entry["class"] == cls))
for cls in sorted(set(truth.values())):
    print(f"\n{cls}\n\n| variant | " + " | ".join(PLANES) + " |\n| --- |" + " --- |" * len(PLANES))
    for variant in VARIANTS:
        cells = []
        for pl in PLANES:
            rows = results[variant].get((cls, pl), [])
            cells.append(f"{np.mean([p for p, _ in rows]):.3f} ({sum(k for _, k in rows)}/{len(rows)})"
                         if rows else "–")
        print(f"| {variant} | " + " | ".join(cells) + " |")
