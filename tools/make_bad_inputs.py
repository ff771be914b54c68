#!/usr/bin/env python3
"""Dev-time: the small hostile/odd image files of tests/fixtures/bad/ (the rest of the corpus — truncations,
empty files, symlink loops, odd names — is made by tests/it/bad_inputs.rs at test time from good files).

  cmyk.jpg        a CMYK JPEG (Adobe-style, as print workflows write)
  palette.png     an 8-bit palette PNG
  gray16.png      a 16-bit grayscale PNG
  animated.gif    a 3-frame animated GIF
  one_by_one.png  a 1×1 PNG
  bomb.png        a PNG header claiming 20000×20000 pixels (valid IHDR CRC), no image data: a decompression bomb
                  must be refused before anything is allocated

Usage: /opt/ref/bin/python tools/make_bad_inputs.py   (needs Pillow)
"""
import os
import struct
import zlib

from PIL import Image

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "bad")
os.makedirs(out, exist_ok=True)


def gradient(mode, size=(48, 40)):
    img = Image.new("L", size)
    img.putdata([(x * 5 + y * 3) % 256 for y in range(size[1]) for x in range(size[0])])
    return img.convert(mode)


gradient("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=85)
gradient("RGB").convert("P", palette=Image.ADAPTIVE, colors=16).save(os.path.join(out, "palette.png"))
img16 = Image.new("I;16", (48, 40))
img16.putdata([(x * 1300 + y * 700) % 65536 for y in range(40) for x in range(48)])
img16.save(os.path.join(out, "gray16.png"))
frames = [gradient("RGB").rotate(a) for a in (0, 10, 20)]
frames[0].save(os.path.join(out, "animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
Image.new("RGB", (1, 1), (200, 100, 50)).save(os.path.join(out, "one_by_one.png"))


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
with open(os.path.join(out, "bomb.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
for name in sorted(os.listdir(out)):
    print(name, os.path.getsize(os.path.join(out, name)))
