#!/usr/bin/env python3
"""Times the PyTorch DARTS reference step (scripts/bench/darts_ref.py) on any torch device.

The reference itself runs on the CPU only; this moves its network, alphas and synthetic batches
to --device and waits for the device at each timing point (torch.cuda.synchronize), so the
figures compare with `archai bench darts-step --device cuda`. Same network (8 cells, C = 16),
same optimisers, same finite-difference order-2 step. Prints one JSON object.
"""
import argparse
import importlib.util
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True, help="path of darts_ref.py")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--order", type=int, choices=(1, 2), default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("darts_ref", args.ref)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = ref.SearchNetwork(c=16, layers=8).to(dev)
    model.train()
    # The alphas are plain tensors beside the module: .to() does not move them.
    model.alphas = [a.detach().to(dev).requires_grad_(True) for a in model.alphas]
    search = ref.DartsSearch(model, args.order)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def batch():
        return torch.randn(args.batch, 3, 32, 32, device=dev), torch.randint(0, 10, (args.batch,), device=dev)

    total, arch, weight = [], [], []
    for i in range(args.warmup + args.steps):
        (xt, yt), (xv, yv) = batch(), batch()
        sync()
        t0 = time.perf_counter()
        search.arch_step(xt, yt, xv, yv)
        sync()
        t1 = time.perf_counter()
        loss = search.weight_step(xt, yt)
        sync()
        t2 = time.perf_counter()
        if i >= args.warmup:
            total.append(t2 - t0)
            arch.append(t1 - t0)
            weight.append(t2 - t1)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(json.dumps({
        "torch": torch.__version__, "device": name, "order": args.order, "batch": args.batch,
        "sec_per_step": statistics.median(total), "arch_sec": statistics.median(arch),
        "weight_sec": statistics.median(weight), "final_loss": float(loss),
    }))


if __name__ == "__main__":
    main()
