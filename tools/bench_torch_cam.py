#!/usr/bin/env python3
"""Reference for benches/cam.rs: pytorch-grad-cam maps per second on torchvision resnet18, batch 16, random input,
median of 5 after 2 warm-ups, CPU. Run: /opt/ref/bin/python tools/bench_torch_cam.py"""
import time

import torch
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=4).eval()
x = torch.randn(16, 3, 224, 224)
for name, method in [("grad-cam", GradCAM), ("grad-cam++", GradCAMPlusPlus)]:
    cam = method(model=model, target_layers=[model.layer4[-1]])
    times = []
    for i in range(7):
        start = time.perf_counter()
        maps = cam(input_tensor=x, targets=None)
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(f"pytorch-grad-cam {name} batch=16: median {median * 1e3:.0f} ms, {16 / median:.1f} CAMs/s (torch {torch.__version__}, {torch.get_num_threads()} threads)")
