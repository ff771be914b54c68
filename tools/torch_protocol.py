#!/usr/bin/env python3
"""Dev-time reference: the seed protocol in PyTorch on the same dataset folder, for accuracy and wall-time
comparison with `tumornet train`. Same split fraction, epochs, batch size, optimizer (Adam), learning rates,
cosine schedule (per step, down to 1 %), RandomHorizontalFlip, Resize((224,224)), ImageNet normalisation;
frozen stages as the seed notebook froze them (requires_grad=False under model.train(): BatchNorm of frozen
layers normalises with batch statistics). Random init unless --weights is given.

Usage: /opt/ref/bin/python tools/torch_protocol.py DATA [--baseline 5] [--finetune 5] [--full 0] [--workers 2]
       [--device cuda] [--json out.json]
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--baseline", type=int, default=5)
p.add_argument("--finetune", type=int, default=5)
p.add_argument("--full", type=int, default=0)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--val", type=float, default=0.1)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--weights", default=None)
p.add_argument("--device", default="cpu", help="cpu or cuda")
p.add_argument("--json", default=None, help="also write the results here")
a = p.parse_args()

start_all = time.perf_counter()
torch.manual_seed(a.seed)
norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
train_tf = transforms.Compose([transforms.Resize((224, 224)), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
eval_tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(), norm])
train_full = datasets.ImageFolder(f"{a.data}/Training", transform=train_tf)
eval_full = datasets.ImageFolder(f"{a.data}/Training", transform=eval_tf)
test = datasets.ImageFolder(f"{a.data}/Testing", transform=eval_tf)
rng = np.random.default_rng(a.seed)
targets = np.array(train_full.targets)
val_idx, train_idx = [], []
for c in range(len(train_full.classes)):
    members = rng.permutation(np.where(targets == c)[0])
    k = max(1, round(len(members) * a.val))
    val_idx += members[:k].tolist()
    train_idx += members[k:].tolist()
train_loader = DataLoader(Subset(train_full, train_idx), batch_size=a.batch, shuffle=True, num_workers=a.workers)
val_loader = DataLoader(Subset(eval_full, val_idx), batch_size=a.batch, num_workers=a.workers)
test_loader = DataLoader(test, batch_size=a.batch, num_workers=a.workers)

model = torchvision.models.resnet18(num_classes=4)
if a.weights:
    sd = torch.load(a.weights, map_location="cpu")
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    print(model.load_state_dict(sd, strict=False))
model = model.to(a.device)
loss_fn = torch.nn.CrossEntropyLoss()


def evaluate(loader):
    model.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(a.device), y.to(a.device)
            out = model(x)
            loss += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            total += len(y)
    return loss / total, correct / total


results = {}
for name, epochs, lr, trainable in [("baseline", a.baseline, 1e-3, ("fc",)), ("finetune", a.finetune, 1e-4, ("layer4", "fc")),
                                    ("full", a.full, 1e-3, None)]:
    if epochs == 0:
        continue
    t0 = time.perf_counter()
    for pname, param in model.named_parameters():
        param.requires_grad = trainable is None or pname.startswith(trainable)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr)
    steps = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.01 + 0.5 * 0.99 * (1 + math.cos(math.pi * s / steps)))
    best = (-1.0, None)
    for epoch in range(epochs):
        model.train()
        for x, y in train_loader:
            x, y = x.to(a.device), y.to(a.device)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
        vl, va = evaluate(val_loader)
        print(f"{name} epoch {epoch + 1}: val loss {vl:.4f} acc {va:.3f} ({time.perf_counter() - t0:.1f} s)", flush=True)
        if va > best[0]:
            best = (va, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    tl, ta = evaluate(test_loader)
    results[name] = {"test_accuracy": ta, "best_val_accuracy": best[0], "seconds": time.perf_counter() - t0}
    print(f"{name}: test accuracy {ta:.4f}, {results[name]['seconds']:.1f} s", flush=True)
results["total_seconds"] = time.perf_counter() - start_all
results["torch"] = torch.__version__
results["threads"] = torch.get_num_threads()
results["workers"] = a.workers
results["device"] = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
print(json.dumps(results, indent=1))
if a.json:
    with open(a.json, "w") as f:
        json.dump(results, f, indent=1)
