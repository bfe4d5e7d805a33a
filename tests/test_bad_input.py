"""A catalogue of bad invocations of ``python -m nnx.run``.

Each one must exit non-zero within 10 s with one clear message (no traceback unless
NNX_DEBUG=1), and leave no RUNNING run in its MLflow store: tracking stays on (the default,
mlflow) for every case, each with a store of its own.

The processes are started together, a few at a time, by one module fixture; each test then
checks one of them. NaN in the data comes from a real input: moons with infinite noise.
tests/test_run.py checks a few more (unknown experiment, activation typo, lr -1 or 'abc',
dtype float16); they are not repeated here.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from idx_files import small_fashion, write_idx

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 10.0
HINT = "(set NNX_DEBUG=1 for the traceback)"

# id -> (overrides, text the message must hold). "{tmp}" is this module's temporary folder.
# Tracking is the default (mlflow) unless a case says tracking=none: cases that fail before
# the run starts never import mlflow, so it costs nothing there.
CASES = {
    # unknown names, per config group (Hydra lists the options) and per registry
    "unknown-dataset": (["dataset=nope"], "Could not find 'dataset/nope'"),
    "unknown-loss": (["loss=nope"], "Could not find 'loss/nope'"),
    "unknown-optimizer": (["optimizer=nope"], "Could not find 'optimizer/nope'"),
    "unknown-schedule": (["schedule=nope"], "Could not find 'schedule/nope'"),
    "unknown-tracking": (["tracking=nope"], "Could not find 'tracking/nope'"),
    "unknown-key": (["trainer.bogus=1"], "Could not override 'trainer.bogus'"),
    "unknown-optimizer-name": (["optimizer.name=nope"],
                               "optimizer: unknown optimizer 'nope'. Valid names: "),
    "unknown-argument": (["++optimizer.bogus=1"],
                         "optimizer.bogus: 'adam' takes no argument 'bogus'; valid: lr, beta1"),
    # wrong types
    "epochs-not-int": (["trainer.epochs=abc"],
                       "trainer.epochs: expected an integer >= 1, got 'abc'"),
    "shuffle-not-bool": (["trainer.shuffle=maybe"], "trainer.shuffle: expected true or false"),
    "hidden-not-list": (["model.hidden=abc"],
                        "model.hidden: expected a list of positive integers, got 'abc'"),
    "nesterov-not-bool": (["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=yes"],
                          "optimizer.nesterov: expected a bool, got 'yes'"),
    # out of range
    "epochs-zero": (["trainer.epochs=0"], "trainer.epochs: expected an integer >= 1, got 0"),
    "dropout-above-1": (["model.dropout=1.5"], "model.dropout: expected a number in [0.0, 1.0)"),
    # model and data sizes that do not fit
    "out-features-mismatch": (["model.out_features=7"],
                              "model.out_features: the model has 7 but dataset 'moons' needs 2"),
    "batch-larger-than-data": (["trainer.batch_size=100000"],
                               "trainer.batch_size: 100000 is larger than the 400 training "),
    # data
    "empty-dataset": (["dataset=moons", "dataset.n_samples=0"],
                      "dataset.n_samples: n_samples must be an integer >= 1, got 0"),
    "nan-in-data": (["dataset=moons", "dataset.noise=inf"],
                    "dataset 'moons': x_train contains NaN or inf"),
    "missing-dataset-files": (["dataset=fashion_mnist", "dataset.data_dir=/nonexistent",
                               "dataset.download=false"],
                              "Fashion-MNIST not found: looked for train-images-idx3-ubyte.gz"),
    "labels-out-of-range": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/labels",
                             "dataset.download=false"],
                            "dataset 'fashion_mnist': y_train has label 12; allowed labels are"),
    "truncated-dataset-file": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/truncated",
                                "dataset.download=false"],
                               "train-images-idx3-ubyte.gz: corrupt or truncated gzip data"),
    # where things are written
    "unwritable-output-folder": (["hydra.run.dir=/proc/nope"],
                                 "hydra.run.dir: cannot create the output folder /proc/nope"),
    "checkpoint-folder-is-a-file": (["trainer.checkpoint_dir={tmp}/a-file/ck"],
                                    "cannot write checkpoint {tmp}/a-file/ck/last.npz"),
    # tracking
    "unreachable-tracking-server": (["tracking.uri=http://127.0.0.1:9"],
                                    "MLflow tracking server http://127.0.0.1:9 is not reachable"),
    # resume
    "resume-missing": (["trainer.resume=/nonexistent/run"],
                       "trainer.resume: '/nonexistent/run' is neither a checkpoint file"),
    "resume-other-architecture": (["trainer.resume={tmp}/other/last.npz"],
                                  "{tmp}/other/last.npz does not match this run: architecture"),
    # training that cannot go on
    "divergence": (["optimizer=sgd", "optimizer.lr=1e6", "loss=mse", "trainer.epochs=3"],
                   "training diverged at epoch 1, step "),
    "early-stopping-unknown-metric": (["trainer.epochs=2", "trainer.early_stopping.patience=2",
                                       "trainer.early_stopping.monitor=nope", "tracking=none"],
                                      "early stopping monitors 'nope', which is not among"),
    "unknown-objective": (["trainer.epochs=1", "objective=nope", "tracking=none"],
                          "objective: 'nope' is not a metric of this run; valid: "),
    # the traceback is there when asked for
    "debug-shows-traceback": (["trainer.epochs=0"], "Traceback"),
}
# The message comes from Hydra itself (several lines: the options, the search path).
HYDRA = {k for k, (_, text) in CASES.items() if text.startswith(("Could not", ))}
ENV = {"debug-shows-traceback": {"NNX_DEBUG": "1"}}


def fashion_files(folder: Path, labels: np.ndarray, truncate: bool = False) -> None:
    """The four Fashion-MNIST files, with ``labels`` as the training labels."""
    small_fashion(folder, n_train=len(labels))
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    if truncate:
        images = folder / "train-images-idx3-ubyte.gz"
        images.write_bytes(images.read_bytes()[:40])


def other_checkpoint(folder: Path) -> None:
    """A real checkpoint of another architecture (moons, hidden [8])."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import nnx.run
    from nnx import experiment

    with initialize_config_dir(config_dir=str(nnx.run.CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[
            "model.hidden=[8]", "trainer.epochs=1", "tracking=none"]), resolve=True)
    cfg["trainer"]["checkpoint_dir"] = str(folder)
    experiment.train(cfg)


def run_case(name: str, tmp: Path, template: Path) -> dict:
    """Run one case under two guards, which fail the case with a message rather than measure
    it: LIMIT_S seconds of CPU (start-up included; the kernel stops the process with SIGXCPU,
    and a busy machine does not count against it), and 120 s of wall clock against a hang."""
    overrides, _ = CASES[name]
    args = [a.replace("{tmp}", str(tmp)) for a in overrides]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp / 'runs' / name}")
    store = tmp / "stores" / f"{name}.db"
    shutil.copy(template, store)
    env = {**os.environ, "NNX_TRACKING_URI": f"sqlite:///{store}", **ENV.get(name, {})}
    if name not in ENV:
        env.pop("NNX_DEBUG", None)
    out, err = tmp / "logs" / f"{name}.out", tmp / "logs" / f"{name}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "nnx.run", *args], cwd=ROOT, env=env,
                                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    resource.prlimit(proc.pid, resource.RLIMIT_CPU, (int(LIMIT_S), int(LIMIT_S) + 5))
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        proc.wait()
    finally:
        watchdog.cancel()
    guard = {-signal.SIGXCPU: f"stopped after {LIMIT_S:.0f} s of CPU: it does not fail fast",
             -signal.SIGKILL: "stopped after 120 s: it hung"}.get(proc.returncode)
    with sqlite3.connect(store) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
        errors = [row[0] for row in db.execute("SELECT value FROM tags WHERE key = 'error'")]
    return {"returncode": proc.returncode, "stdout": out.read_text(), "stderr": err.read_text(),
            "guard": guard, "statuses": statuses, "errors": errors}


@pytest.fixture(scope="module")
def results(tmp_path_factory, store_template) -> dict:
    """Every case, run 3 at a time (the start-up of Python, Hydra and NumPy dominates)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "stores").mkdir()
    (tmp / "logs").mkdir()
    (tmp / "a-file").write_text("a file, not a folder")
    fashion_files(tmp / "labels", np.array([0, 1, 2, 3, 12, 5, 6, 7]))
    fashion_files(tmp / "truncated", np.arange(8), truncate=True)
    other_checkpoint(tmp / "other")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, name, tmp, store_template) for name in CASES}
        return {"tmp": tmp, **{name: f.result() for name, f in futures.items()}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_fast_with_one_clear_message(results, name):
    result, expected = results[name], CASES[name][1].replace("{tmp}", str(results["tmp"]))
    err = result["stderr"]
    assert result["guard"] is None, result["guard"]
    assert result["returncode"] != 0, (result["stdout"], err)
    assert expected in err, err
    assert "RUNNING" not in result["statuses"], result["statuses"]
    if name in ENV:  # NNX_DEBUG=1: the traceback of the error, for a bug report
        assert "nnx.config.ConfigError: trainer.epochs: expected an integer >= 1" in err
        return
    assert "Traceback" not in err, err
    if name in HYDRA:
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("nnx: error: ") and lines[1:] in ([HINT], []), err


def test_failures_after_the_run_started_are_recorded_as_failed(results):
    """Cases that got as far as opening an MLflow run closed it as FAILED, with the cause."""
    for name, cause in (("divergence", "NonFiniteError: training diverged at epoch 1"),
                        ("checkpoint-folder-is-a-file", "OSError: cannot write checkpoint")):
        assert results[name]["statuses"] == ["FAILED"], name
        assert len(results[name]["errors"]) == 1 and cause in results[name]["errors"][0], \
            results[name]["errors"]
    # configuration errors fail before any run is opened
    for name in ("epochs-zero", "nan-in-data", "resume-other-architecture"):
        assert results[name]["statuses"] == [], name
