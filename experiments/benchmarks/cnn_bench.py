"""The CNN benchmark (issue 14): one training step of a small CNN, nnx against PyTorch and its floor.

    .venv/bin/python experiments/benchmarks/cnn_bench.py [--rounds R] [--steps S] [--out DIR]

The network: conv(1->32, 3, pad 1) - relu - maxpool 2 - conv(32->64, 3, pad 1) - relu - maxpool 2
- flatten - dense(128) - relu - dense(10), softmax cross-entropy, Adam (lr 1e-3), batch 128 of
28x28 float32 inputs (random data: a step costs the same on any values). One BLAS thread
everywhere (set before NumPy is imported, then checked with threadpoolctl).

Contenders, interleaved round by round (each round runs ``--steps`` steps of each, in an order
that rotates every round, so that the machine's load hits all of them alike); the figure is the
median over rounds of a step's time:

- ``nnx``: an nnx ``Network`` of the layers in ``LAYERS``, stepped as the Trainer steps it
  (forward, loss, backward, one Adam step over the flat parameter buffer);
- ``floor``: the matrix products of the same step alone, the same calls on the same shapes into
  preallocated outputs: what no NumPy implementation of this layout can go below;
- ``torch`` / ``torch_fused``: PyTorch CPU eager, ``nn.Sequential`` of the same layers,
  ``torch.optim.Adam`` as it comes and with ``fused=True`` (skipped when torch is absent).

Both wall-clock time and process CPU time are recorded: on a loaded machine the CPU time of a
one-thread process is the steadier figure (time spent descheduled is not counted in it).
Then where an nnx step goes (im2col, products, col2im, pooling, ReLU, loss, optimizer), and the
peak memory of each contender alone in a fresh subprocess. Targets are reported, never asserted.
``make bench`` runs all this as its CNN section (``measure``, then ``markdown``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread: before NumPy (or torch) is imported

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # nnx from this checkout even when run from elsewhere

from nnx.activations import ReLU  # (after the thread settings)
from nnx.convolution import Conv2D
from nnx.layers import Dense
from nnx.losses import SoftmaxCrossEntropy
from nnx.network import Network
from nnx.normalization import BatchNorm
from nnx.optimizers import Adam
from nnx.pooling import MaxPool2D

BATCH, CLASSES, LR = 128, 10, 1e-3
STEPS_PER_EPOCH = -(-60000 // BATCH)  # a Fashion-MNIST epoch: 469 steps
DTYPE = np.float32


def batches(seed: int = 0, count: int = 8):
    """A few random batches (x (128, 1, 28, 28), labels (128,)), cycled through."""
    rng = np.random.default_rng(seed)
    return [(rng.random((BATCH, 1, 28, 28), dtype=DTYPE), rng.integers(0, CLASSES, BATCH))
            for _ in range(count)]


# -- the contenders ------------------------------------------------------------------------------
# The network, as a model config lists it (conf/experiment/fashion_mnist_cnn.yaml adds
# batch norm and dropout; the benchmark keeps the plain architecture of the issue).
LAYERS = [{"name": "conv2d", "channels": 32, "kernel": 3, "padding": 1}, "relu",
          {"name": "max_pool2d", "size": 2},
          {"name": "conv2d", "channels": 64, "kernel": 3, "padding": 1}, "relu",
          {"name": "max_pool2d", "size": 2},
          "flatten", {"name": "dense", "units": 128}, "relu", {"name": "dense", "units": CLASSES}]


class NnxCNN:
    """The benchmark CNN as an nnx ``Network``, stepped as the Trainer steps it: forward (input
    checks skipped per batch, as the Trainer does), loss, backward, one Adam step over the
    network's flat parameter buffer."""

    label = "nnx Network (forward, loss, backward, Adam)"

    def __init__(self, seed: int = 0) -> None:
        self.network = Network(LAYERS, in_shape=(1, 28, 28), rng=np.random.default_rng(seed),
                               dtype=DTYPE)
        self.loss, self.opt = SoftmaxCrossEntropy(), Adam(lr=LR)
        self.parameter_count = self.network.n_params
        self.timer = None  # set by breakdown(): phase -> accumulated CPU seconds

    def _timed(self, phase, fn, *args):
        if self.timer is None:
            return fn(*args)
        t0 = time.process_time()
        out = fn(*args)
        self.timer[phase] += time.process_time() - t0
        return out

    def step(self, x, y) -> float:
        net = self.network
        if self.timer is None:  # the plain step, as the Trainer runs it
            loss = self.loss.forward(net.forward(x, check=False), y)
            net.backward(self.loss.backward())
            self.opt.step(net.params, net.grads, net.decay)
            return loss
        for layer in net.layers:  # the same calls, each layer's timed
            x = self._timed(phase_of(layer, "forward"), layer.forward, x)
        loss = self._timed("loss", self.loss.forward, x, y)
        g = self._timed("loss", self.loss.backward)
        for layer in reversed(net.layers):
            g = self._timed(phase_of(layer, "backward"), layer.backward, g)
        self._timed("optimizer (Adam)", self.opt.step, net.params, net.grads, net.decay)
        return loss


def phase_of(layer, direction: str) -> str:
    kinds = {Conv2D: "conv", MaxPool2D: "max pool", BatchNorm: "batch norm", ReLU: "relu",
             Dense: "dense"}
    kind = kinds.get(type(layer), "rest")  # flatten: a reshape
    return f"{kind} {direction}"


class Floor:
    """The matrix products of an nnx step alone: the same np.matmul calls on the same shapes
    and layouts as Conv2D and Dense make, into preallocated outputs."""

    label = "floor (the step's matrix products alone)"

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)

        def a(*shape):
            return rng.standard_normal(shape).astype(DTYPE)

        n = BATCH
        # conv1: W (32, 9), cols (n, 9, 784); conv2: W (64, 288), cols (n, 288, 196)
        # (the same calls as Conv2D.forward/backward: keep the two in step)
        # dense1: x (n, 3136) @ W (3136, 128); dense2: (n, 128) @ (128, 10)
        self.calls = []
        for out_c, K, P, propagate in [(32, 9, 784, False), (64, 288, 196, True)]:
            W, cols, g = a(out_c, K), a(n, K, P), a(n, out_c, P)
            y, dW, dcols = np.empty((n, out_c, P), DTYPE), np.empty((n, K, out_c), DTYPE), \
                np.empty((n, K, P), DTYPE)
            # dW as Conv2D computes it, transposed: cols[n] @ g[n].T
            self.calls += [(W, cols, y), (cols, g.transpose(0, 2, 1), dW)]
            if propagate:
                self.calls.append((W.T, g, dcols))
        for fan_in, units in [(3136, 128), (128, 10)]:
            x, W, g = a(n, fan_in), a(fan_in, units), a(n, units)
            self.calls += [(x, W, np.empty((n, units), DTYPE)),
                           (x.T, g, np.empty((fan_in, units), DTYPE)),
                           (g, W.T, np.empty((n, fan_in), DTYPE))]

    def step(self, x, y) -> float:
        for left, right, out in self.calls:
            np.matmul(left, right, out=out)
        return 0.0


class TorchCNN:
    """PyTorch CPU eager: the same network as nn.Sequential, F.cross_entropy, torch.optim.Adam."""

    def __init__(self, fused: bool, seed: int = 0) -> None:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # allowed only before any parallel work; one is enough then
            pass
        torch.manual_seed(seed)
        self.torch = torch
        self.model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, CLASSES))
        kwargs = {"fused": True} if fused else {}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, **kwargs)
        self.label = f"PyTorch {torch.__version__} CPU eager, Adam" + (
            " fused=True" if fused else " (default)")

    def step(self, x, y) -> float:
        torch = self.torch
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(xt), yt)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make(key: str):
    return {"nnx": NnxCNN, "floor": Floor, "torch": lambda: TorchCNN(False),
            "torch_fused": lambda: TorchCNN(True)}[key]()


# -- measurements --------------------------------------------------------------------------------
def interleaved(keys, rounds: int, steps: int, log=None) -> dict:
    """Per contender and round: the mean wall and CPU seconds of a step over ``steps`` steps.

    The order rotates every round (as bench.py's race does), so no contender always runs first
    or after the same one."""
    data = batches()
    contenders = {k: make(k) for k in keys}
    for c in contenders.values():  # warm up: first-touch allocations, torch's kernel choice
        for x, y in data[:3]:
            c.step(x, y)
    wall, cpu = defaultdict(list), defaultdict(list)
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            c = contenders[key]
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                c.step(*data[i % len(data)])
            wall[key].append((time.perf_counter() - w0) / steps)
            cpu[key].append((time.process_time() - c0) / steps)
        (log or _log)(f"CNN round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {1e3 * cpu[k][-1]:.1f} ms" for k in keys))
    labels = {k: contenders[k].label for k in keys}
    return {"wall": {k: wall[k] for k in keys}, "cpu": {k: cpu[k] for k in keys},
            "labels": labels,
            "parameters": contenders["nnx"].parameter_count if "nnx" in contenders else None}


def _log(message: str) -> None:
    print(f"[cnn bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def breakdown(steps: int) -> dict:
    """Where an nnx step's CPU time goes, by phase; conv phases split into im2col and col2im
    (the conv layer's own ``_im2col`` / ``_col2im``, timed on the instances) and the rest of
    the layer (its matrix products, bias and dW's sum over the batch)."""
    model, data = NnxCNN(), batches()
    for x, y in data[:3]:
        model.step(x, y)
    model.timer = defaultdict(float)
    convs = [layer for layer in model.network.layers if isinstance(layer, Conv2D)]
    for conv in convs:
        for name, phase in (("_im2col", "im2col"), ("_col2im", "col2im")):
            inner = getattr(conv, name)

            def timed(*args, _inner=inner, _phase=phase):
                t0 = time.process_time()
                out = _inner(*args)
                model.timer[_phase] += time.process_time() - t0
                return out

            setattr(conv, name, timed)
    t0 = time.process_time()
    for i in range(steps):
        model.step(*data[i % len(data)])
    total = (time.process_time() - t0) / steps
    t = defaultdict(float, {k: v / steps for k, v in model.timer.items()})

    def both(kind):
        return t[f"{kind} forward"] + t[f"{kind} backward"]

    rows = {
        "im2col (padding + strided copy)": t["im2col"],
        "conv products (+ bias, dW sum)": both("conv") - t["im2col"] - t["col2im"],
        "col2im": t["col2im"],
        "max pool (forward + backward)": both("max pool"),
        "batch norm (forward + backward)": both("batch norm") if any(
            isinstance(m, BatchNorm) for m in model.network.layers) else None,
        "relu (forward + backward)": both("relu"),
        "dense (products + bias)": both("dense"),
        "loss (softmax cross-entropy)": t["loss"],
        "optimizer (Adam)": t["optimizer (Adam)"],
    }
    rows["the rest (flatten, loop)"] = total - sum(v for v in rows.values() if v)
    return {"step": total, "steps": steps, "rows": rows}


def memory(key: str, steps: int = 10) -> float | None:
    """Peak resident memory (MiB) of a fresh process that builds ``key`` and runs ``steps``."""
    done = subprocess.run([sys.executable, __file__, "--memory-worker", key, "--steps",
                           str(steps)], capture_output=True, text=True, timeout=600, check=False)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        _log(f"memory of {key} failed: {done.stderr[-500:]}")
        return None


def memory_worker(key: str, steps: int) -> None:
    c, data = make(key), batches()
    for i in range(steps):
        c.step(*data[i % len(data)])
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child of the
    # (large) benchmark process would report the parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) / 1024)  # kB
            return
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # elsewhere: KiB


# -- the report ----------------------------------------------------------------------------------
def summarise(res: dict) -> dict:
    """Medians of the step times, and ratios as medians of per-round ratios (with quartiles):
    a round's contenders ran within seconds of each other, under about the same load."""
    med = {clock: {k: float(np.median(v)) for k, v in res[clock].items()}
           for clock in ("wall", "cpu")}
    out = {"median_step_s": med}
    pairs = [("nnx", "floor"), ("nnx", "torch"), ("floor", "torch"), ("nnx", "torch_fused"),
             ("floor", "torch_fused")]
    for clock, times in ((c, res[c]) for c in ("wall", "cpu")):
        ratios = {}
        for a, b in pairs:
            if a in times and b in times:
                r = np.array(times[a]) / np.array(times[b])
                ratios[f"{a} / {b}"] = [float(q) for q in np.percentile(r, [25, 50, 75])]
        out[f"ratios_{clock}"] = ratios
    return out


def targets(result: dict) -> list[dict]:
    """The issue's targets, each with what was measured and whether it is met (None: not
    measured, e.g. without PyTorch). CPU-time ratios; reported, never asserted."""
    r, mem = result["summary"]["ratios_cpu"], result.get("memory_mib") or {}

    def ratio(name):
        q1, value, q3 = r[name]
        return value, f"{value:.2f}x (quartiles {q1:.2f}-{q3:.2f})"

    rows = []
    if "nnx / torch" in r:
        value, text = ratio("nnx / torch")
        fused = ratio("nnx / torch_fused")[1] if "nnx / torch_fused" in r else "n/a"
        rows += [{"target": "nnx step (and epoch) faster than PyTorch CPU eager's",
                  "measured": f"nnx / PyTorch {text}; / PyTorch fused Adam {fused}",
                  "met": value < 1},
                 {"target": "nnx at most 1.5x PyTorch in any case", "measured": text,
                  "met": value <= 1.5}]
    else:
        why = result.get("torch_note", "PyTorch not installed")
        rows += [{"target": t, "measured": f"skipped: {why}", "met": None}
                 for t in ("nnx step (and epoch) faster than PyTorch CPU eager's",
                           "nnx at most 1.5x PyTorch in any case")]
    value, text = ratio("nnx / floor")
    rows.append({"target": "nnx <= 1.6x its own floor (the step's matrix products alone)",
                 "measured": text, "met": value <= 1.6})
    if "floor / torch" in r:
        value, text = ratio("floor / torch")
        rows.append({"target": "the aim: nnx's matrix products alone faster than PyTorch's "
                     "whole step", "measured": f"floor / PyTorch {text}", "met": value < 1})
    stated = ", ".join(f"{k} {v:.0f} MiB" for k, v in mem.items() if v is not None)
    rows.append({"target": "peak memory stated", "measured": stated or "not measured",
                 "met": bool(stated) or None})
    return rows


def markdown(result: dict, heading: str = "") -> str:
    s, labels = result["summary"], result["labels"]
    lines = []
    if heading:
        lines += [heading, ""]
    lines += [(f"One training step of the issue's CNN ({result['parameters']:,} parameters), "
              f"batch {BATCH}, float32, one BLAS thread; {result['settings']['rounds']} rounds "
              f"of {result['settings']['steps_per_round']} steps per contender, interleaved "
              "(the order rotates every round); medians. **CPU time of the process** is the "
              "figure: the machine is shared, and a one-thread process's CPU time leaves out "
              "the time it waits descheduled (wall time beside it). Load average "
              f"{result['machine']['load_average'][0]:.2f} at the start, "
              f"{result['machine']['load_average_after'][0]:.2f} at the end."), ""]
    if result.get("torch_note"):
        lines += [f"PyTorch: {result['torch_note']}.", ""]
    lines += [("| contender | CPU ms / step | wall ms / step | CPU s / epoch (469 steps) | "
              "peak MiB |"), "|---|---:|---:|---:|---:|"]
    for key, label in labels.items():
        cpu, wall = s["median_step_s"]["cpu"][key], s["median_step_s"]["wall"][key]
        mem = (result.get("memory_mib") or {}).get(key)
        lines.append(f"| {label} | {1e3 * cpu:.1f} | {1e3 * wall:.1f} | "
                     f"{cpu * STEPS_PER_EPOCH:.1f} | {'-' if mem is None else f'{mem:.0f}'} |")
    lines += ["", "| ratio (CPU time, median of per-round ratios) | median | quartiles |",
              "|---|---:|---|"]
    for name, (q1, value, q3) in s["ratios_cpu"].items():
        lines.append(f"| {name} | {value:.2f} | {q1:.2f}-{q3:.2f} |")
    b = result["breakdown"]
    lines += ["", (f"Where an nnx step goes (CPU time, {1e3 * b['step']:.1f} ms a step, "
                   f"{b['steps']} instrumented steps):"), "", "| phase | ms | share |",
              "|---|---:|---:|"]
    for name, sec in b["rows"].items():
        if sec is None:
            lines.append(f"| {name} | — | not in this network |")
        else:
            lines.append(f"| {name} | {1e3 * sec:.1f} | {100 * sec / b['step']:.0f}% |")
    lines += ["", "| target (reported, never asserted) | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(rounds: int, steps: int, use_torch: bool, with_memory: bool = True,
            torch_note: str = "", log=None) -> dict:
    """Everything the CNN section reports, as one JSON-able dict (bench.py's ``cnn``)."""
    keys = ["nnx", "floor"] + (["torch", "torch_fused"] if use_torch else [])
    load = os.getloadavg()
    res = interleaved(keys, rounds, steps, log)
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average": load,
                    "python": platform.python_version(), "numpy": np.__version__,
                    "blas": [p.get("internal_api") for p in threadpool_info()]},
        "settings": {"rounds": rounds, "steps_per_round": steps, "batch": BATCH,
                     "dtype": "float32", "clock": "process CPU time (wall time beside it)"},
        "labels": res["labels"], "parameters": res["parameters"],
        "per_round_s": {"wall": res["wall"], "cpu": res["cpu"]},
        "summary": summarise(res),
        "breakdown": breakdown(max(steps, 10)),
        "memory_mib": {k: memory(k, max(steps, 3)) for k in keys} if with_memory else {},
    }
    if not use_torch:
        result["torch_note"] = torch_note or "PyTorch is not installed (pip install torch)"
    result["machine"]["load_average_after"] = os.getloadavg()
    result["targets"] = targets(result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10, help="steps per contender and round")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        return memory_worker(args.memory_worker, args.steps)
    pools = [p for p in threadpool_info() if p["num_threads"] != 1]
    if pools:
        sys.exit(f"more than one BLAS thread: {pools}")
    use_torch = not args.skip_torch and torch_available()
    result = measure(args.rounds, args.steps, use_torch, not args.skip_memory,
                     "--skip-torch given" if args.skip_torch else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cnn_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "cnn_bench.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
