"""What networks of any shape (issue 13) cost the MLP: the optimizer step with the decay mask
against the step as it was, side by side.

    .venv/bin/python experiments/benchmarks/shapes_cost.py [--rounds N] [--limit N]

The MLP of ``make bench`` (784-256-128-10, ReLU, softmax cross-entropy, batch 128, float32,
one BLAS thread), trained epoch by epoch in one process by four contenders, in turns (so that
the machine's load hits all alike): Adam stepped as before issue 13 (``step(params, grads)``,
the old base-class loop, copied here) and as the trainer steps it now
(``step(params, grads, network.decay)``); AdamW (weight decay 0.01) decaying everything
(``decay_all=True``: one multiplication by a scalar, as before) and decaying weights only (one
multiplication by a cached per-element factor). Prints the median epoch of each and the
median per-round ratios, wall and CPU. Fashion-MNIST when installed, else random data of its
shape (the time does not depend on the values).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread: before NumPy is imported

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # nnx from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ownership_cost import data  # Fashion-MNIST, else random data of its shape

from nnx.data import Batches
from nnx.network import mlp
from nnx.optimizers import Adam, AdamW
from nnx.registry import build


class AdamBefore(Adam):
    """Adam with the base class's step loop as it was before the decay mask."""

    def step(self, params, grads, decay=None):
        if params.keys() != grads.keys():
            raise ValueError("params and grads must have the same keys")
        self.iterations += 1
        for key, p in params.items():
            g = grads[key]
            if self.weight_decay and not self.decoupled_weight_decay:
                g += self.weight_decay * p
            if key not in self.state:
                self.state[key] = self.init_state(p)
            self.update(p, g, self.state[key])


class Contender:
    def __init__(self, opt, with_mask: bool, x, y):
        self.net = mlp(784, [256, 128], 10, rng=np.random.default_rng(0), dtype=np.float32)
        self.loss = build("losses", "softmax_cross_entropy")
        self.opt, self.with_mask = opt, with_mask
        self.batches = Batches(x, y, 128, rng=np.random.default_rng(1))

    def epoch(self) -> tuple[float, float]:
        net, loss, opt = self.net, self.loss, self.opt
        decay = net.decay if self.with_mask else None
        wall, cpu = time.perf_counter(), time.process_time()
        for xb, yb in self.batches:
            loss.forward(net.forward(xb, check=False), yb)
            net.backward(loss.backward())
            opt.step(net.params, net.grads, decay)
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="epochs of each (default 6)")
    p.add_argument("--limit", type=int, default=0, help="training images (default all)")
    args = p.parse_args()
    x, y = data(args.limit)
    contenders = {
        "adam before": Contender(AdamBefore(lr=1e-3), False, x, y),
        "adam now": Contender(Adam(lr=1e-3), True, x, y),
        "adamw decay_all": Contender(AdamW(lr=1e-3, decay_all=True), True, x, y),
        "adamw weights only": Contender(AdamW(lr=1e-3), True, x, y),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        turn = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for key in turn:
            times[key].append(contenders[key].epoch())
        print(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1][0]:.3f} s" for k in names),
              file=sys.stderr, flush=True)
    for i, clock in enumerate(("wall", "CPU")):
        for new, old in (("adam now", "adam before"), ("adamw weights only", "adamw decay_all")):
            a, b = [t[i] for t in times[new]], [t[i] for t in times[old]]
            ratios = [u / v for u, v in zip(a, b)]
            print(f"{clock}: median epoch {new} {statistics.median(a):.3f} s, {old} "
                  f"{statistics.median(b):.3f} s; ratio, median of {len(ratios)} rounds "
                  f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    same = np.array_equal(contenders["adam now"].net.flat_params,
                          contenders["adam before"].net.flat_params)
    print(f"adam: identical weights after training: {same}")


if __name__ == "__main__":
    main()
