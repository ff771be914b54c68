#!/usr/bin/env python3
"""Dev-time: how well do gradient maps of a TumorNet classifier point at the lesion? For the tumour images of a
phantom set's Testing/ split (true masks under masks/), per class and map: the share of images whose map maximum
lies inside the true lesion ("peak in") and the mean Dice of the best single threshold per image ("oracle": an
upper bound for any fixed-level pseudo-mask of that map). Maps: LayerCAM on layer1/2/3 (as `tumornet cam --method
layercam --layer …`), feature-level integrated gradients on layer1/2 (8 steps from a zero baseline), input
gradient × input (smoothed), layer3 feature occlusion (3×3 cells zeroed), and pixel occlusion (32-pixel patches
replaced by a blurred copy, stride 16).
Usage: /opt/ref/bin/python tools/cam_localisation_probe.py RUN DATA [IMAGES_PER_CLASS]
"""
import glob
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from torch_run import load_run  # noqa: E402

run, data = sys.argv[1], sys.argv[2]
per_class = int(sys.argv[3]) if len(sys.argv) > 3 else 40
torch.set_num_threads(2)
model, config, tf = load_run(run)
classes = config["classes"]
m = model


def tail(l3):
    return m.fc(torch.flatten(m.avgpool(m.layer4(l3)), 1))


def up(c):
    return F.interpolate(c[None, None], size=(128, 128), mode="bilinear", align_corners=False)[0, 0].detach().numpy()


def largest(mask):
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    return lab == 1 + np.argmax(ndi.sum(mask, lab, range(1, n + 1)))


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2 * (a & b).sum() / s


results = {}
for cls in [c for c in classes if c not in ("notumor", "no_tumor")]:
    c = classes.index(cls)
    for f in sorted(glob.glob(f"{data}/Testing/{cls}/*"))[:per_class]:
        name = os.path.splitext(os.path.basename(f))[0]
        truth = np.asarray(Image.open(f"{data}/masks/Testing/{cls}/{name}.png").convert("L")
                           .resize((128, 128), Image.BILINEAR)) > 127
        x = tf(Image.open(f).convert("RGB"))[None].requires_grad_(True)
        l1 = m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))
        l2 = m.layer2(l1)
        l3 = m.layer3(l2)
        for t in (l1, l2, l3):
            t.retain_grad()
        tail(l3)[0, c].backward()
        maps = {f"layercam-layer{k}": up(torch.relu((torch.relu(t.grad) * t)[0].sum(0)))
                for k, t in ((1, l1), (2, l2), (3, l3))}
        gi = (x.grad * x).detach()[0].abs().sum(0).numpy()
        maps["gradient-x-input"] = up(torch.tensor(ndi.gaussian_filter(gi, 4)))
        l1, l2, l3 = l1.detach(), l2.detach(), l3.detach()
        for name_, feat, forward in (("ig-layer2", l2, lambda h: tail(m.layer3(h))),
                                     ("ig-layer1", l1, lambda h: tail(m.layer3(m.layer2(h))))):
            alphas = (torch.arange(8) + 0.5) / 8
            h = (alphas.view(-1, 1, 1, 1) * feat).requires_grad_(True)
            (g,) = torch.autograd.grad(forward(h)[:, c].sum(), h)
            maps[name_] = up(torch.relu((g.mean(0, keepdim=True) * feat)[0].sum(0)))
        with torch.no_grad():
            base = tail(l3)[0, c].item()
            batch = []
            for i in range(14):
                for j in range(14):
                    y = l3.clone()
                    y[:, :, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2] = 0
                    batch.append(y)
            drops = base - tail(torch.cat(batch))[:, c]
            maps["occlusion-layer3"] = up(torch.relu(drops.view(14, 14)))
            xd = x.detach()
            blur = torch.tensor(ndi.gaussian_filter(xd[0].numpy(), (0, 12, 12)))[None]
            p0 = torch.softmax(model(xd), 1)[0, c].item()
            batch, pos = [], []
            for i in range(13):
                for j in range(13):
                    y = xd.clone()
                    y[:, :, i * 16:i * 16 + 32, j * 16:j * 16 + 32] = blur[:, :, i * 16:i * 16 + 32, j * 16:j * 16 + 32]
                    batch.append(y)
                    pos.append((i, j))
            p = torch.softmax(model(torch.cat(batch)), 1)[:, c]
            occ, cnt = torch.zeros(224, 224), torch.zeros(224, 224)
            for (i, j), v in zip(pos, p):
                occ[i * 16:i * 16 + 32, j * 16:j * 16 + 32] += p0 - v.item()
                cnt[i * 16:i * 16 + 32, j * 16:j * 16 + 32] += 1
            maps["occlusion-pixels"] = up(torch.relu(occ / cnt.clamp(min=1)))
        for key, mp in maps.items():
            iy, ix = np.unravel_index(np.argmax(mp), mp.shape)
            best = max(dice(largest(mp >= q * mp.max()), truth) for q in np.linspace(0.05, 0.95, 19))
            results.setdefault((cls, key), []).append((truth[iy, ix], best))
print("| class | map | images | peak in lesion | oracle Dice |\n| --- | --- | --- | --- | --- |")
for (cls, key), v in sorted(results.items()):
    v = np.array(v, dtype=float)
    print(f"| {cls} | {key} | {len(v)} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.3f} |")
