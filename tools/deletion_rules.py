#!/usr/bin/env python3
"""Try candidate-choice rules on a pseudo-mask folder's deletion records (dev-time analysis, stdlib only).

`tumornet pseudo-masks` with a recipe whose deletion check offers sharpened candidates records, per tumour image, every candidate mask the
classifier was asked about: its area, the class probability once it is blacked out and (where the dataset has
true masks) its Dice. This script scores, per split and true class, the mean Dice over tumour images of:
the kept candidate (the rule as run), each candidate alone, the per-image best (oracle), and the halving rule
re-applied with the sharpened candidates offered only to some classes (what a recipe's per-class `sharpen` lists do).

    python3 tools/deletion_rules.py PSEUDO_DIR [PSEUDO_DIR…]
"""

import itertools
import json
import sys
from collections import defaultdict

TUMOURS = ["glioma", "meningioma", "pituitary"]


def rule(base, candidates):
    """The halving rule of `cam::occlusion::confirmed`: index of the smallest non-empty candidate whose removal
    halves `base`, else of the non-empty one that lowers it most, else 0."""
    usable = [i for i, c in enumerate(candidates) if c["area"] > 0]
    halving = [i for i in usable if candidates[i]["probability_after"] <= base / 2]
    if halving:
        return min(halving, key=lambda i: candidates[i]["area"])
    if usable:
        return min(usable, key=lambda i: candidates[i]["probability_after"])
    return 0


def main(folders):
    records = []
    for folder in folders:
        with open(f"{folder}/pseudo_masks.json") as f:
            manifest = json.load(f)
        for e in manifest["entries"]:
            d = e.get("deletion")
            if d and all(c.get("dice") is not None for c in d["candidates"]):
                records.append((e["split"], e["class"], d))
    if not records:
        sys.exit("no deletion records with Dice (needs occlusion.confirm_by_deletion and a masks/ tree)")
    names = [c["map"] for c in max((d for _, _, d in records), key=lambda d: len(d["candidates"]))["candidates"]]

    def score(choose):
        """Mean Dice per (split, class) and per (split, "all") of the candidate `choose(class, record)` picks
        (records for which it returns None are left out)."""
        sums = defaultdict(lambda: [0.0, 0])
        for split, cls, d in records:
            i = choose(cls, d)
            if i is None:
                continue
            for key in [(split, cls), (split, "all")]:
                sums[key][0] += d["candidates"][i]["dice"]
                sums[key][1] += 1
        return {k: s / n for k, (s, n) in sums.items()}

    rows = [("kept (as run)", score(lambda c, d: d["kept"]))]
    for i, name in enumerate(names):
        # Records made without that candidate (its class has no sharpen list) are left out of its row.
        rows.append((f"always {name}", score(lambda c, d, i=i: i if i < len(d["candidates"]) else None)))
    rows.append(("oracle", score(lambda c, d: max(range(len(d["candidates"])), key=lambda i: d["candidates"][i]["dice"]))))
    for k in range(0, len(TUMOURS) + 1):
        for sharpened_for in itertools.combinations(TUMOURS, k):
            def choose(cls, d, allowed=sharpened_for):
                cands = d["candidates"] if cls in allowed else d["candidates"][:2]
                return rule(d["probability"], cands)
            label = ",".join(sharpened_for) or "none"
            rows.append((f"rule, sharpened for {label}", score(choose)))

    splits = sorted({s for s, _, _ in records})
    for split in splits:
        n = {c: sum(1 for s, cl, _ in records if s == split and cl == c) for c in TUMOURS}
        print(f"\n## {split} ({', '.join(f'{c} {n[c]}' for c in TUMOURS)})\n")
        print("| choice | glioma | meningioma | pituitary | all tumour images |")
        print("| --- | --- | --- | --- | --- |")
        for label, s in rows:
            cells = " | ".join("–" if s.get((split, c)) is None else f"{s[(split, c)]:.3f}" for c in TUMOURS)
            total = s.get((split, "all"))
            print(f"| {label} | {cells} | {'–' if total is None else f'{total:.3f}'} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
