"""Resuming from epoch k gives the weights and metrics of the run that was never stopped.

Bit for bit: the checkpoint carries weights, optimizer slots and iteration count, and the
state of every random stream (shuffling, dropout), so nothing is drawn twice or skipped.
Dropout and shuffling are on in every case below, so restoring the streams is exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx.run  # registers generated config nodes
from nnx import checkpoint, experiment
from nnx.config import ConfigError
from nnx.run import compose
from nnx.trainer import STOP, Callback, TrainingInterrupted

ROOT = Path(__file__).resolve().parent.parent
BASE = ["experiment=spirals", "model.dropout=0.2", "trainer.log_every=1", "tracking=none"]
TIMING = ("epoch_seconds", "samples_per_second", "train_seconds", "wall_seconds")



def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def train(tmp: Path, overrides: list[str]) -> dict:
    cfg = compose([*BASE, *overrides])
    cfg["trainer"]["checkpoint_dir"] = str(tmp)
    return experiment.train(cfg)


def assert_identical(straight, resumed) -> None:
    """Two trainers (or two checkpoints' (meta, arrays)) hold the very same state."""
    a, b = straight["trainer"], resumed["trainer"]
    assert np.array_equal(a.network.flat_params, b.network.flat_params)
    assert a.optimizer.iterations == b.optimizer.iterations and a.step == b.step
    for key, slots in a.optimizer.state.items():
        for slot, value in slots.items():
            if slot != "scratch":
                assert np.array_equal(value, b.optimizer.state[key][slot]), slot
    assert {n: g.bit_generator.state for n, g in a.rngs.items()} == \
        {n: g.bit_generator.state for n, g in b.rngs.items()}
    assert without_timing(a.history) == without_timing(b.history)
    assert {k: v for k, v in straight["metrics"].items() if k not in TIMING} == \
        {k: v for k, v in resumed["metrics"].items() if k not in TIMING}


# -- in process --------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    ["optimizer=adam"],
    ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true", "optimizer.lr=0.05",
     "dtype=float32"],
    ["optimizer=rmsprop", "trainer.batch_size=50", "model.hidden=[32]"],
], ids=["adam", "sgd-nesterov-float32", "rmsprop-ragged-batches"])
def test_resume_from_epoch_3_is_bit_identical_in_process(tmp_path, overrides):
    straight = train(tmp_path / "straight", [*overrides, "trainer.epochs=6"])
    train(tmp_path / "first", [*overrides, "trainer.epochs=3"])
    resumed = train(tmp_path / "resumed", [*overrides, "trainer.epochs=6",
                                           f"trainer.resume={tmp_path / 'first' / 'last.npz'}"])
    assert resumed["trainer"].epoch == 6 and [r["epoch"] for r in resumed["trainer"].history] == \
        [1, 2, 3, 4, 5, 6]
    assert_identical(straight, resumed)


def test_interrupted_run_resumes_bit_identically_with_a_schedule(tmp_path):
    """Stopped (as by a signal) after epoch 4 of 8 with a cosine schedule, then resumed: the
    schedule sees the same total, so the result equals the run that was never stopped."""

    class Signal(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 3:
                STOP.request("stopped by SIGTERM", 143)

    overrides = ["schedule=cosine", "trainer.epochs=8"]
    straight = train(tmp_path / "straight", overrides)
    cfg = compose([*BASE, *overrides])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path / "stopped")
    trainer, ds, out_features = experiment.build(cfg)
    trainer.callbacks.append(Signal())
    try:
        with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after epoch 4"):
            trainer.fit(*experiment.fit_data(cfg, ds, trainer.loss, out_features))
    finally:
        STOP.clear()
    assert checkpoint.read(tmp_path / "stopped" / "last.npz")[0]["epoch"] == 4
    resumed = train(tmp_path / "resumed", [*overrides, f"trainer.resume={tmp_path / 'stopped'}"])
    assert_identical(straight, resumed)


def test_resume_with_nothing_left_to_train_is_refused(tmp_path):
    train(tmp_path / "done", ["trainer.epochs=2"])
    cfg = compose([*BASE, "trainer.epochs=2", f"trainer.resume={tmp_path / 'done'}"])
    with pytest.raises(ConfigError, match=r"trainer.epochs: checkpoint .*last.npz has already "
                       r"trained 2 epochs, so trainer.epochs=2 leaves nothing to do"):
        experiment.build(cfg)


def test_resume_path_forms(tmp_path):
    """trainer.resume takes the file, the checkpoint folder or the run's output folder."""
    train(tmp_path / "run" / "checkpoints", ["trainer.epochs=1"])
    file = tmp_path / "run" / "checkpoints" / "last.npz"
    for given in (file, file.parent, file.parent.parent):
        assert experiment.resolve_resume(str(given), {}) == file
    with pytest.raises(ConfigError, match="trainer.resume: '/nonexistent' is neither"):
        experiment.resolve_resume("/nonexistent", {})


def assert_same_checkpoints(a: Path, b: Path) -> dict:
    """Two checkpoint files hold the same state (timings aside); returns the first's metadata."""
    meta_a, arrays_a = checkpoint.read(a)
    meta_b, arrays_b = checkpoint.read(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    assert meta_a["rng_states"] == meta_b["rng_states"]
    assert (meta_a["epoch"], meta_a["step"]) == (meta_b["epoch"], meta_b["step"])
    assert without_timing(meta_a["history"]) == without_timing(meta_b["history"])
    return meta_a


# -- through python -m nnx.run ---------------------------------------------------------------
def nnx(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnx.run", *BASE, *args,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NNX_TRACKING_URI": f"sqlite:///{run_dir}.db"})


def test_resume_through_nnx_run_is_bit_identical(tmp_path):
    straight = nnx(["trainer.epochs=6"], tmp_path / "straight")
    first = nnx(["trainer.epochs=3"], tmp_path / "first")
    resumed = nnx(["trainer.epochs=6", f"trainer.resume={tmp_path / 'first'}"],
                  tmp_path / "resumed")
    for done in (straight, first, resumed):
        assert done.returncode == 0, done.stderr
    # 600 samples less the 120 of the validation split, / 32 = 15 batches an epoch
    assert "6 epochs, 90 steps" in resumed.stdout
    meta = assert_same_checkpoints(tmp_path / "straight" / "checkpoints" / "last.npz",
                                   tmp_path / "resumed" / "checkpoints" / "last.npz")
    assert (meta["epoch"], meta["step"]) == (6, 90)
    # the printed summaries agree too (the time in the headline aside)
    assert straight.stdout.splitlines()[-2:] == resumed.stdout.splitlines()[-2:]


def test_resume_keeps_early_stopping_state(tmp_path):
    """Early stopping's best value, patience counter and best weights travel in the checkpoint:
    the resumed run stops at the same epoch with the same restored weights."""
    overrides = ["trainer.epochs=12", "trainer.early_stopping.patience=2",
                 "trainer.early_stopping.min_delta=0.05", "optimizer.lr=0.01"]
    straight = train(tmp_path / "straight", overrides)
    stopped_at = straight["trainer"].epoch
    assert 3 < stopped_at < 12, "the case no longer stops early: retune it"
    assert straight["trainer"].stopped_early
    train(tmp_path / "first", [*overrides[1:], f"trainer.epochs={stopped_at - 1}"])
    resumed = train(tmp_path / "resumed", [*overrides,
                                           f"trainer.resume={tmp_path / 'first'}"])
    assert resumed["trainer"].stopped_early == straight["trainer"].stopped_early
    assert_identical(straight, resumed)


def test_the_resumed_run_takes_its_rate_from_its_own_config(tmp_path):
    """The checkpoint records the configured rate (``base_lr``, as files written before this
    rule do) but does not impose it: like every other hyper-parameter, the rate of a resumed
    run is its own config's, scheduled from the epoch the checkpoint reached."""
    overrides = ["optimizer=sgd", "schedule=step", "schedule.step_size=1", "schedule.gamma=0.5"]
    train(tmp_path / "first", [*overrides, "optimizer.lr=0.1", "trainer.epochs=2"])
    first = tmp_path / "first" / "last.npz"
    assert checkpoint.read(first)[0]["optimizer"]["base_lr"] == 0.1
    same = train(tmp_path / "same", [*overrides, "optimizer.lr=0.1", "trainer.epochs=4",
                                     f"trainer.resume={first}"])
    assert [row["lr"] for row in same["trainer"].history] == [0.1, 0.05, 0.025, 0.0125]
    lower = train(tmp_path / "lower", [*overrides, "optimizer.lr=0.04", "trainer.epochs=4",
                                       f"trainer.resume={first}"])
    assert [row["lr"] for row in lower["trainer"].history] == [0.1, 0.05, 0.01, 0.005]
    assert checkpoint.read(tmp_path / "lower" / "last.npz")[0]["optimizer"]["base_lr"] == 0.04
