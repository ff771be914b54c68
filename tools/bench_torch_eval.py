#!/usr/bin/env python3
"""Reference for benches/eval.rs: torchvision ResNet18 eval images/s at the same batch sizes, median of 5 timed
passes after 2 warm-ups, on the CPU with all cores. Run: /opt/ref/bin/python tools/bench_torch_eval.py 16 64"""
import sys
import time

import torch
import torchvision

batches = [int(a) for a in sys.argv[1:]] or [16, 64]
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=4).eval()
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
for batch in batches:
    x = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        for i in range(7):
            start = time.perf_counter()
            model(x)
            if i >= 2:
                times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(f"pytorch eval batch={batch}: median {median * 1e3:.1f} ms, {batch / median:.1f} images/s")
