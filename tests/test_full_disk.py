"""A full disk under the default sqlite store, for real: ``python -m nnx.run`` with its store (and
in one case its run folder) on a small tmpfs that is filled while the run trains.

- store full, run folder writable: the points and the final status go to the spool, the run
  exits 0 with one warning paragraph (non-zero with ``tracking.strict=true``); once space is
  freed, ``python -m nnx.runs sync`` stores every point, once;
- store and run folder full: the run fails with one paragraph per failure, names the store and
  says the run stays RUNNING; once space is freed, ``python -m nnx.runs reap`` closes it;
- run folder full, store writable: the run is marked FAILED with the cause;
- store full before the run: no run can be created; one paragraph, exit 2, nothing trained.

No stderr holds a traceback or a line of MLflow's or SQLAlchemy's. Each scenario runs in a
child process with a private tmpfs (``small_disk``): the child starts the run, pauses it
(SIGSTOP) once its first points are stored, fills the disk, lets it go on, and checks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import small_disk

from nnx import checkpoint, metrics

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 60
RUN = ["experiment=spirals", f"trainer.epochs={EPOCHS}", "trainer.log_every=1",
       "tracking.plots=false", "tracking.log_model=false", "tracking.flush_seconds=0.05",
       "tracking.retry_seconds=1", "tracking.heartbeat_seconds=0.5"]
# What no store failure may print: a traceback, or a library's own log lines.
LIBRARY_NOISE = ("Traceback", "sqlalchemy", "SQLAlchemy", "mlflow.store", "File \"")


def assert_quiet(err: str) -> None:
    for noise in LIBRARY_NOISE:
        assert noise not in err, f"{noise!r} on stderr:\n{err[-4000:]}"


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 120):
    """Until ``check()`` is true; a guard against a hang, failing with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the run ended first (exit {proc.returncode}): "
                                 f"{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def stored_points(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    except sqlite3.OperationalError:  # being written: asked again
        return 0


def run_on_a_full_disk(disk: Path, run_dir: Path, store_dir: Path, args=()) -> tuple:
    """``python -m nnx.run`` whose store is ``store_dir/mlflow.db``; ``disk`` fills up once its
    first points are stored. Returns (exit code, stderr, store URI)."""
    db = store_dir / "mlflow.db"
    shutil.copy(os.environ["NNX_TEST_STORE_TEMPLATE"], db)
    uri = f"sqlite:///{db}"
    proc = subprocess.Popen([sys.executable, "-m", "nnx.run", *RUN, *args, f"tracking.uri={uri}",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for("the run's first points in the store", lambda: stored_points(db) > 0, proc)
        proc.send_signal(signal.SIGSTOP)  # nothing is written while the disk fills
        small_disk.fill(disk)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, uri


def nnx_runs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnx.runs", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


def the_run(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("spirals").experiment_id])
    return client, run


# -- the scenarios, each in a child process whose ``disk`` is a small tmpfs ---------------------
def store_full_run_folder_writable(disk: Path) -> None:
    run_dir = Path(os.environ["NNX_TEST_OUT"]) / "run"
    code, err, uri = run_on_a_full_disk(disk, run_dir, disk)
    assert code == 0, err[-4000:]  # tracking.strict is off: the run trained and is spooled
    assert_quiet(err)
    assert f"nnx: warning: the MLflow store {uri} failed during this run (database or disk " \
        "is full" in err, err
    # Whether the final status still fit depends on the free pages sqlite found at that moment
    # (seen both ways): the points are spooled either way, the status when it did not fit.
    assert re.search(r": \d+ metric points( and the final status)?\. Once the store answers: "
                     rf"python -m nnx\.runs sync {re.escape(str(run_dir))}\n", err), err
    sync_fails_while_the_disk_is_full(run_dir)
    (disk / "filler").unlink()  # space again
    done = nnx_runs("sync", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert_quiet(done.stderr)
    client, run = the_run(uri)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["nnx.spooled_points"]) > 0
    history = checkpoint.read(run_dir / "checkpoints" / "last.npz")[0]["history"]
    keys = sorted(set(history[0]) - {"epoch"})
    assert len(history) == EPOCHS and len(keys) >= 8
    for key in keys:  # epochs x metrics: every point in the store, once
        stored = metrics.stored_key(key)  # the history's name (loss) -> the store's (train/loss)
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, stored))
        assert steps == list(range(1, EPOCHS + 1)), key


def sync_fails_while_the_disk_is_full(run_dir: Path) -> None:
    """``nnx.runs sync`` into a store that is still full: exit 2, one line naming the cause."""
    done = nnx_runs("sync", str(run_dir))
    assert done.returncode == 2, done.stderr
    assert_quiet(done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnx.runs: error: ") \
        and "database or disk is full" in lines[0], done.stderr


def store_full_strict(disk: Path) -> None:
    run_dir = Path(os.environ["NNX_TEST_OUT"]) / "run"
    code, err, _ = run_on_a_full_disk(disk, run_dir, disk, ["tracking.strict=true"])
    assert code == 2, err[-4000:]
    assert_quiet(err)
    assert "nnx: error: tracking.strict: MLflow run" in err and "is incomplete (" in err \
        and f"python -m nnx.runs sync {run_dir}" in err, err


def store_and_run_folder_full(disk: Path) -> None:
    code, err, uri = run_on_a_full_disk(disk, disk / "run", disk)
    assert code == 2, err[-4000:]
    assert_quiet(err)
    assert f"nnx: error: the MLflow store {uri} failed during this run (database or disk is " \
        "full" in err, err
    assert "could not be marked FAILED there, nor could that be kept in the spool " \
        f"{disk / 'run' / 'tracking-spool.jsonl'} ([Errno 28] No space left on device): it " \
        "stays RUNNING until `python -m nnx.runs reap` closes it" in err, err
    # the run's own failure, last: the checkpoint it could not write
    assert f"nnx: error: cannot write checkpoint {disk / 'run' / 'checkpoints' / 'last.npz'}: " \
        "No space left on device" in err, err
    (disk / "filler").unlink()
    client, run = the_run(uri)
    assert run.info.status == "RUNNING"
    deadline = time.monotonic() + 60  # stale after 4 missed beats of 0.5 s
    while "KILLED" not in (done := nnx_runs("reap", "--uri", uri)).stdout:
        assert done.returncode == 0 and time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(0.5)
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def run_folder_full_store_writable(disk: Path) -> None:
    store_dir = Path(os.environ["NNX_TEST_OUT"])
    code, err, uri = run_on_a_full_disk(disk, disk / "run", store_dir)
    assert code == 2, err[-4000:]
    assert_quiet(err)
    lines = err.strip().splitlines()
    assert lines[-2] == (f"nnx: error: cannot write checkpoint {disk / 'run' / 'checkpoints'}"
                         "/last.npz: No space left on device; the previous checkpoint there, "
                         "if any, is unchanged"), err
    _, run = the_run(uri)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["error"]


def store_full_before_the_run(disk: Path) -> None:
    """The experiment exists, but not one row more fits: no run can be created. One paragraph,
    exit 2, before any training."""
    from mlflow.tracking import MlflowClient

    shutil.copy(os.environ["NNX_TEST_STORE_TEMPLATE"], disk / "mlflow.db")
    uri = f"sqlite:///{disk / 'mlflow.db'}"
    experiment = MlflowClient(uri).create_experiment("spirals")
    small_disk.fill(disk)
    done = subprocess.run([sys.executable, "-m", "nnx.run", *RUN, f"tracking.uri={uri}",
                           f"hydra.run.dir={Path(os.environ['NNX_TEST_OUT']) / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-4000:]
    assert_quiet(done.stderr)
    assert done.stderr.splitlines()[0] == (
        f"nnx: error: cannot create a run in the MLflow store {uri} (experiment {experiment}): "
        "database or disk is full (sqlite3.OperationalError). Nothing was trained: free the "
        "store's disk, pick another store (tracking.uri=...) or train without tracking "
        "(tracking=none)"), done.stderr


@pytest.mark.parametrize("scenario", [store_full_run_folder_writable, store_full_strict,
                                      store_and_run_folder_full, run_folder_full_store_writable,
                                      store_full_before_the_run],
                         ids=lambda f: f.__name__)
def test_a_full_disk_under_the_sqlite_store(tmp_path, store_template, monkeypatch, scenario):
    monkeypatch.setenv("NNX_TEST_STORE_TEMPLATE", str(store_template))
    monkeypatch.setenv("NNX_TEST_OUT", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    done = small_disk.run(tmp_path / "disk", "test_full_disk", scenario.__name__, size="4m")
    assert done.returncode == 0, done.stderr[-6000:]
