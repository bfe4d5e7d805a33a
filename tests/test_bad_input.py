"""A catalogue of bad inputs: command lines of ``python -m nnx.run`` and files.

Each command line must exit non-zero (within a ``timeout=`` guard) with one clear message
that names the key or the file (no traceback unless NNX_DEBUG=1), leave no RUNNING run in
its MLflow store (tracking stays on, the default mlflow, each case with a store of its own)
and no partial file in its run folder. The processes are started together, a few at a time,
by one module fixture; each test then checks one of them. Files whose loader needs no run
(network folders, weights snapshots, IDX files read directly) are checked in-process.

NaN in the data comes from a real input: moons with infinite noise. tests/test_run.py checks
a few more (activation typo, lr -1 or 'abc', dtype float16); they are not repeated here.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from idx_files import small_fashion, write_idx

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60  # a guard against a hang; the machine running the tests may be busy
HINT = "(set NNX_DEBUG=1 for the traceback)"

# id -> (overrides, text the message must hold). "{tmp}" is this module's temporary folder.
# Tracking is the default (mlflow) unless a case says tracking=none: cases that fail before
# the run starts never import mlflow, so it costs nothing there.
CASES = {
    # group choices: nnx's own message (valid names, the closest one), exit 2, before Hydra
    "unknown-dataset": (["dataset=nope"], "dataset=nope: unknown dataset 'nope'. Valid names: "),
    "unknown-loss": (["loss=nope"], "loss=nope: unknown loss 'nope'. Valid names: "),
    "optimizer-typo": (["optimizer=adma"],
                       ("optimizer=adma: unknown optimizer 'adma'. Did you mean 'adam'? Valid "
                       "names: adagrad, adam, adamw, rmsprop, sgd.")),
    "optimizer-typo-in-a-sweep": (["-m", "optimizer=sgd,adma"],
                                  "optimizer=adma: unknown optimizer 'adma'. Did you mean 'adam'?"),
    "unknown-schedule": (["schedule=cosin"], ("schedule=cosin: unknown schedule 'cosin'. Did you "
                                             "mean 'cosine'?")),
    "unknown-tracking": (["tracking=nope"], "tracking=nope: unknown tracking 'nope'"),
    "experiment-typo": (["experiment=digits_mpl"],
                        ("experiment=digits_mpl: unknown experiment 'digits_mpl'. Did you mean "
                        "'digits_mlp'?")),
    "broken-plugin-by-group": (["optimizer=boom"],
                               ("optimizer=boom: nnx-bad-input[boom]: nnx.optimizers entry point "
                               "'boom = nnx_bad_input_boom:Boom' of nnx-bad-input 0.1: failed to "
                               "load: RuntimeError: boom at import")),
    # keys no node takes, + and ++ included: the node, the key, the closest and valid keys
    "unknown-key": (["trainer.bogus=1"], "Could not override 'trainer.bogus'"),
    "plus-model-key": (["+model.foo=1"], ("model.foo: model 'mlp' has no key 'foo'. Valid keys: "
                                         "name, hidden, activation")),
    "plus-model-typo": (["+model.activaton=tanh"],
                        ("model.activaton: model 'mlp' has no key 'activaton'. Did you mean "
                        "'activation'?")),
    "plus-trainer-typo": (["+trainer.epoch=5"],
                          "trainer.epoch: the trainer has no key 'epoch'. Did you mean 'epochs'?"),
    "plus-early-stopping-typo": (["+trainer.early_stopping.patiense=3"],
                                 ("trainer.early_stopping.patiense: early stopping has no key "
                                 "'patiense'. Did you mean 'patience'?")),
    "plus-dataset-typo": (["+dataset.nosie=0.3"],
                          ("dataset.nosie: dataset 'moons' has no key 'nosie'. Did you mean "
                          "'noise'?")),
    "plus-loss-typo": (["loss=huber", "+loss.delt=2"],
                       "loss.delt: loss 'huber' has no key 'delt'. Did you mean 'delta'?"),
    "unknown-argument": (["++optimizer.bogus=1"],
                         ("optimizer.bogus: optimizer 'adam' has no key 'bogus'. Valid keys: "
                         "name, lr, beta1")),
    "plus-schedule-typo": (["schedule=step", "+schedule.gama=0.5"],
                           ("schedule.gama: schedule 'step' has no key 'gama'. Did you mean "
                           "'gamma'?")),
    "plus-tracking-typo": (["+tracking.urii=sqlite:///x.db"],
                           ("tracking.urii: tracking 'mlflow' has no key 'urii'. Did you mean "
                           "'uri'?")),
    "plus-top-level-typo": (["+objectve=val_accuracy"],
                            ("objectve: the config has no key 'objectve'. Did you mean "
                            "'objective'?")),
    "unknown-model-type": (["model.name=cnn"], "model.name: unknown model type 'cnn'"),
    "unknown-optimizer-name": (["optimizer.name=nope"],
                               "optimizer: unknown optimizer 'nope'. Valid names: "),
    # wrong types
    "epochs-not-int": (["trainer.epochs=abc"],
                       "trainer.epochs: expected an integer >= 1, got 'abc'"),
    "shuffle-not-bool": (["trainer.shuffle=maybe"], "trainer.shuffle: expected true or false"),
    "hidden-not-list": (["model.hidden=abc"],
                        "model.hidden: expected a list of positive integers, got 'abc'"),
    "nesterov-not-bool": (["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=yes"],
                          "optimizer.nesterov: expected a bool, got 'yes'"),
    "standardize-not-bool": (["dataset.standardize=maybe"],
                             "dataset.standardize: expected true or false, got 'maybe'"),
    # out of range
    "epochs-zero": (["trainer.epochs=0"], "trainer.epochs: expected an integer >= 1, got 0"),
    "dropout-above-1": (["model.dropout=1.5"], "model.dropout: expected a number in [0.0, 1.0)"),
    "val-split-1": (["trainer.val_split=1.0"],
                    "trainer.val_split: expected a number in [0.0, 1.0), got 1.0"),
    "seed-negative": (["seed=-1"], "seed: expected an integer >= 0, got -1"),
    "loss-delta-negative": (["loss=huber", "loss.delta=-1"], "loss.delta: delta must be > 0"),
    "tracking-timeout-zero": (["tracking.timeout=0"],
                              "tracking.timeout: expected a number of seconds > 0, got 0"),
    "tracking-name": (["tracking.name=wandb"],
                      "tracking.name: expected one of mlflow, none, got 'wandb'"),
    # metrics that this run will not have, or that would select on the test set
    "early-stopping-unknown-metric": (["trainer.early_stopping.patience=2",
                                       "trainer.early_stopping.monitor=nope"],
                                      ("trainer.early_stopping.monitor: 'nope' is not a metric "
                                      "of this run")),
    "early-stopping-on-test": (["trainer.early_stopping.patience=2",
                                "trainer.early_stopping.monitor=test_loss"],
                               "trainer.early_stopping.monitor: 'test_loss' is a test-set metric"),
    "unknown-objective": (["objective=nope"],
                          "objective: 'nope' is not a metric of this run. Valid: "),
    "objective-of-the-other-task": (["objective=val_rmse"],
                                    ("objective: 'val_rmse' is not a metric of this run for "
                                    "classification. Did you mean 'val_loss'?")),
    "objective-on-test": (["objective=test_accuracy"],
                          "objective: 'test_accuracy' is a test-set metric"),
    "objective-needs-validation": (["trainer.val_split=0"],
                                   ("objective: 'val_loss' needs a validation set, but "
                                   "trainer.val_split is 0")),
    # the loss against the output and the data
    "probability-loss-on-logits": (["dataset=digits", "loss=binary_cross_entropy"],
                                   ("loss: 'binary_cross_entropy' takes probabilities in [0, 1], "
                                   "but model.output_activation=identity gives values in [-inf, "
                                   "inf]; use model.output_activation=sigmoid")),
    "logits-loss-on-softmax": (["model.output_activation=softmax"],
                               "model.output_activation: 'softmax_cross_entropy' takes logits"),
    # model and data sizes that do not fit
    "out-features-mismatch": (["model.out_features=7"],
                              "model.out_features: the model has 7 but dataset 'moons' needs 2"),
    "batch-larger-than-data": (["trainer.batch_size=100000"],
                               ("trainer.batch_size: 100000 is larger than the 320 training "
                               "samples (400 less the 80 that trainer.val_split=0.2 holds out)")),
    "network-too-large-for-memory": (["model.hidden=[1000000000]"],
                                     ("model.hidden: a network of 5,000,000,002 parameters (2 -> "
                                     "1000000000 -> 2) in float64")),
    # data
    "empty-dataset": (["dataset=moons", "dataset.n_samples=0"],
                      "dataset.n_samples: n_samples must be an integer >= 1, got 0"),
    "dataset-too-large-for-memory": (["dataset.n_samples=100000000000"],
                                     ("dataset.n_samples: dataset 'moons' "
                                     "(dataset.n_samples=100000000000, dataset.n_test=200) needs "
                                     "about 9.5 TiB, more than the ")),
    "one-sample": (["dataset.n_samples=1"],
                   ("trainer.val_split: dataset 'moons' has 1 training sample "
                   "(dataset.n_samples=1), too few to hold out a validation set")),
    "nan-in-data": (["dataset=moons", "dataset.noise=inf"],
                    "dataset 'moons': x_train contains NaN or inf"),
    "float32-overflow": (["dataset.noise=1e39", "dtype=float32"],
                         ("dataset.noise: dataset 'moons': x_train contains NaN or inf: "
                         "dataset.noise=1e+39 is beyond what float32 holds")),
    "missing-dataset-files": (["dataset=fashion_mnist", "dataset.data_dir=/nonexistent",
                               "dataset.download=false"],
                              "Fashion-MNIST not found: looked for train-images-idx3-ubyte.gz"),
    "labels-out-of-range": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/labels",
                             "dataset.download=false"],
                            "dataset 'fashion_mnist': y_train has label 12; allowed labels are"),
    "truncated-dataset-file": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/truncated",
                                "dataset.download=false"],
                               "train-images-idx3-ubyte.gz: corrupt or truncated gzip data"),
    "forged-idx-header": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/forged",
                           "dataset.download=false"],
                          ("{tmp}/forged/train-images-idx3-ubyte.gz: corrupt or forged: its "
                          "header declares shape (100000, 500000, 500) (22.7 TiB)")),
    "forged-raw-idx-header": (["dataset=fashion_mnist", "dataset.data_dir={tmp}/forged-raw",
                               "dataset.download=false"],
                              ("{tmp}/forged-raw/train-images-idx3-ubyte: truncated: shape "
                              "(100000, 500000, 500) needs 25000000000000 bytes of data")),
    # where things are written
    "unwritable-output-folder": (["hydra.run.dir=/proc/nope"],
                                 "hydra.run.dir: cannot create the output folder /proc/nope"),
    "checkpoint-folder-is-a-file": (["trainer.checkpoint_dir={tmp}/a-file/ck"],
                                    "cannot write checkpoint {tmp}/a-file/ck/last.npz"),
    # tracking
    "unreachable-tracking-server": (["tracking.uri=http://127.0.0.1:9"],
                                    "MLflow tracking server http://127.0.0.1:9 is not reachable"),
    # resume: checkpoints that are missing, of another network, damaged or forged
    "resume-missing": (["trainer.resume=/nonexistent/run"],
                       "trainer.resume: '/nonexistent/run' is neither a checkpoint file"),
    "resume-other-architecture": (["trainer.resume={tmp}/other/last.npz"],
                                  ("{tmp}/other/last.npz does not match this run in settings "
                                   "that cannot change on resume (checkpoint -> this run): "
                                   "model.hidden: [8] -> [32]")),
    "resume-not-a-checkpoint": (["trainer.resume={tmp}/files/garbage.npz"],
                                ("checkpoint {tmp}/files/garbage.npz is damaged or not an nnx "
                                "checkpoint")),
    "resume-forged-member-shape": (["trainer.resume={tmp}/files/huge-member.npz"],
                                   ("member 'params.npy' declares shape (1000000000000,) of "
                                   "float64 (7.3 TiB) but holds 64 B of data")),
    "resume-deeply-nested-json": (["trainer.resume={tmp}/files/deep.npz"],
                                  ("checkpoint {tmp}/files/deep.npz is damaged or not an nnx "
                                  "checkpoint (ValueError: its metadata: JSON nested 100000 "
                                  "levels deep, more than the 100 allowed)")),
    # training that cannot go on
    "divergence": (["optimizer=sgd", "optimizer.lr=1e6", "loss=mse", "trainer.epochs=3"],
                   "training diverged at epoch 1, step "),
    # the traceback is there when asked for
    "debug-shows-traceback": (["trainer.epochs=0"], "Traceback"),
}
# The message comes from Hydra itself (several lines: its advice to use +).
HYDRA = {"unknown-key"}
# Cases that need a real process (the command line before Hydra, Hydra's own errors, exit
# codes, output folders, a run opened in MLflow, a file loaded at start-up); the others run
# in this process, through the same compose() and train() (a process costs a second or two of
# CPU, and the whole file must stay quick on a busy machine).
SUBPROCESS = {"optimizer-typo", "broken-plugin-by-group", "unknown-key", "plus-model-key",
              "plus-trainer-typo", "probability-loss-on-logits", "network-too-large-for-memory",
              "float32-overflow", "forged-idx-header", "unwritable-output-folder",
              "checkpoint-folder-is-a-file", "unreachable-tracking-server",
              "resume-deeply-nested-json", "divergence", "debug-shows-traceback"}
# What nnx.run reports as a one-line error (exit 2) rather than as "unexpected" (exit 1).
EXPECTED_ERRORS = (ValueError, OSError, ImportError, FloatingPointError, ConnectionError)
ENV = {"debug-shows-traceback": {"NNX_DEBUG": "1"}}
# nnx's own command-line checks (before Hydra) and configuration errors exit 2
EXIT_2 = {"optimizer-typo", "optimizer-typo-in-a-sweep", "experiment-typo", "unknown-dataset",
          "broken-plugin-by-group", "plus-trainer-typo", "plus-model-key", "float32-overflow"}


def fashion_files(folder: Path, labels: np.ndarray, truncate: bool = False) -> None:
    """The four Fashion-MNIST files, with ``labels`` as the training labels."""
    small_fashion(folder, n_train=len(labels))
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    if truncate:
        images = folder / "train-images-idx3-ubyte.gz"
        images.write_bytes(images.read_bytes()[:40])


FORGED_SHAPE = (100000, 500000, 500)  # 2.5e13 uint8 pixels: 22.7 TiB


def forged_idx(folder: Path, gz: bool) -> None:
    """Fashion-MNIST files whose training-images header claims FORGED_SHAPE, with 1 KiB of data."""
    small_fashion(folder, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *FORGED_SHAPE) + bytes(1024)
    (folder / name).write_bytes(gzip.compress(raw) if gz else raw)


def npy_bytes(shape: tuple, data: bytes, dtype="<f8") -> bytes:
    """An .npy member whose header declares ``shape`` whatever ``data`` holds."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def forged_files(folder: Path) -> None:
    """Checkpoints an attacker would send: garbage, a member claiming 7.3 TiB, deep JSON."""
    folder.mkdir()
    (folder / "garbage.npz").write_text("not a zip archive at all")
    with zipfile.ZipFile(folder / "huge-member.npz", "w") as z:
        z.writestr("params.npy", npy_bytes((10**12,), bytes(64)))
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    np.savez(folder / "deep.npz", params=np.zeros(3),
             __meta_json__=np.frombuffer(deep, dtype=np.uint8))


def broken_plugin(folder: Path) -> None:
    """An installed distribution whose optimizer fails to import."""
    info = folder / "nnx_bad_input-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnx-bad-input\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nnx.optimizers]\nboom = nnx_bad_input_boom:Boom\n")
    (folder / "nnx_bad_input_boom.py").write_text('raise RuntimeError("boom at import")\n')


def other_checkpoint(folder: Path) -> None:
    """A real checkpoint of another architecture (moons, hidden [8])."""
    from nnx import experiment
    from nnx.run import compose

    cfg = compose(["model.hidden=[8]", "trainer.epochs=1", "tracking=none"])
    cfg["trainer"]["checkpoint_dir"] = str(folder)
    experiment.train(cfg)


def run_case(name: str, tmp: Path, template: Path) -> dict:
    """Run one case in its own run folder and MLflow store; what it printed and left."""
    overrides, _ = CASES[name]
    args = [a.replace("{tmp}", str(tmp)) for a in overrides]
    run_dir = tmp / "runs" / name
    if name not in SUBPROCESS:
        return run_in_process(name, args, run_dir, tmp, template)
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.{'sweep' if '-m' in args else 'run'}.dir={run_dir}")
    store = tmp / "stores" / f"{name}.db"
    shutil.copy(template, store)
    env = {**os.environ, "NNX_TRACKING_URI": f"sqlite:///{store}", **ENV.get(name, {})}
    env.pop("PYTHONPATH", None)
    if name not in ENV:
        env.pop("NNX_DEBUG", None)
    if name == "broken-plugin-by-group":
        env["PYTHONPATH"] = str(tmp / "plugin")
    done = subprocess.run([sys.executable, "-m", "nnx.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=TIMEOUT_S, check=False)
    with sqlite3.connect(store) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
        errors = [row[0] for row in db.execute("SELECT value FROM tags WHERE key = 'error'")]
    left = [p for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
            "statuses": statuses, "errors": errors, "left": left}


def run_in_process(name: str, args: list, run_dir: Path, tmp: Path, template: Path) -> dict:
    """``experiment.train(compose(args))`` as ``python -m nnx.run`` does, the error caught as
    it catches it: its message (with nnx.run's prefix) is what would be printed."""
    from nnx import experiment
    from nnx.run import _check_group_choices, compose

    store = tmp / "stores" / f"{name}.db"
    shutil.copy(template, store)
    returncode, stderr = 0, ""
    try:
        with contextlib.redirect_stderr(io.StringIO()) as printed:
            _check_group_choices([a for a in args if a != "-m"])  # what nnx.run checks first
    except SystemExit as stop:
        returncode, stderr = stop.code, printed.getvalue()
    if returncode:
        return {"returncode": returncode, "stdout": "", "stderr": stderr, "statuses": [],
                "errors": [], "left": []}
    try:
        cfg = compose([*args, f"tracking.uri=sqlite:///{store}"])
        cfg["trainer"]["checkpoint_dir"] = str(run_dir / "checkpoints")
        experiment.train(cfg)
    except EXPECTED_ERRORS as error:
        returncode, stderr = 2, f"nnx: error: {error}\n{HINT}\n"
    except Exception as error:  # noqa: BLE001 - reported like nnx.run's "unexpected" path
        returncode, stderr = 1, f"Traceback: {type(error).__name__}: {error}\n"
    with sqlite3.connect(store) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
    left = [p for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
    return {"returncode": returncode, "stdout": "", "stderr": stderr, "statuses": statuses,
            "errors": [], "left": left}


@pytest.fixture(scope="module")
def results(tmp_path_factory, store_template) -> dict:
    """Every case: the processes 4 at a time (the start-up of Python, Hydra and NumPy
    dominates), the in-process cases meanwhile."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "stores").mkdir()
    (tmp / "a-file").write_text("a file, not a folder")
    fashion_files(tmp / "labels", np.array([0, 1, 2, 3, 12, 5, 6, 7]))
    fashion_files(tmp / "truncated", np.arange(8), truncate=True)
    forged_idx(tmp / "forged", gz=True)
    forged_idx(tmp / "forged-raw", gz=False)
    forged_files(tmp / "files")
    broken_plugin(tmp / "plugin")
    other_checkpoint(tmp / "other")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_case, name, tmp, store_template)
                   for name in CASES if name in SUBPROCESS}
        here = {name: run_case(name, tmp, store_template) for name in CASES
                if name not in SUBPROCESS}
        return {"tmp": tmp, **here, **{name: f.result() for name, f in futures.items()}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_with_one_clear_message(results, name):
    result, expected = results[name], CASES[name][1].replace("{tmp}", str(results["tmp"]))
    err = result["stderr"]
    assert result["returncode"] != 0, (result["stdout"], err)
    if name in EXIT_2:
        assert result["returncode"] == 2, err
    assert expected in err, err
    assert "RUNNING" not in result["statuses"], result["statuses"]
    # nothing half-written: no temporary files, no checkpoint of a run that failed
    written = [p.name for p in result["left"]]
    assert not [n for n in written if n.endswith((".tmp", ".part")) or n == "last.npz"], written
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
    # mistakes that can be known before training fail before any run is opened
    for name in ("epochs-zero", "nan-in-data", "resume-other-architecture", "unknown-objective",
                 "early-stopping-unknown-metric", "probability-loss-on-logits",
                 "network-too-large-for-memory", "resume-deeply-nested-json"):
        assert results[name]["statuses"] == [], name


# -- files read without a run: the loader itself must refuse, naming the file ------------------
def _network_folder(folder: Path, meta) -> Path:
    """A saved-network folder (network.json + weights.npz) with ``meta`` as its JSON."""
    folder.mkdir()
    (folder / "network.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    np.savez(folder / "weights.npz", **{"0.W": np.zeros((2, 2))})
    return folder


def _snapshot(path: Path, meta: str | None = None, forged_member: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        if forged_member:
            z.writestr("0.W.npy", npy_bytes((10**6, 10**6), bytes(32)))
        if meta is not None:
            z.writestr("__network_json__.npy", npy_bytes((len(meta),), meta.encode(), "|u1"))
    return path


def _dense(units: int) -> dict:
    return {"format": 1, "architecture": [{"name": "dense", "units": units}], "in_features": 10**6,
            "dtype": "float64"}


DEEP = "[" * 100_000 + "]" * 100_000
# id -> (writes the file under tmp and returns what to load, loader, text the error must hold)
FILE_CASES = {
    "network-json-deeply-nested": (lambda t: _network_folder(t / "n", DEEP), "load_network",
                                   "network.json: JSON nested 100000 levels deep"),
    "network-json-not-an-object": (lambda t: _network_folder(t / "n", "[1, 2]"), "load_network",
                                   "network.json: format 'list', expected 1"),
    "network-json-missing-keys": (lambda t: _network_folder(t / "n", {"format": 1}),
                                  "load_network", "not an nnx network description"),
    "network-json-huge-layer": (lambda t: _network_folder(t / "n", _dense(10**9)),
                                "load_network", "network.json: its architecture needs more memory"),
    "snapshot-forged-member": (lambda t: _snapshot(t / "s.npz", forged_member=True),
                               "load_snapshot", ("member '0.W.npy' declares shape (1000000, "
                                                "1000000) of float64 (7.3 TiB) but holds 32 B")),
    "snapshot-deep-json": (lambda t: _snapshot(t / "s.npz", meta=DEEP), "load_snapshot",
                           "s.npz: JSON nested 100000 levels deep"),
    "idx-forged-gzip": (lambda t: _forged_idx_file(t, gz=True), "read_idx",
                        "corrupt or forged: its header declares shape (100000, 500000, 500)"),
    "idx-forged-raw": (lambda t: _forged_idx_file(t, gz=False), "read_idx",
                       "truncated: shape (100000, 500000, 500) needs 25000000000000 bytes"),
}


def _forged_idx_file(tmp: Path, gz: bool) -> Path:
    forged_idx(tmp / "f", gz=gz)
    return tmp / "f" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))


@pytest.mark.parametrize("name", sorted(FILE_CASES))
def test_bad_file_is_refused_naming_it_before_allocating(tmp_path, name):
    from nnx import idx, network_files

    write, loader, expected = FILE_CASES[name]
    target = write(tmp_path)
    load = getattr(idx if loader == "read_idx" else network_files, loader)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError) as info:
        load(target)
    message = str(info.value)
    assert expected in message and str(tmp_path) in message, message
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written beside it
