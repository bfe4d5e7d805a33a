"""SIGINT and SIGTERM on a real ``python -m nnx.run``.

First signal: the epoch under way finishes, a checkpoint is written, the run is marked KILLED
and the process exits 130 (SIGINT) or 143 (SIGTERM). Second signal: it stops at once.
Either way the run resumes from its folder and finishes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnx import checkpoint

ROOT = Path(__file__).resolve().parent.parent
# One epoch is one step here: a stop is honoured within microseconds of the signal.
TUTORIAL = ["experiment=tutorial", "trainer.epochs=100000000", "trainer.log_every=100000000",
            "trainer.checkpoint_every=2000"]
NO_EXTRAS = ["tracking.plots=false", "tracking.log_model=false"]


def start(args: list[str], run_dir: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nnx.run", *args, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``path`` exists: the trainer has written a checkpoint, so it is well under way
    and nnx.run's handlers are installed."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=10) if proc.poll() is None else ("", "")
            proc.kill()
            raise AssertionError(f"no {path} (exit {proc.returncode}): {err}{out}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """The process's output once it exits; a guard fails the test if it has not exited after
    ``timeout`` seconds (a stop that is never honoured), a busy machine being no failure."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout:.0f} s after the signal") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("signum,code,tracking", [
    (signal.SIGINT, 130, "none"),
    (signal.SIGTERM, 143, "mlflow"),
], ids=["SIGINT", "SIGTERM-mlflow"])
def test_first_signal_checkpoints_and_exits_then_resume_finishes(tmp_path, request, signum,
                                                                 code, tracking):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if tracking == "mlflow":
        shutil.copy(request.getfixturevalue("store_template"), tmp_path / "mlflow.db")
    run_dir = tmp_path / "run"
    extras = NO_EXTRAS if tracking == "mlflow" else []
    proc = start([*TUTORIAL, f"tracking={tracking}", *extras], run_dir, uri)
    wait_for(run_dir / "checkpoints" / "last.npz", proc)
    proc.send_signal(signum)
    _, err = finish(proc)
    name = signal.Signals(signum).name
    assert proc.returncode == code, err
    # one paragraph: where it stopped and where the checkpoint is
    match = re.search(rf"nnx: stopped: stopped by {name} after epoch (\d+); checkpoint "
                      rf"{re.escape(str(run_dir / 'checkpoints' / 'last.npz'))}; the run is "
                      "marked KILLED", err)
    assert match, err
    assert "Traceback" not in err
    epoch = int(match.group(1))
    meta = checkpoint.read(run_dir / "checkpoints" / "last.npz")[0]
    assert meta["epoch"] == meta["step"] == epoch  # the stop came at an epoch's end
    if tracking == "mlflow":
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("tutorial").experiment_id])
        assert [r.info.status for r in runs] == ["KILLED"]
        assert name in runs[0].data.tags["error"]
    # resume from the run folder; it finishes
    resumed = subprocess.run(
        [sys.executable, "-m", "nnx.run", "experiment=tutorial", "tracking=none",
         f"trainer.epochs={epoch + 100}", f"trainer.resume={run_dir}",
         f"hydra.run.dir={tmp_path / 'resumed'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{epoch + 100} epochs, {epoch + 100} steps" in resumed.stdout
    final = checkpoint.read(tmp_path / "resumed" / "checkpoints" / "last.npz")[0]
    assert final["epoch"] == epoch + 100


def test_second_signal_stops_at_once(tmp_path):
    """Epochs of seconds: the first SIGTERM would wait for the epoch's end, the second one
    does not. The checkpoint of the last finished epoch stays as it was."""
    run_dir = tmp_path / "run"
    proc = start(["dataset.n_samples=8000", "trainer.batch_size=1", "trainer.epochs=1000",
                  "trainer.checkpoint_every=1", "tracking=none"], run_dir,
                 f"sqlite:///{tmp_path / 'mlflow.db'}")
    ckpt = run_dir / "checkpoints" / "last.npz"
    wait_for(ckpt, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = finish(proc)  # an epoch takes seconds: waiting for its end would write epoch 2
    assert proc.returncode == 143, err
    assert "SIGTERM again: stopped at once, mid-epoch" in err and "Traceback" not in err
    assert checkpoint.read(ckpt)[0]["epoch"] == 1  # epoch 2 never finished
    assert not [p for p in ckpt.parent.iterdir() if p.name != "last.npz"]  # no temporary
