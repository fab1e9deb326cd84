#!/usr/bin/env python3
"""PyTorch reference for `archai bench train`: training throughput of resnet_small
(confs/models/resnet_small.yaml) on Fashion-MNIST, same model, optimizer and batch size.

Model: conv3x3(1->16)+BN+ReLU, basic blocks 16->16 (stride 1), 16->32 (stride 2), 32->64
(stride 2), global average pooling, linear 64->10. SGD lr 0.05, momentum 0.9, wd 3e-4.
Data: the Debian Fashion-MNIST IDX files, normalized with mean 0.2860 / std 0.3530, shuffled
batches from tensors held in memory (PyTorch gets its data for free; archai's figure includes
its data pipeline). --precision bf16 runs forward and loss under torch.autocast("cpu",
torch.bfloat16), as archai's `precision: bf16` does. Prints one JSON object: sec_per_step
(median), samples_per_s.
"""
import argparse
import gzip
import json
import statistics
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        h, w = struct.unpack(">II", data[8:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, 1, h, w)
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResnetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (read_idx(f"{args.root}/train-images-idx3-ubyte.gz").float() / 255.0 - 0.2860) / 0.3530
    y = read_idx(f"{args.root}/train-labels-idx1-ubyte.gz")
    model = ResnetSmall()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    order = torch.randperm(x.shape[0])
    times = []
    for i in range(args.warmup + args.steps):
        idx = order[i * args.batch:(i + 1) * args.batch]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = F.cross_entropy(model(x[idx]).float(), y[idx])
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
                      "precision": args.precision,
                      "params": sum(p.numel() for p in model.parameters()),
                      "steps": len(times), "sec_per_step": med, "samples_per_s": args.batch / med}))


if __name__ == "__main__":
    main()
