#!/usr/bin/env python3
"""Merge pseudo-mask folders made in parts (e.g. Training images 1–300 and 301–600 per class, or chunks made on
different machines) into one folder that `train-seg --pseudo` reads.

    tools/merge_pseudo_masks.py OUT DIR [DIR…]

Every folder must come from the same classifier run with the same settings (method, threshold, gate, layer,
scales, occlusion, sharpening, CAM powers; a different run path is only noted, as it is stored as typed). The merged
`pseudo_masks.json` lists every entry once (an image in two folders is refused) with its paths made absolute, so
the masks stay where they are; `pseudo-masks` records image paths as given, so run the merge from the folder where
the parts were made when those are relative. The deletion counts add up; the errors are concatenated. `quality` is
left empty (the parts' score tables are means that cannot be pooled) and each part's table is kept under `parts`;
train-seg reads neither.
"""
import json
import os
import sys
from collections import Counter

MANIFEST = "pseudo_masks.json"
# Settings that must agree across the parts (everything in the manifest but the data, entries and scores).
SAME = ["method", "config", "gate", "flip_smooth", "layer", "scales", "occlusion", "occlusion_classes",
        "sharpen", "sharpen_classes", "cam_power"]


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out, parts = argv[1], argv[2:]
    manifests = []
    for d in parts:
        path = os.path.join(d, MANIFEST)
        try:
            with open(path) as f:
                manifests.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{path}: {e}")
    first = manifests[0]
    for d, m in zip(parts[1:], manifests[1:]):
        for key in SAME:
            if m.get(key) != first.get(key):
                sys.exit(f"{d}: {key} differs from {parts[0]}'s ({m.get(key)!r} vs {first.get(key)!r})")
        # The run path is recorded as typed (relative to where the command ran), so a difference is only said.
        if m["run"] != first["run"]:
            print(f"note: {d} names its run {m['run']!r}, {parts[0]} {first['run']!r}: same classifier?",
                  file=sys.stderr)
    merged = {k: v for k, v in first.items() if k in SAME}
    merged["run"] = first["run"]
    merged["data"] = first["data"] if len({m["data"] for m in manifests}) == 1 else "(merged)"
    entries, seen = [], {}
    for d, m in zip(parts, manifests):
        for e in m["entries"]:
            image = os.path.abspath(e["image"])
            if image in seen:
                sys.exit(f"{e['image']}: in both {seen[image]} and {d}")
            seen[image] = d
            e = dict(e)
            e["mask"] = os.path.abspath(os.path.join(d, e["mask"]))
            e["image"] = image
            if e.get("true_mask"):
                e["true_mask"] = os.path.abspath(e["true_mask"])
            entries.append(e)
    merged["entries"] = entries
    counts = [m["confirm_by_deletion"] for m in manifests if m.get("confirm_by_deletion")]
    if counts:
        sharpened = [0] * max(len(c.get("sharpened", [])) for c in counts)
        for c in counts:
            for i, n in enumerate(c.get("sharpened", [])):
                sharpened[i] += n
        merged["confirm_by_deletion"] = {"cam": sum(c["cam"] for c in counts),
                                         "combined": sum(c["combined"] for c in counts), "sharpened": sharpened}
    else:
        merged["confirm_by_deletion"] = None
    merged["quality"] = {}
    merged["parts"] = [{"folder": os.path.abspath(d), "entries": len(m["entries"]), "quality": m["quality"]}
                       for d, m in zip(parts, manifests)]
    merged["errors"] = [err for m in manifests for err in m["errors"]]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(merged, f, indent=1)
    splits = ", ".join(f"{k} {v}" for k, v in sorted(Counter(e["split"] for e in entries).items()))
    print(f"{os.path.join(out, MANIFEST)}: {len(entries)} entries ({splits}) from {len(parts)} folders")


if __name__ == "__main__":
    main(sys.argv)
