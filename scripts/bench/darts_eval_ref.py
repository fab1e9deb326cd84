#!/usr/bin/env python3
"""PyTorch reference for `archai bench train --model confs/models/darts_v2_small.yaml`: training
throughput of a DARTS evaluation network (the published DARTS-V2 cells) on Fashion-MNIST.

The network is DARTS' own NetworkCIFAR (quark0/darts, cnn/model.py and operations.py) with its
defaults: stem conv3x3 + BN to 3C channels, `--layers` cells with reductions at 1/3 and 2/3,
ReLU-conv-BN / factorized-reduce preprocessing, separable and dilated convolutions as DARTS
defines them, no auxiliary head, no drop path, global average pooling and a linear classifier.
One change, which archai makes too: a factorized reduce of an odd-sized input pads its shifted
half so the two halves line up (DARTS' code fails on 7x7 inputs; Fashion-MNIST reaches them).
SGD lr 0.05, momentum 0.9, wd 3e-4; data normalized with mean 0.2860 / std 0.3530, batches from
tensors in memory. Memory layout NCHW as DARTS' code, or channels-last with --channels-last.
Prints one JSON object: params, sec_per_step (median), samples_per_s.

`--genotype RUN_DIR/search/artifacts/decisiveness.json` builds the cells a DARTS search chose
(the kept edges of that file) instead of DARTS-V2, with `--stem-stride 2` for the small-real
networks (scripts/bench-darts-eval.sh passes the run's sizes).
"""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from fmnist_train import add_arguments, time_training

DARTS_V2 = {
    "normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
               ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
               ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
}


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out))


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad, dilation):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class SepConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(DilConv(c_in, c_in, k, stride, pad, 1), DilConv(c_in, c_out, k, 1, pad, 1))


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = F.relu(x)
        a, b = self.conv1(x), self.conv2(x[:, :, 1:, 1:])
        if b.shape != a.shape:
            b = F.pad(b, (0, a.shape[3] - b.shape[3], 0, a.shape[2] - b.shape[2]))
        return self.bn(torch.cat([a, b], dim=1))


def make_op(name, c, stride):
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    raise ValueError(name)


class Cell(nn.Module):
    def __init__(self, genotype, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges = genotype["reduce" if reduction else "normal"]
        self.ops = nn.ModuleList(make_op(n, c, 2 if reduction and i < 2 else 1) for n, i in edges)
        self.inputs = [i for _, i in edges]

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(4):
            a, b = 2 * node, 2 * node + 1
            states.append(self.ops[a](states[self.inputs[a]]) + self.ops[b](states[self.inputs[b]]))
        return torch.cat(states[2:], dim=1)


class Network(nn.Module):
    def __init__(self, c, layers, num_classes, genotype, c_in=1, stem_stride=1):
        super().__init__()
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(c_in, c_curr, 3, stem_stride, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(Cell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, 4 * c_curr
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def genotype_of(path):
    """The cells of a search from its decisiveness.json: per cell kind, the kept edges' (op, input)
    in node order, two per node, as DARTS' genotypes list them."""
    edges = [e for e in json.load(open(path))["edges"] if e["kept"]]
    genotype = {kind: [(e["chosen"], e["input"]) for e in sorted((e for e in edges if e["cell"] == kind), key=lambda e: e["node"])]
                for kind in ("normal", "reduce")}
    assert all(len(g) == 8 for g in genotype.values()), f"{path}: expected 8 kept edges per cell, got {genotype}"
    return genotype


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap, batch=96, steps=30)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--stem-stride", type=int, default=1)
    ap.add_argument("--genotype", help="a search's decisiveness.json: its kept edges are the cells")
    args = ap.parse_args()
    genotype = DARTS_V2 if args.genotype is None else genotype_of(args.genotype)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = Network(args.channels, args.layers, 10, genotype, stem_stride=args.stem_stride).to(memory_format=memory_format)
    med, steps = time_training(model, args, memory_format)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
                      "precision": args.precision, "channels_last": args.channels_last,
                      "layers": args.layers, "channels": args.channels, "genotype": args.genotype or "DARTS-V2",
                      "params": sum(p.numel() for p in model.parameters()),
                      "steps": steps, "sec_per_step": med, "samples_per_s": args.batch / med}))


if __name__ == "__main__":
    main()
