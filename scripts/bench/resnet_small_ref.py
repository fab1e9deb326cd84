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
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from fmnist_train import add_arguments, time_training


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
    add_arguments(ap, batch=96, steps=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResnetSmall()
    med, steps = time_training(model, args)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
                      "precision": args.precision,
                      "params": sum(p.numel() for p in model.parameters()),
                      "steps": steps, "sec_per_step": med, "samples_per_s": args.batch / med}))


if __name__ == "__main__":
    main()
