"""What the PyTorch training-throughput references share (resnet_small_ref.py,
darts_eval_ref.py): the Fashion-MNIST IDX reader and the timed SGD loop."""
import gzip
import statistics
import struct
import time

import torch
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        h, w = struct.unpack(">II", data[8:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, 1, h, w)
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def add_arguments(ap, batch, steps):
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")


def time_training(model, args, memory_format=torch.contiguous_format):
    """Median seconds per SGD step (lr 0.05, momentum 0.9, wd 3e-4) over shuffled normalized
    Fashion-MNIST batches held in memory; bf16 runs forward and loss under CPU autocast."""
    x = (read_idx(f"{args.root}/train-images-idx3-ubyte.gz").float() / 255.0 - 0.2860) / 0.3530
    y = read_idx(f"{args.root}/train-labels-idx1-ubyte.gz")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    order = torch.randperm(x.shape[0])
    times = []
    for i in range(args.warmup + args.steps):
        idx = order[i * args.batch:(i + 1) * args.batch]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = F.cross_entropy(model(x[idx].contiguous(memory_format=memory_format)).float(), y[idx])
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)
