"""nnx's speed benchmark (issue 6): ``make bench``, or

    .venv/bin/python experiments/benchmarks/bench.py [--epochs N] [--quick] [--skip-scaling]
                                                     [--skip-torch] [--out DIR]

One BLAS thread everywhere (set here before NumPy is imported, then checked with threadpoolctl).
Measured, on Fashion-MNIST with the 784-256-128-10 ReLU MLP, Adam lr 1e-3, batch 128, float32:

1. Per epoch, the contenders interleaved epoch by epoch in one process (round-robin, so that
   the machine's load hits all of them alike): the floor (the 8 matmuls of a step alone), nnx's
   Trainer, nnx in a plain loop, scikit-learn's MLPClassifier, PyTorch CPU with its default and
   its fused Adam (skipped with a note when torch is not installed). Halfway through, a
   ``python -m nnx.run experiment=fashion_mnist_mlp`` subprocess with MLflow tracking on; its
   per-epoch time is read from the MLflow store's ``epoch_seconds``. Then test accuracy.
2. Peak memory, each contender alone in a fresh subprocess (see ``memory_worker``).
3. The tutorial network (1500 iterations): nnx's Python API against the bare NumPy code
   (``contenders.tutorial_numpy``), and ``python -m nnx.run experiment=tutorial`` wall time
   with tracking off and on.
4. Where an nnx Trainer epoch goes (instrumented: matmuls, Adam, gather, ...).
5. The CNN of issue 14 (``cnn_bench.py``): one training step of conv-relu-pool x2 - dense -
   relu - dense, nnx's Network against PyTorch CPU eager and against its floor (the im2col
   matrix products alone), interleaved round by round, CPU time of the process; where an nnx
   step goes; peak memory; its targets.
6. Scaling: epoch time over batch size and width, float32 and float64, on a subset (a PNG).

Writes ``bench.json``, ``bench.md`` and ``scaling.png`` to ``--out`` (default
``experiments/benchmarks/results/``); with the default ``--out`` it also refreshes the table in
``experiments/benchmarks/README.md``. Targets are reported, never asserted.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread: before NumPy (or torch) is imported

import argparse
import json
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # nnx from this checkout even when run from elsewhere
sys.path.insert(0, str(HERE))

import cnn_bench
import contenders as C  # after the thread settings and the path
import report

RESULTS = HERE / "results"
KEYS = ["floor", "nnx_trainer", "nnx_trainer_mlflow", "nnx_loop", "nnx_run", "sklearn",
        "torch_adam", "torch_fused_adam"]
TUTORIAL_KEYS = ["tutorial_numpy", "tutorial_nnx", "tutorial_run_none", "tutorial_run_tracking"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine --------------------------------------------------------------------------------
def machine(torch_loaded: bool) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    try:
        blas_build = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_blas = f"{blas_build.get('name')} {blas_build.get('version')}"
    except (AttributeError, KeyError, TypeError, ValueError):  # NumPy's layout to change
        numpy_blas = "unknown"
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas_build": numpy_blas,
        "scikit-learn": version("scikit-learn"),
        "torch": version("torch"),
        "mlflow": version("mlflow"),
        "threadpools": thread_pools(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                                               "OPENBLAS_L2_SIZE")},
        "loadavg_start": os.getloadavg(),
    }
    if torch_loaded:
        import torch

        config = torch.__config__.show()
        blas = re.search(r"BLAS_INFO=(\w+)", config)
        info["torch_detail"] = {
            "blas": blas.group(1) if blas else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
        }
    return info


def thread_pools() -> list[dict]:
    return [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                   "architecture", "threading_layer")}
            | {"library": Path(p["filepath"]).name} for p in threadpool_info()]


def check_one_thread() -> list[str]:
    """Names of the thread pools that run more than one thread (should be none)."""
    return [f"{p['internal_api']} ({Path(p['filepath']).name}): {p['num_threads']} threads"
            for p in threadpool_info() if p["num_threads"] != 1]


# -- subprocesses -------------------------------------------------------------------------------
def _hwm_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def spawn(args: list[str], log_path: Path, timeout: float = 900) -> dict:
    """Run a command; its wall time, exit code, output and peak RSS.

    The peak is the child's VmHWM, polled every 50 ms (it only grows, so the last reading
    holds the peak up to then). Not ``ru_maxrss``: a child forked from this big process
    inherits this process's RSS as its starting maximum.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NNX_TRACKING_URI", None)
    peak = [None]
    with open(log_path, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)

        def poll():
            while proc.poll() is None:
                value = _hwm_mib(proc.pid)
                if value is not None:
                    peak[0] = value
                time.sleep(0.05)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - started
        watcher.join()
    return {"rc": proc.returncode, "wall": wall, "peak_mib": peak[0],
            "output": log_path.read_text(errors="replace")}


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def store_metric(db: Path, key: str) -> list[float]:
    """The values of ``key`` by step in the latest run of an MLflow sqlite store."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        run = con.execute("SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()
        if run is None:
            return []
        rows = con.execute("SELECT step, value FROM metrics WHERE run_uuid = ? AND key = ? "
                           "ORDER BY step, timestamp", (run[0], key)).fetchall()
    return [value for _, value in rows]


def checkpoint_history(run_dir: Path) -> list[dict]:
    """The trainer's history from ``checkpoints/last.npz`` (JSON inside the archive)."""
    with np.load(run_dir / "checkpoints" / "last.npz", allow_pickle=False) as archive:
        return json.loads(archive["__meta_json__"].tobytes().decode())["history"]


def nnx_run_fashion(epochs: int, limit: int, quick: bool, tmp: Path) -> dict:
    """``python -m nnx.run experiment=fashion_mnist_mlp`` with MLflow tracking on, as a user
    runs it; falls back to tracking=none (and says so) when the tracked run fails."""
    db = tmp / "fashion_mlflow.db"
    base = [sys.executable, "-m", "nnx.run", "experiment=fashion_mnist_mlp",
            f"trainer.epochs={epochs}", "trainer.progress=false"]
    if limit:
        base.append(f"dataset.limit_train={limit}")
    tracked = [*base, f"tracking.uri=sqlite:///{db}", f"hydra.run.dir={tmp / 'fashion'}"]
    if quick:  # the end-of-run model and plots cost seconds and no epoch time
        tracked += ["tracking.plots=false", "tracking.log_model=false"]
    command = " ".join(["python", *tracked[1:]]).replace(str(tmp), "<tmp>")
    result = spawn(tracked, tmp / "fashion.log")
    entry = {"key": "nnx_run", "label": "nnx: python -m nnx.run (MLflow on)", "command": command,
             "process_wall": result["wall"], "process_peak_mib": result["peak_mib"], "note": ""}
    run_dir = tmp / "fashion"
    if result["rc"] == 0:
        try:
            entry["epoch_seconds"] = store_metric(db, "epoch_seconds")
            entry["source"] = "MLflow store: epoch_seconds"
        except sqlite3.Error as exc:
            entry["note"] = f"could not read the MLflow store ({exc}); epoch times from the checkpoint"
    else:
        entry["note"] = (f"tracking run failed (exit {result['rc']}: {tail(result['output'])}); "
                         "measured with tracking=none instead")
        entry["label"] = "nnx: python -m nnx.run (tracking=none)"
        run_dir = tmp / "fashion_none"
        result = spawn([*base, "tracking=none", f"hydra.run.dir={run_dir}"],
                       tmp / "fashion_none.log")
        entry.update(process_wall=result["wall"], process_peak_mib=result["peak_mib"])
        if result["rc"] != 0:
            entry["error"] = f"exit {result['rc']}: {tail(result['output'])}"
            return entry
    if not entry.get("epoch_seconds"):
        entry["epoch_seconds"] = [h["epoch_seconds"] for h in checkpoint_history(run_dir)]
        entry["source"] = "checkpoint history: epoch_seconds"
    found = re.findall(r"test_accuracy (\d+\.\d+)", result["output"])
    entry["accuracy"] = float(found[-1]) if found else None
    return entry


# -- 1. the race --------------------------------------------------------------------------------
def race(ds, epochs: int, use_torch: bool, tracked_overrides: list[str] | None,
         run_middle) -> dict:
    """Every contender, one epoch each per round, in an order that rotates every round."""
    x, y = ds.x_train, ds.y_train
    contenders = [C.nnx_trainer_turns(x, y, epochs)]
    notes = {}
    if tracked_overrides is not None:
        try:
            contenders.append(C.nnx_tracked_turns(tracked_overrides))
        except ImportError as exc:
            notes["nnx_trainer_mlflow"] = f"skipped: {exc}"
    contenders += [C.Floor(x), C.NnxLoop(x, y), C.Sklearn(x, y)]
    if use_torch:
        contenders += [C.Torch(x, y, fused=False), C.Torch(x, y, fused=True)]
    samples = {c.key: {"wall": [], "cpu": []} for c in contenders}
    middle: dict = {}
    for r in range(epochs):
        shift = r % len(contenders)  # no contender always runs first, or after the same one
        for contender in contenders[shift:] + contenders[:shift]:
            with C.Clock() as clock:
                contender.epoch()
            samples[contender.key]["wall"].append(clock.wall)
            samples[contender.key]["cpu"].append(clock.cpu)
        log(f"round {r + 1}/{epochs}: " + ", ".join(
            f"{k} {v['wall'][-1]:.2f}s" for k, v in samples.items()))
        if r == max(epochs // 2 - 1, 0):
            middle.update(run_middle())
    results = {}
    for contender in contenders:
        if isinstance(contender, C.TrainerTurns):
            contender.finish()
        entry = results[contender.key] = {"key": contender.key, "label": contender.label,
                                          **samples[contender.key]}
        if isinstance(contender, C.TrainerTurns):
            entry["epoch_seconds"] = contender.epoch_seconds
        entry["accuracy"] = contender.accuracy(ds.x_test, ds.y_test)
        entry["note"] = getattr(contender, "note", "")
        if contender.key == "sklearn":
            entry["dtype"] = contender.dtype
    for key, note in notes.items():
        results[key] = {"key": key, "skipped": note}
    results["nnx_run"] = middle
    return results


# -- 2. memory ----------------------------------------------------------------------------------
def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_worker(key: str, limit: int, epochs: int) -> dict:
    """In a fresh process: import what ``key`` needs, load the data, train ``epochs`` epochs,
    evaluate. Reports the RSS after the imports, the peak RSS while loading, the RSS once
    loaded and the peak RSS while training. The peaks are VmHWM, reset (``clear_refs``) after
    the imports and again after loading, so each phase's peak is its own and the libraries'
    import-time peaks do not count."""
    import nnx.trainer  # noqa: F401  (imports count in the baseline, not the growth)

    if key.startswith("torch"):
        C.torch_setup()
    elif key == "sklearn":
        import sklearn.neural_network  # noqa: F401

    def reset_peak() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
            return True
        except OSError:
            return False

    resettable = reset_peak()
    base = rss_mib()
    ds = C.load_fashion(limit)
    load_peak = rss_mib("VmHWM")
    reset_peak()
    loaded = rss_mib()
    x, y = ds.x_train, ds.y_train
    if key == "nnx_trainer":
        trainer = C.nnx_trainer(x, y, epochs, [])
        trainer.fit(x, y)
        C.argmax_accuracy(trainer.network.predict(ds.x_test), ds.y_test)
    else:
        contender = {"floor": lambda: C.Floor(x), "nnx_loop": lambda: C.NnxLoop(x, y),
                     "sklearn": lambda: C.Sklearn(x, y),
                     "torch_adam": lambda: C.Torch(x, y, fused=False),
                     "torch_fused_adam": lambda: C.Torch(x, y, fused=True)}[key]()
        for _ in range(epochs):
            contender.epoch()
        contender.accuracy(ds.x_test, ds.y_test)
    train_peak = rss_mib("VmHWM")
    return {"rss_after_imports_mib": base, "load_peak_mib": load_peak,
            "rss_after_load_mib": loaded, "train_peak_mib": train_peak,
            "peak_mib": max(load_peak, train_peak), "dataset_mib": C.dataset_mib(ds),
            "peak_source": "VmHWM per phase" if resettable
            else "VmHWM since the start (clear_refs refused; imports included)"}


def memory(keys: list[str], limit: int, tmp: Path) -> dict:
    results = {}
    for key in keys:
        log(f"memory: {key}")
        run = spawn([sys.executable, str(Path(__file__).resolve()), "--memory-worker", key,
                     "--limit", str(limit)], tmp / f"memory_{key}.log", timeout=600)
        lines = [ln for ln in run["output"].splitlines() if ln.startswith("{")]
        if run["rc"] != 0 or not lines:
            results[key] = {"error": f"exit {run['rc']}: {tail(run['output'])}"}
            continue
        results[key] = json.loads(lines[-1])
    return results


# -- 3. the tutorial ----------------------------------------------------------------------------
def tutorial(repeats: int, process_repeats: int, tmp: Path) -> dict:
    net = C.TutorialNnx()
    w0, w1 = net.initial_weights()
    agree = float(np.max(np.abs(net.run() - C.tutorial_numpy(w0.copy(), w1.copy()))))
    times = {"tutorial_numpy": [], "tutorial_nnx": []}
    for i in range(repeats):
        order = ["tutorial_numpy", "tutorial_nnx"][:: 1 if i % 2 else -1]
        for key in order:
            with C.Clock() as clock:
                if key == "tutorial_nnx":
                    net.run()
                else:
                    C.tutorial_numpy(w0.copy(), w1.copy())
            times[key].append(clock.wall)
    results = {
        "tutorial_numpy": {"label": "bare NumPy tutorial code (1500 iterations)",
                           "wall": times["tutorial_numpy"]},
        "tutorial_nnx": {"label": "nnx Python API, README snippet (1500 iterations)",
                         "wall": times["tutorial_nnx"], "max_abs_diff_vs_numpy": agree},
    }
    db = tmp / "tutorial_mlflow.db"
    base = [sys.executable, "-m", "nnx.run", "experiment=tutorial"]
    variants = {"tutorial_run_none": ["tracking=none"],
                "tutorial_run_tracking": [f"tracking.uri=sqlite:///{db}"]}
    if process_repeats == 0:  # --quick: a smoke test; the model and plots cost many seconds
        variants["tutorial_run_tracking"] += ["tracking.plots=false", "tracking.log_model=false"]
    labels = {"tutorial_run_none": "python -m nnx.run experiment=tutorial tracking=none",
              "tutorial_run_tracking": "python -m nnx.run experiment=tutorial (MLflow on)"}
    for key in variants:
        results[key] = {"label": labels[key], "wall": [], "errors": []}
    # The first tracked run creates the store (schema migrations): timed, kept apart, unless
    # it is the only one (--quick).
    first = spawn([*base, *variants["tutorial_run_tracking"], f"hydra.run.dir={tmp / 'tut0'}"],
                  tmp / "tutorial_first.log")
    results["tutorial_run_tracking"]["first_run_creating_store"] = first["wall"]
    if first["rc"] != 0:
        results["tutorial_run_tracking"]["errors"].append(tail(first["output"]))
    elif process_repeats == 0:
        results["tutorial_run_tracking"]["wall"].append(first["wall"])
        run = spawn([*base, *variants["tutorial_run_none"], f"hydra.run.dir={tmp / 'none0'}"],
                    tmp / "tutorial_none.log")
        results["tutorial_run_none"]["wall" if run["rc"] == 0 else "errors"].append(
            run["wall"] if run["rc"] == 0 else tail(run["output"]))
    for i in range(process_repeats):
        for key in (list(variants) if i % 2 == 0 else list(variants)[::-1]):
            log(f"tutorial: {key} #{i + 1}")
            run = spawn([*base, *variants[key], f"hydra.run.dir={tmp / f'{key}{i}'}"],
                        tmp / f"{key}{i}.log")
            if run["rc"] == 0:
                results[key]["wall"].append(run["wall"])
            else:
                results[key]["errors"].append(f"exit {run['rc']}: {tail(run['output'])}")
    return results


# -- 4. where an nnx epoch goes -----------------------------------------------------------------
class _TimedNumpy:
    """Stands in for ``numpy`` inside ``nnx.layers`` while profiling: times ``np.matmul``."""

    def __init__(self, sink: dict) -> None:
        self._sink = sink

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return np.matmul(*args, **kwargs)
        finally:
            self._sink["matmuls"] += time.perf_counter() - started


def profile_epoch(ds, epochs: int) -> dict:
    """nnx Trainer epochs, timed part by part; per part, the median over ``epochs`` epochs.

    The parts are wrapped on the instances (and ``numpy`` inside ``nnx.layers`` is swapped for
    a timing stand-in); no engine file is edited. Two of the Trainer's own costs are timed
    apart on the same arrays: the finite checks (two sums over all parameters per step) and the
    accuracy counted from each batch's outputs. The remainder is the rest of the Trainer's loop.
    """
    import nnx.layers
    from nnx import metrics as M
    from nnx.data import Batches
    from nnx.layers import Dense
    from nnx.module import all_finite
    from nnx.trainer import Callback

    x, y = ds.x_train, ds.y_train
    t = dict.fromkeys(["matmuls", "dense", "activations", "loss", "optimizer", "gather"], 0.0)
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append((dict(t), logs["epoch_seconds"]))

    trainer = C.nnx_trainer(x, y, epochs, [Snapshot()])
    net = trainer.network

    def timed(function, part):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                t[part] += time.perf_counter() - started
        return wrapper

    for layer in net.layers:
        part = "dense" if isinstance(layer, Dense) else "activations"
        layer.forward, layer.backward = timed(layer.forward, part), timed(layer.backward, part)
    trainer.loss.forward = timed(trainer.loss.forward, "loss")
    trainer.loss.backward = timed(trainer.loss.backward, "loss")
    trainer.optimizer.step = timed(trainer.optimizer.step, "optimizer")
    original_iter, original_np = Batches.__iter__, nnx.layers.np

    def timed_iter(self):
        it = original_iter(self)
        while True:
            started = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                t["gather"] += time.perf_counter() - started
            yield item

    Batches.__iter__, nnx.layers.np = timed_iter, _TimedNumpy(t)
    try:
        trainer.fit(x, y)
    finally:
        Batches.__iter__, nnx.layers.np = original_iter, original_np
    steps = trainer.step // epochs
    out = net.forward(x[:C.BATCH], check=False)
    per_epoch = []
    previous = dict.fromkeys(t, 0.0)
    for totals, seconds in snapshots:
        d = {k: totals[k] - previous[k] for k in t}
        previous = totals
        with C.Clock() as finite:
            for _ in range(steps):
                all_finite(net.flat_grads)  # as the Trainer checks them, twice a step
                all_finite(net.flat_params)
        with C.Clock() as acc:
            for _ in range(steps):
                int(np.sum(M.labels_from_outputs(out) == M.labels_from_targets(y[:C.BATCH])))
        parts = {
            "matmuls (8 per step)": d["matmuls"],
            "Dense besides matmuls (bias add, bias gradient, shape check)":
                d["dense"] - d["matmuls"],
            "ReLU/identity forward+backward": d["activations"],
            "softmax cross-entropy forward+backward": d["loss"],
            "Adam step (one flat update)": d["optimizer"],
            "minibatch gather (np.take)": d["gather"],
            "Trainer: finite checks (2 dot products/step)": finite.wall,
            "Trainer: accuracy on the fly": acc.wall,
        }
        parts["Trainer: the rest (loop, Python, wrappers)"] = seconds - sum(parts.values())
        per_epoch.append((seconds, parts))
    return {"epochs": epochs, "steps": steps,
            "epoch_seconds": C.median([s for s, _ in per_epoch]),
            "parts": {k: C.median([p[k] for _, p in per_epoch]) for k in per_epoch[0][1]},
            "per_epoch": [{"epoch_seconds": s, "parts": p} for s, p in per_epoch]}


# -- 5. scaling ---------------------------------------------------------------------------------
def scaling(ds, batch_samples: int, width_samples: int, batches: list[int], widths: list[int],
            repeats: int) -> list[dict]:
    """Epoch time of the nnx loop and of the floor over batch size (hidden 256-128) and over
    width w (hidden w-w/2, batch 128), float32 and float64; medians of ``repeats`` alternating
    epochs. The width sweep uses fewer images (its wide end is slow); the report gives seconds
    per 10000 images for both."""
    rows = []
    for dtype in (np.float32, np.float64):
        points = ([("batch", b, 256, batch_samples) for b in batches]
                  + [("width", 128, w, width_samples) for w in widths])
        for sweep, batch, width, n in points:
            x = ds.x_train[:n].astype(dtype)
            y = ds.y_train[:n]
            hidden = (width, max(width // 2, 1))
            nnx_loop = C.NnxLoop(x, y, hidden=hidden, batch=batch)
            floor = C.Floor(x, hidden=hidden, batch=batch)
            walls = {"nnx": [], "floor": []}
            for i in range(repeats):
                for name, c in ([("nnx", nnx_loop), ("floor", floor)][:: 1 if i % 2 else -1]):
                    with C.Clock() as clock:
                        c.epoch()
                    walls[name].append(clock.wall)
            row = {"sweep": sweep, "dtype": np.dtype(dtype).name, "batch": batch,
                   "hidden": list(hidden), "samples": n,
                   "nnx_s": C.median(walls["nnx"]), "floor_s": C.median(walls["floor"])}
            rows.append(row)
            log(f"scaling {row['dtype']} {sweep}: batch {batch} hidden {hidden}, {n} images: "
                f"nnx {row['nnx_s']:.3f}s floor {row['floor_s']:.3f}s")
    return rows


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="epochs per contender (default 8; "
                   "--quick: 2)")
    p.add_argument("--quick", action="store_true", help="a smoke test: 3000 training images, "
                   "2 epochs, one repeat of everything, a small scaling grid (< 1 minute)")
    p.add_argument("--skip-scaling", action="store_true", help="leave out the scaling sweep")
    p.add_argument("--skip-torch", action="store_true", help="as if PyTorch were not installed")
    p.add_argument("--skip-cnn", action="store_true", help="leave out the CNN section")
    p.add_argument("--cnn-rounds", type=int, default=None, help="CNN rounds (default 11; "
                   "--quick: 1), each of 10 steps per contender (--quick: 2)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where results go (default: "
                   "experiments/benchmarks/results; only then is the README's table refreshed)")
    p.add_argument("--report", type=Path, metavar="JSON", help="measure nothing: rewrite the "
                   "report (bench.md, scaling.png, README table) from a saved bench.json")
    p.add_argument("--memory-worker", metavar="KEY", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_worker:
        with threadpool_limits(1):
            print(json.dumps(memory_worker(args.memory_worker, args.limit, 1)))
        return 0
    if args.report:
        saved = json.loads(args.report.read_text())
        doc = report.build(saved["meta"], saved["contenders"], saved["tutorial"],
                           saved["profile"], saved["scaling"], saved.get("cnn"))
        report.write(doc, args.out, readme=HERE / "README.md" if args.out == RESULTS else None)
        print(report.markdown(doc, title=True))
        return 0
    quick = args.quick
    epochs = args.epochs or (2 if quick else 8)
    limit = 3000 if quick else 0
    use_torch = not args.skip_torch and C.torch_available()
    if use_torch:
        C.torch_setup()
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = time.perf_counter() - started - sum(phases.values())

    args.out.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(1), tempfile.TemporaryDirectory(prefix="nnx-bench-") as tmpdir:
        tmp = Path(tmpdir)
        meta = machine(use_torch)
        ds = C.load_fashion(limit)
        meta.update(epochs=epochs, quick=quick, train_samples=len(ds.x_train),
                    test_samples=len(ds.x_test), dataset_mib=C.dataset_mib(ds))
        log(f"{len(ds.x_train)} training images, {epochs} epochs, torch: {use_torch}")

        def middle():
            log(f"python -m nnx.run experiment=fashion_mnist_mlp, {epochs} epochs (MLflow on)")
            return nnx_run_fashion(epochs, limit, quick, tmp)

        tracked = ["experiment=fashion_mnist_mlp", f"trainer.epochs={epochs}",
                   "trainer.progress=false", f"tracking.uri=sqlite:///{tmp / 'inprocess.db'}"]
        tracked += [f"dataset.limit_train={limit}"] if limit else []
        results = race(ds, epochs, use_torch, tracked, middle)
        phase("race (nnx.run included)")
        # Every library is loaded by now (scikit-learn's OpenMP, torch, mlflow's imports):
        # the pools and their thread counts as the race ran.
        meta["threadpools"] = thread_pools()
        meta["more_than_one_thread"] = check_one_thread()
        if not use_torch:
            why = ("--skip-torch given" if args.skip_torch
                   else "PyTorch is not installed (pip install torch to include it)")
            for key in ("torch_adam", "torch_fused_adam"):
                results[key] = {"key": key, "skipped": why}
        mem_keys = [k for k in KEYS if k not in ("nnx_run", "nnx_trainer_mlflow")
                    and "skipped" not in results[k]]
        for key, value in memory(mem_keys, limit, tmp).items():
            results[key]["memory"] = value
        if "process_peak_mib" in results["nnx_run"]:
            results["nnx_run"]["memory"] = {"process_peak_mib":
                                            results["nnx_run"]["process_peak_mib"]}
        phase("memory")
        log("tutorial")
        tut = tutorial(5 if quick else 15, 0 if quick else 3, tmp)
        phase("tutorial")
        log("profile of nnx Trainer epochs")
        profile = profile_epoch(ds, 1 if quick else 3)
        phase("profile")
        cnn = None
        if not args.skip_cnn:
            log("CNN: nnx, its floor, PyTorch, interleaved")
            why = ("--skip-torch given" if args.skip_torch
                   else "PyTorch is not installed (pip install torch to include it)")
            cnn = cnn_bench.measure(args.cnn_rounds or (1 if quick else 11), 2 if quick else 10,
                                    use_torch, torch_note="" if use_torch else why, log=log)
            phase("cnn")
        rows = []
        if not args.skip_scaling:
            if quick:
                rows = scaling(ds, 1000, 1000, [32, 512], [64, 512], 1)
            else:
                rows = scaling(ds, 10000, 5000, [32, 64, 128, 256, 512, 1024, 2048, 4096],
                               [64, 128, 256, 512, 1024, 2048], 3)
            phase("scaling")
        meta["loadavg_end"] = os.getloadavg()
        meta["phase_seconds"] = phases
        meta["bench_seconds"] = time.perf_counter() - started
    doc = report.build(meta, results, tut, profile, rows, cnn)
    report.write(doc, args.out, readme=HERE / "README.md" if args.out == RESULTS else None)
    print(report.markdown(doc, title=True))
    log(f"done in {time.perf_counter() - started:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
