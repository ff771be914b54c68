#!/usr/bin/env python3
"""Dev-time reference for the GPU benchmark: torchvision ResNet18 fp32 images/s on one CUDA GPU, with the same
definition as `tumornet bench`: eval = forward in eval mode (no_grad); train = forward, cross-entropy, backward and
an Adam step, every layer learning, model.train(). Random 224×224 inputs; median of the timed steps after warm-up,
each step synchronised. cuDNN autotuning (benchmark=True) as a PyTorch user would run it.

Usage: python3 tools/bench_torch_gpu.py [--batch 64 256] [--steps 20] [--warmup 5] [--json out.jsonl] [--device cpu]
(--device cpu: the same steps on the CPU, fp32 only, for the CPU side of `--device libtorch`)
"""
import argparse
import json
import statistics
import time

import torch
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--json", default=None)
p.add_argument("--device", default="cuda")
a = p.parse_args()

torch.backends.cudnn.benchmark = True
dev = torch.device(a.device)
cuda = dev.type == "cuda"
name = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
out = open(a.json, "a") if a.json else None


def measure(precision, mode, batch):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = precision == "default"
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).to(dev)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.arange(batch, device=dev) % 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        if mode == "eval":
            model.eval()
            with torch.no_grad():
                model(x)
        else:
            model.train()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"impl": "pytorch", "torch": torch.__version__, "gpu": name, "precision": precision, "mode": mode,
            "batch": batch, "warmup_s": warm, "median_step_s": med, "images_per_s": batch / med}


# "fp32": TF32 off everywhere (strict fp32, what burn computes); "default": PyTorch's defaults, under which cuDNN
# convolutions use TF32 tensor cores.
for precision in ("fp32", "default") if cuda else ("fp32",):
    for mode in ("eval", "train"):
        for batch in a.batch:
            rec = measure(precision, mode, batch)
            print(json.dumps(rec), flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
