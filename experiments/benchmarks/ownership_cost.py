"""What "returned arrays belong to the caller" costs (issue 12): fresh results against buffers.

    .venv/bin/python experiments/benchmarks/ownership_cost.py [--rounds N] [--limit N]

The MLP of ``make bench`` (784-256-128-10, ReLU, softmax cross-entropy, Adam lr 1e-3, batch
128, float32, one BLAS thread) trained twice side by side, epoch by epoch in one process (so
that the machine's load hits both alike): once with nnx's Dense and ReLU, which return fresh
arrays, once with copies of them that write their results into buffers kept between steps
(the code before issue 12). Same seed, same batches. Prints the median epoch of each and the
median of the per-round ratios, in wall and in CPU time. Fashion-MNIST when it is installed, else random data of its
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

from nnx.activations import Identity, ReLU
from nnx.data import Batches
from nnx.layers import Dense
from nnx.module import reuse
from nnx.network import Network
from nnx.registry import build


class BufferedDense(Dense):
    """Dense as it was: y and dx written into buffers that the next call overwrites."""

    _out = _dx = None

    def forward(self, x):
        W = self.params["W"]
        self._x = x
        out = self._out = reuse(self._out, (x.shape[0], W.shape[1]), W.dtype)
        np.matmul(x, W, out=out)
        if self.bias:
            out += self.params["b"]
        return out

    def backward(self, grad):
        propagate, self.propagate = self.propagate, False
        super().backward(grad)  # the parameter gradients, as nnx's Dense makes them
        self.propagate = propagate
        if not propagate:
            return None
        self._dx = reuse(self._dx, self._x.shape, grad.dtype)
        return np.matmul(grad, self.params["W"].T, out=self._dx)


class BufferedReLU(ReLU):
    """ReLU as it was: y and dx in buffers too."""

    _y = _dx = None

    def forward(self, x):
        self._mask = reuse(self._mask, x.shape, np.bool_)
        np.greater(x, 0, out=self._mask)
        self._y = reuse(self._y, x.shape, x.dtype)
        return np.maximum(x, 0, out=self._y)

    def backward(self, grad):
        self._dx = reuse(self._dx, grad.shape, grad.dtype)
        return np.multiply(grad, self._mask, out=self._dx)


def data(limit: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from nnx.registry import registry

        ds = registry("datasets").build("fashion_mnist", download=False).load(
            np.random.default_rng(0), dtype=np.float32)
        x, y = ds.x_train, ds.y_train
    except FileNotFoundError:
        print("Fashion-MNIST not found: random data of its shape", file=sys.stderr)
        rng = np.random.default_rng(0)
        x = rng.random((60000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 60000)
    return (x[:limit], y[:limit]) if limit else (x, y)


class Contender:
    def __init__(self, dense, relu, x, y):
        layers = [dense(256), relu(), dense(128), relu(), dense(10), Identity()]
        self.net = Network(layers, 784, rng=np.random.default_rng(0), dtype=np.float32)
        self.loss = build("losses", "softmax_cross_entropy")
        self.opt = build("optimizers", "adam", lr=1e-3)
        self.batches = Batches(x, y, 128, rng=np.random.default_rng(1))

    def epoch(self) -> tuple[float, float]:
        """Wall and CPU seconds of one epoch (CPU time: less inflated by others' load)."""
        net, loss, opt = self.net, self.loss, self.opt
        wall, cpu = time.perf_counter(), time.process_time()
        for xb, yb in self.batches:
            loss.forward(net.forward(xb, check=False), yb)
            net.backward(loss.backward())
            opt.step(net.params, net.grads)
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8, help="epochs of each (default 8)")
    p.add_argument("--limit", type=int, default=0, help="training images (default all)")
    args = p.parse_args()
    x, y = data(args.limit)
    fresh, buffered = Contender(Dense, ReLU, x, y), Contender(BufferedDense, BufferedReLU, x, y)
    times: dict[str, list[tuple[float, float]]] = {"fresh": [], "buffered": []}
    for r in range(args.rounds):
        order = [("fresh", fresh), ("buffered", buffered)]
        for key, contender in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
            times[key].append(contender.epoch())
        print(f"round {r + 1}: fresh {times['fresh'][-1][0]:.3f} s, "
              f"buffered {times['buffered'][-1][0]:.3f} s", file=sys.stderr, flush=True)
    for i, clock in enumerate(("wall", "CPU")):
        f, b = ([t[i] for t in times[key]] for key in ("fresh", "buffered"))
        ratios = [u / v for u, v in zip(f, b)]
        print(f"{clock}: median epoch fresh {statistics.median(f):.3f} s, buffered "
              f"{statistics.median(b):.3f} s; fresh / buffered, median of {len(ratios)} rounds "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    # The same weights after the same batches: the two differ only in where results live.
    same = np.array_equal(fresh.net.flat_params, buffered.net.flat_params)
    print(f"identical weights after training: {same}")


if __name__ == "__main__":
    main()
