#!/usr/bin/env python3
"""Dev-time: OpenCV's JET colormap as a fixture for src/viz/colormap.rs.

Writes tests/fixtures/viz/cv2_jet_rgb.u8: 256 × 3 bytes, the RGB colour cv2.applyColorMap(COLORMAP_JET) gives each
grey level 0..255, in order (OpenCV returns BGR; the channels are swapped here).
Run: /opt/ref/bin/python tools/make_jet_fixture.py  (opencv-python-headless, numpy)
"""
from pathlib import Path

import cv2
import numpy as np

levels = np.arange(256, dtype=np.uint8).reshape(256, 1)
bgr = cv2.applyColorMap(levels, cv2.COLORMAP_JET).reshape(256, 3)
rgb = bgr[:, ::-1].astype(np.uint8)
out = Path("tests/fixtures/viz/cv2_jet_rgb.u8")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_bytes(rgb.tobytes())
print(f"wrote {out} (OpenCV {cv2.__version__})")
