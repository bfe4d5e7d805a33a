"""Sweeps in MLflow: one parent run per sweep, one nested child per job, nothing left RUNNING.

Every test runs ``python -m nnx.run -m ...`` for real, against a store in a temporary folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["tracking.plots=false", "tracking.log_model=false"]


def sweep(args: list[str], tmp_path: Path, uri: str, timeout: float = 240,
          background: bool = False):
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "nnx.run", "-m", *args,
               f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    if background:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def runs_of(uri: str, experiment: str):
    """(parents, children) of an experiment; asserts that every run is in it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()])
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    assert {r.info.experiment_id for r in everything} == {exp.experiment_id}, \
        "a run was filed outside the sweep's experiment"
    parents = [r for r in everything if r.data.tags.get("nnx.sweep") == "true"]
    children = [r for r in everything if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_joblib_sweep_on_a_fresh_store_nests_every_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # no store yet: the sweep makes it
    done = sweep(["experiment=xor", "optimizer=sgd,adam", "model.activation=sigmoid,tanh,relu,elu",
                  "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.epochs=12",
                  "trainer.log_every=1", *QUICK], tmp_path, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    client, parents, children = runs_of(uri, "xor")
    assert len(parents) == 1 and len(children) == 8
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["nnx.job_num"]) for c in children) == list(range(8))
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("error")
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "loss")]
        assert steps == list(range(1, 13)), child.info.run_name
        # the run name says what the job changed, and only that
        assert child.info.run_name.startswith(f"#{child.data.tags['nnx.job_num']} optimizer=")
        assert "trainer.epochs" not in child.info.run_name
    assert {(c.data.params["optimizer.name"], c.data.params["model.activation"])
            for c in children} == {(o, a) for o in ("sgd", "adam")
                                   for a in ("sigmoid", "tanh", "relu", "elu")}
    # the parent: the search space, and the best child's objective and overrides
    assert parent.data.params["sweep.optimizer"] == "sgd,adam"
    assert parent.data.params["sweep.model.activation"] == "sigmoid,tanh,relu,elu"
    best = min(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.metrics["best_objective"] == best.data.metrics["objective"]
    assert parent.data.tags["nnx.best_run_id"] == best.info.run_id
    assert parent.data.params["best.optimizer"] == best.data.params["optimizer.name"]
    assert parent.data.params["best.model.activation"] == best.data.params["model.activation"]
    assert parent.data.tags["nnx.children.finished"] == "8"


def test_optuna_trials_are_tagged_and_the_parent_gets_the_best(store, tmp_path):
    done = sweep(["experiment=xor", "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                  "debug=default", *QUICK], tmp_path, store)
    assert done.returncode == 0, done.stderr[-3000:]
    _, parents, children = runs_of(store, "xor")
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.tags["trial"] for c in children) == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["nnx.trial_state"] for c in children} == {"complete"}
    best = min(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.metrics["best_objective"] == pytest.approx(best.data.metrics["objective"])
    assert parent.data.metrics["optuna_best_value"] == pytest.approx(
        best.data.metrics["objective"])
    assert parent.data.params["sweep.optimizer.lr"].startswith("tag(log")  # the search space
    assert float(parent.data.params["best.optimizer.lr"]) == pytest.approx(
        float(best.data.params["optimizer.lr"]))


def test_a_failed_job_leaves_no_run_running(store, tmp_path):
    # job 0 trains and finishes; job 1 diverges in its run (a mistake in the config would
    # fail before any run opens), which stops the basic launcher's sweep: the parent is
    # closed as FAILED on the way out.
    done = sweep(["experiment=xor", "optimizer.lr=0.05,1e200", "loss=mse",
                  "model.output_activation=identity", "debug=default", *QUICK], tmp_path, store)
    assert done.returncode != 0
    _, parents, children = runs_of(store, "xor")
    assert len(parents) == 1 and len(children) == 2
    status = {c.data.tags["nnx.job_num"]: c.info.status for c in children}
    assert status == {"0": "FINISHED", "1": "FAILED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "NonFiniteError: training diverged" in failed.data.tags["error"]
    assert parents[0].info.status == "FAILED"
    assert "the sweep stopped before it ended" in parents[0].data.tags["error"]


def test_ctrl_c_to_a_joblib_sweep_kills_every_run(store, tmp_path):
    # Two jobs in two loky workers: the launching process gets Ctrl-C (SIGINT), the workers
    # die with it, and the sweep callback's exit hook closes the parent and both children.
    proc = sweep(["experiment=tutorial", "optimizer.lr=0.5,1.0", "trainer.epochs=100000000",
                  "trainer.log_every=1000", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  *QUICK], tmp_path, store, background=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            exp = client.get_experiment_by_name("tutorial")
            running = exp and [r for r in client.search_runs([exp.experiment_id])
                               if r.info.status == "RUNNING"]
            if running and len(running) == 3:  # the parent and both jobs
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the sweep's jobs never started")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    assert {r.info.status for r in runs} == {"KILLED"}, [
        (r.info.run_name, r.info.status) for r in runs]
    parent = next(r for r in runs if r.data.tags.get("nnx.sweep") == "true")
    assert parent.data.tags["error"] == "the sweep stopped before it ended: interrupted"


def test_tracking_none_configures_no_sweep_callback():
    from hydra import compose, initialize_config_dir

    import nnx.run

    with initialize_config_dir(config_dir=str(nnx.run.CONF_DIR), version_base="1.3"):
        tracked = compose("config", overrides=[], return_hydra_config=True)
        untracked = compose("config", overrides=["tracking=none"], return_hydra_config=True)
    assert tracked.hydra.callbacks.mlflow_sweep._target_ == \
        "nnx.sweep_callback.MlflowSweepCallback"
    assert "mlflow_sweep" not in (untracked.hydra.callbacks or {})
    assert untracked.tracking.name == "none"


def test_a_sweep_against_an_unreachable_server_stops_before_any_job(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    done = sweep(["experiment=xor", "optimizer=sgd,adam", f"tracking.uri={uri}"], tmp_path,
                 "")
    assert done.returncode == 2
    assert f"nnx: error: MLflow tracking server {uri} is not reachable" in done.stderr
    assert "Launching" not in done.stdout + done.stderr  # no job started
