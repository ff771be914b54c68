#!/usr/bin/env python3
"""Dev-time: MONAI's surface distances as a fixture for src/metrics/surface.rs.

Writes tests/fixtures/surface/monai_surface.json: 2-D and 3-D mask pairs (random blobs, some touching the border,
anisotropic spacing, and the empty cases) with MONAI's symmetric 95th-percentile Hausdorff distance
(`compute_hausdorff_distance(percentile=95)`), its plain Hausdorff distance and its symmetric average surface
distance (`compute_average_surface_distance(symmetric=True)`), in the units of the spacing. A mask is stored as the
row-major (last axis fastest) indices of its set pixels. `null` stands for NaN, the strings "inf" for infinity.
Run: /opt/ref/bin/python tools/make_surface_fixture.py  (monai, torch, numpy)
"""
import json
from pathlib import Path

import monai
import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

rng = np.random.default_rng(20261203)


def blob(shape, blobs):
    grid = np.indices(shape).astype(float)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(blobs):
        centre = [rng.uniform(-2, s + 1) for s in shape]
        radii = [rng.uniform(1.5, s / 3) for s in shape]
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    return mask


def number(value):
    value = float(value)
    if np.isnan(value):
        return None
    if np.isinf(value):
        return "inf"
    return value


def case(name, predicted, reference, spacing):
    p = torch.from_numpy(predicted[None, None].astype(np.float32))
    r = torch.from_numpy(reference[None, None].astype(np.float32))
    kwargs = dict(include_background=True, spacing=list(spacing))
    return {
        "name": name,
        "dims": list(predicted.shape),
        "spacing": list(spacing),
        "predicted": np.flatnonzero(predicted).tolist(),
        "reference": np.flatnonzero(reference).tolist(),
        "hd95": number(compute_hausdorff_distance(p, r, percentile=95, **kwargs)[0, 0]),
        "hd": number(compute_hausdorff_distance(p, r, **kwargs)[0, 0]),
        "asd": number(compute_average_surface_distance(p, r, symmetric=True, **kwargs)[0, 0]),
    }


cases = []
for i in range(6):
    shape = (40, 48)
    spacing = (1.0, 1.0) if i < 3 else (0.8, 1.3)
    cases.append(case(f"2d-{i}", blob(shape, 1 + i % 3), blob(shape, 1 + (i + 1) % 2), spacing))
for i in range(3):
    shape = (10, 16, 14)
    spacing = (2.0, 0.9, 1.1)
    cases.append(case(f"3d-{i}", blob(shape, 1 + i % 2), blob(shape, 1), spacing))
empty = np.zeros((12, 12), dtype=bool)
square = np.zeros((12, 12), dtype=bool)
square[3:8, 4:10] = True
dot = np.zeros((12, 12), dtype=bool)
dot[0, 11] = True
cases.append(case("both-empty", empty, empty, (1.0, 1.0)))
cases.append(case("prediction-empty", empty, square, (1.0, 1.0)))
cases.append(case("reference-empty", square, empty, (1.0, 1.0)))
cases.append(case("corner-dot", dot, square, (1.0, 1.0)))
cases.append(case("identical", square, square, (0.5, 2.0)))
out = Path("tests/fixtures/surface/monai_surface.json")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"monai": monai.__version__, "cases": cases}))
print(f"wrote {out} ({len(cases)} cases, MONAI {monai.__version__}, {out.stat().st_size} bytes)")
