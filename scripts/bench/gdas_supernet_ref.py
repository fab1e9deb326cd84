"""How fast a GDAS supernet learns in PyTorch, to compare with archai's GDAS plugin at the same
budget: the small-real macro (5 cells of C=8 behind a stride-2 stem, 4 nodes, the 8 DARTS
primitives, affine-free BN; ../shared/bench/darts_ref.py's search network with a 1-channel stem),
Fashion-MNIST without augmentation, 300 steps of batch 64, each an architecture step (Adam,
betas 0.5/0.999, wd 1e-3) on a batch of the other half of the training set, then a weight step
(SGD 0.025 nesterov momentum 0.9, wd 5e-4, grad clip 5, cosine to 0.001). GDAS' forward as the
reference writes it (D-X-Y, forward_gdas): one Gumbel draw per forward and cell type, only the
sampled candidate computed, straight-through weights; tau linear 10 -> 0.1 over 6 blocks of 50
steps. `darts` mixes softmax-weighted candidates instead. Prints train loss and top-1 per 50 steps.

    $PY scripts/bench/gdas_supernet_ref.py gdas --seed 0 --arch-lr 0.1

archai's side: archai run confs/compare/small_real/gdas.yaml --set nas.eval.trainer=null
    --set 'nas.search.trainer.transforms=[]' --set common.threads=2
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.environ.get("DARTS_REF_DIR", os.path.join(here, "../../../shared/bench")))
import darts_ref as R  # noqa: E402
from fmnist_train import read_idx  # noqa: E402


def halve_spatial(self, x):
    # Odd maps (7x7 after two halvings of 28) need the offset grid padded, as archai does.
    x = F.relu(x)
    b = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:] if x.shape[-1] % 2 else x[:, :, 1:, 1:]
    return self.bn(torch.cat([self.a(x), self.b(b)], dim=1))


R.HalveSpatial.forward = halve_spatial


def gumbel_hard(alpha, tau):
    while True:
        g = -torch.empty_like(alpha).exponential_().log()
        p = F.softmax((alpha.log_softmax(1) + g) / tau, 1)
        if torch.isfinite(p).all():
            k = p.max(-1, keepdim=True)[1]
            return torch.zeros_like(p).scatter_(-1, k, 1.0) - p.detach() + p, k.flatten().tolist()


class Supernet(R.SearchNetwork):
    def __init__(self, mode):
        super().__init__(c=8, num_classes=10, layers=5, nodes=4, stem_mult=3)
        self.mode = mode
        self.stem = nn.Sequential(nn.Conv2d(1, 24, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(24))

    def forward(self, x, tau=10.0):
        if self.mode == "darts":
            draws = [(F.softmax(a, -1), None) for a in self.alphas]
        else:
            draws = [gumbel_hard(a, tau) for a in self.alphas]
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w, picked = draws[1 if cell.reduction else 0]
            states, e = [cell.pre0(s0), cell.pre1(s1)], 0
            for _ in range(cell.nodes):
                s = 0
                for h in states:
                    ops = cell.edges[e].ops
                    if picked is None:
                        y = cell.edges[e](h, w[e])
                    else:
                        y = sum(w[e][j] * op(h) if j == picked[e] else w[e][j] for j, op in enumerate(ops))
                    s, e = s + y, e + 1
                states.append(s)
            s0, s1 = s1, torch.cat(states[-cell.nodes:], 1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["gdas", "darts"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch-lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    x = (read_idx(f"{args.root}/train-images-idx3-ubyte.gz").float() / 255.0 - 0.2860) / 0.3530
    y = read_idx(f"{args.root}/train-labels-idx1-ubyte.gz")
    m = Supernet(args.mode)
    opt = torch.optim.SGD(m.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    arch_opt = torch.optim.Adam(m.alphas, lr=args.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    steps, batch, block = 300, 64, 50
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.001)
    train, val = torch.randperm(30000), 30000 + torch.randperm(30000)
    correct = seen = loss_sum = 0
    for t in range(steps):
        tau = 10.0 - 9.9 * (t // block) / (steps // block - 1)
        v = val[t * batch:(t + 1) * batch]
        arch_opt.zero_grad()
        F.cross_entropy(m(x[v], tau), y[v]).backward()
        arch_opt.step()
        i = train[t * batch:(t + 1) * batch]
        opt.zero_grad()
        out = m(x[i], tau)
        loss = F.cross_entropy(out, y[i])
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
        sched.step()
        correct += (out.argmax(1) == y[i]).sum().item()
        seen += batch
        loss_sum += loss.item() * batch
        if (t + 1) % block == 0:
            print(f"{args.mode} seed {args.seed} steps {t + 1}: train loss {loss_sum / seen:.4f} top1 {correct / seen:.4f}",
                  flush=True)
            correct = seen = loss_sum = 0


if __name__ == "__main__":
    main()
