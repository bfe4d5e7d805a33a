"""Parallel sweeps into one MLflow store lose no run and no metric.

Two sweeps of 16 jobs, each on Hydra's joblib launcher with 4 worker processes, started at
the same moment into a store that does not exist yet: both launchers race to create it, then
8 processes write to it at once. Everything is counted with the MLflow client.
(A lone joblib sweep on a fresh store is tests/test_sweeps.py's first test; this one is the
harder case, and at about a minute of CPU it is the only one run here.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS, EPOCHS = 16, 3
SWEEP = ["-m", "experiment=xor", f"trainer.epochs={EPOCHS}", "trainer.log_every=1",
         f"seed=range({JOBS})", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
         "tracking=mlflow", "tracking.plots=false", "tracking.log_model=false"]
# what every job logs at every epoch (the weight statistics come on top)
PER_EPOCH = ("train/loss", "train/accuracy", "train/lr")  # xor has no validation set (trainer.val_split: 0)


def start_sweep(folder: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    env.pop("NNX_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "nnx.run", *SWEEP,
                             f"hydra.sweep.dir={folder}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def check_store(uri: str, folders: list[Path]) -> None:
    """One FINISHED parent per sweep, JOBS FINISHED children under each, every metric there."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xor")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == len(folders) * (JOBS + 1)  # a parent and its jobs per sweep
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("nnx.sweep") == "true"}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == len(folders), f"{len(parents)} sweep parent runs for {len(folders)} " \
        "sweeps: a sweep's on_multirun_start failed (see the UserWarning in its stderr)"
    assert len(children) == len(folders) * JOBS, "jobs not nested under their sweep"
    assert {r.info.status for r in runs} == {"FINISHED"}
    keys = None
    for parent_id, parent in parents.items():
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent_id]
        assert sorted(int(c.data.params["seed"]) for c in mine) == list(range(JOBS))
        assert sorted(int(c.data.tags["nnx.job_num"]) for c in mine) == list(range(JOBS))
        assert parent.data.tags["nnx.children.finished"] == str(JOBS)
        for child in mine:
            # system/... metrics: as many as the run lasted samples, from MLflow's own thread
            logged = {k for k in child.data.metrics if not k.startswith("system/")}
            keys = keys or logged
            assert logged == keys, child.info.run_name  # no metric lost
            for key in PER_EPOCH:
                steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
                assert steps == list(range(1, EPOCHS + 1)), (child.info.run_name, key, steps)
    assert {"objective", "test/loss", *PER_EPOCH} <= keys
    for folder in folders:  # and every job left its folder and its log
        jobs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        assert len(jobs) == JOBS
        assert all("objective (loss)" in (job / "run.log").read_text() for job in jobs)


def test_two_parallel_sweeps_into_one_fresh_store_lose_no_run_and_no_metric(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # no store yet
    folders = [tmp_path / "sweep0", tmp_path / "sweep1"]
    procs = [start_sweep(folder, uri) for folder in folders]
    try:
        outputs = [proc.communicate(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        # each parallel job prints one line when it ends (its summary goes to its run.log)
        assert len(re.findall(r"^job #\d+ seed=\d+: loss \S+ \(FINISHED\)$", out, re.MULTILINE)) == JOBS
        # Hydra reports a callback that failed as a mere warning
        assert not re.search(r"Callback \w+\.\w+ raised", err), err[-3000:]
    check_store(uri, folders)
