"""Checkpoints: complete, atomic, pickle-free, and never half-loaded.

A checkpoint is one ``.npz`` (weights, optimizer slots) with the rest as JSON inside it.
Damaged or mismatched files raise a CheckpointError naming the file and what is wrong, and
leave the trainer exactly as it was; a write that fails leaves the previous checkpoint whole.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import small_disk

from nnx import checkpoint, experiment
from nnx.checkpoint import CheckpointError
from nnx.run import compose
from nnx.trainer import Callback, NonFiniteError

ROOT = Path(__file__).resolve().parent.parent
# Small and quick, with dropout (a second random stream) and shuffling.
BASE = ["experiment=spirals", "model.dropout=0.2", "model.hidden=[16,16]",
        "dataset.n_samples=120", "dataset.n_test=60", "trainer.log_every=1", "tracking=none"]



def trained(tmp: Path, *overrides: str, epochs: int = 2):
    """A trainer after ``epochs`` epochs, its checkpoint written to ``tmp/last.npz``."""
    cfg = compose([*BASE, f"trainer.epochs={epochs}", *overrides])
    cfg["trainer"]["checkpoint_dir"] = str(tmp)
    return experiment.train(cfg)["trainer"]


def fresh(*overrides: str):
    """A built, untrained trainer (what a resume loads into)."""
    cfg = compose([*BASE, "trainer.epochs=2", *overrides])
    return experiment.build(cfg)[0]


def snapshot(trainer) -> dict:
    return {
        "params": trainer.network.flat_params.copy(),
        "optimizer": {k: {s: v.copy() for s, v in slots.items()}
                      for k, slots in trainer.optimizer.state.items()},
        "iterations": trainer.optimizer.iterations,
        "rngs": {n: copy.deepcopy(g.bit_generator.state) for n, g in trainer.rngs.items()},
        "epoch": trainer.epoch, "step": trainer.step,
        "lr": trainer.learning_rate(trainer.epoch),  # the rate the next epoch trains with
        "history": copy.deepcopy(trainer.history),
    }


def assert_same(a: dict, b: dict) -> None:
    assert np.array_equal(a["params"], b["params"])
    assert a["optimizer"].keys() == b["optimizer"].keys()
    for key, slots in a["optimizer"].items():
        assert slots.keys() == b["optimizer"][key].keys()
        for slot, value in slots.items():
            if slot != "scratch":  # scratch space holds nothing between steps
                assert np.array_equal(value, b["optimizer"][key][slot]), (key, slot)
    assert {k: v for k, v in a.items() if k not in ("params", "optimizer")} == \
        {k: v for k, v in b.items() if k not in ("params", "optimizer")}


def rewrite(src: Path, dst: Path, meta=None, arrays=None) -> Path:
    """Copy a checkpoint, changing its metadata and arrays with the given functions."""
    m, a = checkpoint.read(src)
    m, a = (meta or (lambda x: x))(m), (arrays or (lambda x: x))(a)
    a[checkpoint.META_KEY] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    with open(dst, "wb") as f:
        np.savez(f, **a)
    return dst


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A checkpoint after 2 epochs of Adam, float64."""
    folder = tmp_path_factory.mktemp("good")
    trained(folder)
    return folder / "last.npz"


# -- what a checkpoint holds ---------------------------------------------------------------
def test_checkpoint_round_trip_restores_everything(tmp_path):
    trainer = trained(tmp_path)
    before = snapshot(trainer)
    assert trainer.last_checkpoint == (str(tmp_path / "last.npz"), 2)
    other = fresh("seed=5")
    other.load_checkpoint(tmp_path / "last.npz")
    assert_same(snapshot(other), before)
    assert set(before["rngs"]) == {"train", "network"}  # shuffling and dropout


def test_checkpoint_is_plain_npz_with_json_and_no_pickle(good):
    with np.load(good, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(arrays.pop(checkpoint.META_KEY).tobytes())
    assert set(arrays) == {"params", "optimizer/flat/m_sum", "optimizer/flat/v_sum"}
    assert meta["epoch"] == 2 and meta["step"] > 0 and meta["optimizer"]["class"] == "Adam"
    assert meta["architecture"][0]["name"] == "dense"


# -- writing: atomic, and failures keep the previous checkpoint -----------------------------
def write_fails_on_a_full_disk(folder: Path) -> None:
    """(Runs in a child process where ``folder`` is a small tmpfs; see small_disk.)"""
    trainer = trained(folder)
    path = folder / "last.npz"
    before = path.read_bytes()
    small_disk.fill(folder)
    trainer.epoch += 1
    with pytest.raises(OSError, match=rf"cannot write checkpoint {path}: No space left") as info:
        trainer.save_checkpoint()
    assert info.value.errno == errno.ENOSPC
    assert "previous checkpoint there, if any, is unchanged" in str(info.value)
    assert path.read_bytes() == before and checkpoint.read(path)[0]["epoch"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["filler", "last.npz"]  # no temporary


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path):
    done = small_disk.run(tmp_path / "disk", "test_checkpoint", "write_fails_on_a_full_disk")
    assert done.returncode == 0, done.stderr[-3000:]


class Interrupting(np.ndarray):
    """A weight-shaped callback state that raises KeyboardInterrupt when the writer gets to it,
    half-way through the archive: Ctrl-C in the middle of a checkpoint, at a known place."""

    @property
    def shape(self):
        raise KeyboardInterrupt("Ctrl-C while the checkpoint is written")


class StateInterrupts(Callback):
    def state(self):
        return {"weights": np.zeros(3).view(Interrupting)}


def test_interrupted_write_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path):
    trainer = trained(tmp_path)
    path = tmp_path / "last.npz"
    before = path.read_bytes()
    trainer.callbacks.append(StateInterrupts())
    trainer.epoch += 1
    with pytest.raises(KeyboardInterrupt, match="while the checkpoint is written"):
        trainer.save_checkpoint()
    assert path.read_bytes() == before and checkpoint.read(path)[0]["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]  # no temporary left


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    trainer = trained(tmp_path)
    torn = tmp_path / ".last.npz.k9x2ab.tmp"  # what kill -9 in mid-write leaves
    torn.write_bytes((tmp_path / "last.npz").read_bytes()[:100])
    other = tmp_path / ".best.npz.k9x2ab.tmp"  # another file's: not this writer's to remove
    other.write_bytes(b"x")
    trainer.epoch += 1
    trainer.save_checkpoint()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.npz.k9x2ab.tmp", "last.npz"]
    assert checkpoint.read(tmp_path / "last.npz")[0]["epoch"] == 3


class FillDisk(Callback):
    """Fills the disk the checkpoints go to at the end of the third epoch."""

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == 2:
            small_disk.fill(Path(trainer.config.checkpoint_dir))


def disk_fills_mid_run(folder: Path) -> None:
    """(Runs in a child process where ``folder`` is a small tmpfs; see small_disk.)"""
    cfg = compose([*BASE, "trainer.epochs=5", "trainer.checkpoint_every=1"])
    cfg["trainer"]["checkpoint_dir"] = str(folder)
    trainer = experiment.build(cfg)[0]
    trainer.callbacks.append(FillDisk())
    x, y = _spirals_data(cfg)
    with pytest.raises(OSError, match="cannot write checkpoint .*last.npz: No space left"):
        trainer.fit(x, y)
    assert trainer.epoch == 3
    assert checkpoint.read(folder / "last.npz")[0]["epoch"] == 2
    fresh().load_checkpoint(folder / "last.npz")


def test_checkpoint_write_fails_mid_run_run_fails_earlier_checkpoint_stays(tmp_path):
    """Disk full at epoch 3: the run fails with the cause; epoch 2's checkpoint still loads."""
    done = small_disk.run(tmp_path / "disk", "test_checkpoint", "disk_fills_mid_run")
    assert done.returncode == 0, done.stderr[-3000:]


def _spirals_data(cfg):
    ds = experiment.load_data(cfg, np.random.default_rng(0), np.float64)
    return ds.x_train, ds.y_train


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = compose([*BASE, "trainer.epochs=3"])
    cfg["trainer"]["checkpoint_dir"] = str(blocker / "checkpoints")
    trainer = experiment.build(cfg)[0]
    x, y = _spirals_data(cfg)
    with pytest.raises(OSError, match=f"cannot write checkpoint {blocker}/checkpoints/last.npz"):
        trainer.fit(x, y)
    assert trainer.epoch == 0  # failed at once, not after training


def test_non_finite_weights_never_overwrite_a_good_checkpoint(tmp_path):
    trainer = trained(tmp_path)
    trainer.network.layers[3].params["W"][0, 0] = np.nan
    trainer.epoch += 1
    with pytest.raises(NonFiniteError, match=r"weights of layer 3 \(dense\) are NaN or inf"):
        trainer.save_checkpoint()
    assert checkpoint.read(tmp_path / "last.npz")[0]["epoch"] == 2


# -- the non-finite guard --------------------------------------------------------------------
def test_divergence_stops_at_the_step_naming_epoch_step_layer_and_keeps_checkpoint(tmp_path):
    """After 2 good epochs the schedule raises the learning rate to 1e300: epoch 3 diverges."""
    cfg = compose([*BASE, "trainer.epochs=6", "trainer.checkpoint_every=1", "optimizer=sgd",
                    "optimizer.lr=0.1"])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path)
    trainer = experiment.build(cfg)[0]
    trainer.schedule = lambda epoch, epochs: 1.0 if epoch < 2 else 1e301
    x, y = _spirals_data(cfg)
    with pytest.raises(NonFiniteError) as info:
        trainer.fit(x, y)
    message = str(info.value)
    assert message.startswith("training diverged at epoch 3, step ")
    assert "layer " in message and "(dense)" in message
    assert "Try a lower learning rate (optimizer.lr is 0.1, 1e+300 in this epoch after the " \
        "schedule)" in message
    assert f"last good checkpoint (epoch 2) is kept: {tmp_path / 'last.npz'}" in message
    assert trainer.epoch == 2
    meta, arrays = checkpoint.read(tmp_path / "last.npz")
    assert meta["epoch"] == 2 and np.isfinite(arrays["params"]).all()


def test_nan_gradient_is_caught_before_the_update(tmp_path):
    """A NaN gradient never reaches the weights: they stay as they were before the step."""
    trainer = fresh("optimizer=sgd")
    cfg = compose([*BASE])
    x, y = _spirals_data(cfg)
    dense = trainer.network.layers[3]  # dense, relu, dropout, dense, ...
    real_backward = dense.backward

    def poisoned(grad):
        out = real_backward(grad)
        dense.grads["b"][0] = np.inf
        return out

    dense.backward = poisoned
    before = trainer.network.flat_params.copy()
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 1 \(batch 1 of the epoch\): a "
                       r"gradient is NaN or inf; non-finite values in layer 3 \(dense\) "
                       r"gradient b\. Try a lower"):
        trainer.fit(x, y)
    assert np.array_equal(trainer.network.flat_params, before)


# -- damaged files ---------------------------------------------------------------------------
def _object_array(arrays):
    arrays["params"] = np.array([{"evil": 1}], dtype=object)
    return arrays


DAMAGE = {
    "truncated-half": lambda b, p: p.write_bytes(b[: len(b) // 2]),
    "truncated-tail": lambda b, p: p.write_bytes(b[:-20]),
    "flipped-byte": lambda b, p: p.write_bytes(b[:len(b) // 3] + bytes([b[len(b) // 3] ^ 0xFF])
                                               + b[len(b) // 3 + 1:]),
    "empty": lambda b, p: p.write_bytes(b""),
    "garbage": lambda b, p: p.write_bytes(os.urandom(2000)),
    "npy-not-npz": lambda b, p: np.save(open(p, "wb"), np.zeros(3)),  # noqa: SIM115
    "no-metadata": lambda b, p: np.savez(open(p, "wb"), params=np.zeros(3)),  # noqa: SIM115
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_and_nothing_is_loaded(good, tmp_path, damage):
    bad = tmp_path / "bad.npz"
    DAMAGE[damage](good.read_bytes(), bad)
    trainer = fresh("seed=3")
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=f"checkpoint {bad} is damaged or not an nnx "
                       "checkpoint"):
        trainer.load_checkpoint(bad)
    assert_same(snapshot(trainer), before)
    assert trainer.last_checkpoint is None


CRAFTED = {
    "pickled-object-array": (None, _object_array, "damaged or not an nnx checkpoint"),
    "metadata-not-json": (None, None, "damaged or not an nnx checkpoint"),
    "metadata-missing-keys": (lambda m: {"format": 1}, None, "metadata architecture, "),
    "other-format": (lambda m: {**m, "format": 99}, None, "format 99, expected 1"),
    "params-other-dtype": (None, lambda a: {**a, "params": a["params"].astype(np.float32)},
                           "parameters stored as float32 != this network's float64"),
    "optimizer-state-wrong-shape": (None, lambda a: {**a, "optimizer/flat/m_sum": np.zeros(3)},
                                    "optimizer state flat/m_sum is float64 (3,)"),
    "bad-rng-state": (lambda m: {**m, "rng_states": {**m["rng_states"], "network": {
        "bit_generator": "MT19937", "state": {"key": [1], "pos": 0}}}}, None,
        "random stream 'network'"),
    "extra-array": (None, lambda a: {**a, "surprise": np.zeros(1)}, "unexpected array 'surprise'"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_is_refused_and_nothing_is_loaded(good, tmp_path, case):
    meta_fn, arrays_fn, expected = CRAFTED[case]
    bad = tmp_path / "bad.npz"
    if case == "metadata-not-json":
        arrays = checkpoint.read(good)[1]
        arrays[checkpoint.META_KEY] = np.frombuffer(b"{not json", dtype=np.uint8)
        np.savez(open(bad, "wb"), **arrays)  # noqa: SIM115
    else:
        rewrite(good, bad, meta_fn, arrays_fn)
    trainer = fresh("seed=3")
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=f"checkpoint {bad}") as info:
        trainer.load_checkpoint(bad)
    assert expected in str(info.value)
    assert_same(snapshot(trainer), before)


# -- mismatched files ------------------------------------------------------------------------
MISMATCH = {
    "architecture": (["model.hidden=[8]"], ("architecture 2 -> dense 16, relu, dropout 0.2, "
                     "dense 16, relu, dropout 0.2, dense 3, identity != this network's 2 -> "
                     "dense 8, relu, dropout 0.2, dense 3, identity")),
    "dtype": (["dtype=float32"], "dtype float64 != this network's float32"),
    "optimizer": (["optimizer=sgd"], "optimizer Adam != this run's SGD"),
    "no-dropout": (["model.dropout=0.0"], "!= this network's 2 -> dense 16, relu, dense 16, "),
}


@pytest.mark.parametrize("case", sorted(MISMATCH))
def test_mismatched_checkpoint_names_file_and_difference_and_loads_nothing(good, case):
    overrides, expected = MISMATCH[case]
    trainer = fresh(*overrides)
    trainer.optimizer.step(trainer.network.params, trainer.network.grads)  # some state to keep
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=f"checkpoint {good} does not match this run: ") \
            as info:
        trainer.load_checkpoint(good)
    assert expected in str(info.value)
    assert_same(snapshot(trainer), before)


def test_same_optimizer_other_settings_is_a_mismatch(tmp_path):
    """SGD without momentum keeps no state; loading it into SGD with momentum would silently
    start the velocity at zero."""
    trained(tmp_path, "optimizer=sgd")
    trainer = fresh("optimizer=sgd", "optimizer.momentum=0.9")
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=r"optimizer state \[\] != the \['velocity'\] "
                       "this SGD's settings keep"):
        trainer.load_checkpoint(tmp_path / "last.npz")
    assert_same(snapshot(trainer), before)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'nope.npz'} does not exist"):
        fresh().load_checkpoint(tmp_path / "nope.npz")


# -- an I/O fault in a real run ----------------------------------------------------------------
def test_nnx_run_fails_with_the_cause_when_checkpoint_folder_breaks_mid_run(tmp_path):
    """The checkpoints folder is replaced by a file while training: the next write fails, the
    run fails with the cause (exit 2, one paragraph), and the checkpoint written before still
    loads. (That such a run is FAILED in MLflow, with the cause, is checked by
    test_bad_input.py's checkpoint-folder-is-a-file: the same path out of the trainer.)"""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnx.run", "experiment=tutorial", "tracking=none",
         "trainer.epochs=100000000",
         "trainer.log_every=100000000", "trainer.checkpoint_every=3000",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        ckpt = run_dir / "checkpoints" / "last.npz"
        deadline = time.monotonic() + 60
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ckpt.exists(), proc.communicate(timeout=5)
        (run_dir / "checkpoints").rename(run_dir / "checkpoints.old")
        (run_dir / "checkpoints").write_text("a file where the folder was")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2, err
    assert f"cannot write checkpoint {run_dir}/checkpoints/last.npz" in err
    assert "Traceback" not in err
    old = run_dir / "checkpoints.old" / "last.npz"
    assert checkpoint.read(old)[0]["epoch"] % 3000 == 0
    fresh_tutorial = experiment.build(compose(["experiment=tutorial", "tracking=none"]))[0]
    fresh_tutorial.load_checkpoint(old)


def test_callback_state_travels_and_a_bad_one_loads_nothing(tmp_path):
    """Early stopping's state is in the checkpoint; a damaged one is refused before any change."""
    stopping = ["trainer.early_stopping.patience=3", "trainer.epochs=3"]
    trained(tmp_path, *stopping[:1], epochs=2)
    meta, arrays = checkpoint.read(tmp_path / "last.npz")
    saved = meta["callbacks"]["0"]
    assert saved["class"] == "EarlyStopping" and set(saved["values"]) == {
        "best", "best_epoch", "wait", "best_logs"}  # best_logs: the best epoch's metrics
    best_row = meta["history"][saved["values"]["best_epoch"]]
    assert saved["values"]["best_logs"] == {k: v for k, v in best_row.items() if k != "epoch"}
    assert "callbacks/0/best_weights" in arrays
    bad = rewrite(tmp_path / "last.npz", tmp_path / "bad.npz", meta=lambda m: {
        **m, "callbacks": {"0": {"class": "EarlyStopping", "values": {"best": "x"}}}})
    trainer = fresh(*stopping)
    callback = trainer.callbacks[0]
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=r"callback 0 \(EarlyStopping\) state"):
        trainer.load_checkpoint(bad)
    assert_same(snapshot(trainer), before)
    assert (callback.best, callback.wait, callback.best_weights) == (np.inf, 0, None)
    trainer.load_checkpoint(tmp_path / "last.npz")
    assert callback.wait == saved["values"]["wait"] and callback.best_weights is not None
    assert callback.best_logs == saved["values"]["best_logs"]
