#!/usr/bin/env python3
"""Dev-time: make the resize-parity fixtures with PIL, as torchvision's Resize((224,224)) on a PIL image does.

Writes sources and PIL outputs under tests/fixtures/resize/. Run from the repository root with a Python that has
Pillow and numpy (e.g. /opt/ref/bin/python tools/make_resize_fixtures.py). Optional: a phantom JPEG as a fourth
source, to measure decode + resize together: pass its path as the first argument.
"""
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

out = Path("tests/fixtures/resize")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def pattern(w, h, channels):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0)
    base += 50 * (((x // 16) + (y // 16)) % 2 - 0.5)          # sharp edges
    base += np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2, 40, 0)
    planes = [base + rng.normal(0, 6, size=base.shape) + 20 * c for c in range(channels)]
    arr = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


sources = {
    "gray_300x260.png": Image.fromarray(pattern(300, 260, 1), "L"),
    "rgb_400x300.png": Image.fromarray(pattern(400, 300, 3), "RGB"),
    "gray_150x180.png": Image.fromarray(pattern(150, 180, 1), "L"),
}
if len(sys.argv) > 1:
    sources["phantom.jpg"] = None
    (out / "phantom.jpg").write_bytes(Path(sys.argv[1]).read_bytes())

for name, img in sources.items():
    if img is not None:
        img.save(out / name)
    # What torchvision's ImageFolder loader + Resize do: open, convert("RGB"), resize with bilinear (antialias).
    rgb = Image.open(out / name).convert("RGB")
    stem = name.rsplit(".", 1)[0]
    for size in (224, 128):
        rgb.resize((size, size), Image.BILINEAR).save(out / f"{stem}.pil{size}.png")
print(f"Pillow {PIL.__version__}: wrote", sorted(p.name for p in out.iterdir()))
