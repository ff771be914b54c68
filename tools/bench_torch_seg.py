"""PyTorch reference for `tumornet bench --mode seg`: segmentation_models_pytorch Unet("resnet18") at 128x128,
encoder frozen (eval-mode BatchNorm, no gradients), BCE-with-logits + soft Dice, Adam; median seconds per step.

    /opt/ref/bin/python tools/bench_torch_seg.py --batch 16 --steps 10 --threads 2
"""
import argparse
import json
import statistics
import time

import segmentation_models_pytorch as smp
import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=1)
    model.train()
    model.encoder.eval()
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(args.batch, 3, 128, 128)
    target = (torch.rand(args.batch, 1, 128, 128) < 0.05).float()

    def step():
        optim.zero_grad()
        logits = model(x)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        (bce + dice).backward()
        optim.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"torch": torch.__version__, "smp": smp.__version__, "batch": args.batch,
                      "median_step_s": median, "images_per_s": args.batch / median}))


if __name__ == "__main__":
    main()
