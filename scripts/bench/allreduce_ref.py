"""Median time of a Gloo all-reduce in Python torch.distributed, the reference for
`archai bench allreduce` (same sizes, same barrier-then-time loop, loopback rendezvous)."""
import argparse, json, os, socket, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port, elements, iters, warmup, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    t = torch.ones(elements)
    times = []
    for i in range(warmup + iters):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    if rank == 0:
        out.put({"engine": f"python torch.distributed {torch.__version__}", "world": world, "elements": elements,
                 "median_ms": median * 1e3, "gb_per_s": elements * 4 / median / 1e9})
    dist.destroy_process_group()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--elements", type=int, default=1_000_000)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.spawn(worker, args=(a.nproc, port, a.elements, a.iters, a.warmup, q), nprocs=a.nproc, join=True)
    print(json.dumps(q.get()))
