#!/usr/bin/env python3
"""Mean Dice per class and imaging plane, for masks of a `tumornet synth` phantom (dev-time analysis, stdlib only).

The phantom's `phantom.json` records each image's plane (axial, coronal, sagittal); `pseudo_masks.json` (from
`tumornet pseudo-masks`) and `segment.json` (from `tumornet segment`) record each image's Dice against its true
mask. This joins them by file name without extension (the phantom's names are unique across splits) and prints, per input, a
Markdown table of mean Dice over the tumour images of each class and plane, with the image counts.

    python3 tools/by_plane.py PHANTOM/phantom.json RESULT.json [RESULT.json…]

A RESULT may also be a folder holding one of the two files.
"""

import json
import os
import sys
from collections import defaultdict

PLANES = ["axial", "coronal", "sagittal"]


def stem(path):
    """An image's name without folder or extension: the key that joins results to the phantom's manifest (its
    names are unique across splits; a copy written as PNG keeps the stem)."""
    return os.path.splitext(os.path.basename(path))[0]


def planes(phantom_json):
    """Each phantom image's imaging plane, by [`stem`]."""
    with open(phantom_json) as f:
        phantom = json.load(f)
    return {stem(im["image"]): im["plane"] for im in phantom["images"]}


def load_result(path):
    """(file name, class, Dice) of every scored tumour image in a pseudo_masks.json or segment.json."""
    if os.path.isdir(path):
        for name in ("pseudo_masks.json", "segment.json"):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            sys.exit(f"{path}: neither pseudo_masks.json nor segment.json")
    with open(path) as f:
        result = json.load(f)
    rows = []
    if "entries" in result:  # pseudo_masks.json
        for e in result["entries"]:
            if e["class"] != "notumor" and e.get("dice") is not None:
                rows.append((stem(e["image"]), e["class"], e["dice"]))
        if not rows and result["entries"]:
            sys.exit(f"{path}: no per-image Dice (made before pseudo-masks recorded it, or no true masks)")
    elif "images" in result:  # segment.json
        for im in result["images"]:
            if im.get("true_class") not in (None, "notumor") and im.get("dice") is not None:
                rows.append((stem(im["file"]), im["true_class"], im["dice"]))
    else:
        sys.exit(f"{path}: not a pseudo_masks.json or segment.json")
    return path, rows


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    plane = planes(args[0])
    for result in args[1:]:
        path, rows = load_result(result)
        sums = defaultdict(lambda: [0.0, 0])
        unknown = 0
        for name, cls, dice in rows:
            p = plane.get(name)
            if p is None:
                unknown += 1
                continue
            for key in [(cls, p), (cls, "all"), ("all", p), ("all", "all")]:
                sums[key][0] += dice
                sums[key][1] += 1
        classes = sorted({c for c, _ in sums if c != "all"}) + ["all"]
        print(f"\n## {path}\n")
        print("| class | " + " | ".join(PLANES + ["all"]) + " |")
        print("| --- |" + " --- |" * (len(PLANES) + 1))
        for c in classes:
            cells = []
            for p in PLANES + ["all"]:
                s, n = sums.get((c, p), (0.0, 0))
                cells.append(f"{s / n:.3f} ({n})" if n else "–")
            print(f"| {c} | " + " | ".join(cells) + " |")
        if unknown:
            print(f"\n{unknown} images not in the phantom's manifest (left out)")


if __name__ == "__main__":
    main(sys.argv[1:])
