"""Sweeps in MLflow: one parent run per sweep, one nested child per job, nothing left RUNNING.

Every test runs ``python -m nnx.run -m ...`` for real, against a store in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import processes
import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["tracking.plots=false", "tracking.log_model=false"]


def sweep(args: list[str], tmp_path: Path, uri: str, timeout: float = 240):
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "nnx.run", "-m", *args,
               f"hydra.sweep.dir={tmp_path / 'multirun'}"]
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
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert steps == list(range(1, 13)), child.info.run_name
        # the run name says what the job changed, and only that: "#3 adam relu"
        assert child.info.run_name == (f"#{child.data.tags['nnx.job_num']} "
                                       f"{child.data.params['optimizer.name']} "
                                       f"{child.data.params['model.activation']}")
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


def closed_sweep(uri: str, jobs: list[tuple[str, float | None]], direction="minimize",
                 **end) -> tuple:
    """A parent run opened as the sweep callback opens it, one child per job (status,
    objective or None) logged as a job logs it, then end_sweep: (client, parent, children)."""
    from mlflow.tracking import MlflowClient

    from nnx import sweep_parent as sp

    env = sp.start_sweep({"name": "mlflow", "uri": uri}, "closing",
                         {"objective": "loss", "direction": direction,
                          "search_space": {"optimizer.lr": "range"}})
    client = MlflowClient(uri)
    children = []
    for i, (status, objective) in enumerate(jobs):
        run = client.create_run(env[sp.ENV_EXPERIMENT_ID], run_name=f"#{i}", start_time=10 + i,
                                tags={"mlflow.parentRunId": env[sp.ENV_PARENT_RUN_ID],
                                      "nnx.overrides": json.dumps([f"optimizer.lr={i / 10}"])})
        if objective is not None:
            client.log_metric(run.info.run_id, "objective", objective)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        children.append(run.info.run_id)
    sp.end_sweep(env, direction, **end)
    parent = client.get_run(env[sp.ENV_PARENT_RUN_ID])
    return client, parent, [client.get_run(c) for c in children]


def test_a_sweep_with_a_failed_job_closes_its_parent_failed_by_hand(store):
    # job 1 failed with the best objective of all; job 3 was still running: the parent fails,
    # the running job is closed as KILLED, and the best is the best *finished* job.
    _, parent, children = closed_sweep(store, [("FINISHED", 0.4), ("FAILED", 0.01),
                                                    ("FINISHED", 0.2), ("RUNNING", None)])
    assert parent.info.status == "FAILED"
    assert parent.data.tags["error"] == "2 of 4 jobs did not finish"
    assert [c.info.status for c in children] == ["FINISHED", "FAILED", "FINISHED", "KILLED"]
    assert children[3].data.tags["error"] == "the sweep stopped while this job ran"
    assert (parent.data.tags["nnx.children"], parent.data.tags["nnx.children.finished"],
            parent.data.tags["nnx.children.failed"], parent.data.tags["nnx.children.killed"]) \
        == ("4", "2", "1", "1")
    assert parent.data.metrics["best_objective"] == 0.2
    assert parent.data.tags["nnx.best_run_id"] == children[2].info.run_id
    assert parent.data.params["best.optimizer.lr"] == "0.2"


def test_a_sweep_parent_status_and_best_property_over_random_jobs(store):
    import numpy as np

    rng = np.random.default_rng(20)
    for trial in range(6):
        statuses = [str(s) for s in rng.choice(["FINISHED", "FAILED", "KILLED", "RUNNING"],
                                               size=int(rng.integers(1, 5)),
                                               p=[0.6, 0.2, 0.1, 0.1])]
        jobs = [(s, float(rng.integers(0, 9))) for s in statuses]  # ties happen
        direction = "maximize" if trial % 2 else "minimize"
        client, parent, children = closed_sweep(store, jobs, direction)
        assert parent.info.status == ("FINISHED" if set(statuses) == {"FINISHED"} else "FAILED")
        assert "RUNNING" not in {c.info.status for c in children}
        finished = [o for s, o in jobs if s == "FINISHED"]
        if finished:
            best = max(finished) if direction == "maximize" else min(finished)
            assert parent.data.metrics["best_objective"] == best
            best_run = client.get_run(parent.data.tags["nnx.best_run_id"])
            assert best_run.info.status == "FINISHED"
            assert best_run.data.metrics["objective"] == best
        else:
            assert "best_objective" not in parent.data.metrics


LONG_SWEEP = ["experiment=tutorial", "optimizer.lr=0.5,1.0", "trainer.epochs=100000000",
              "trainer.log_every=1000", *QUICK]
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


# Ctrl-C's default action, whatever the test's own process inherited: a shell ignores SIGINT in
# the commands it starts in the background (`make test &`), and an ignored SIGINT stays ignored
# across exec, so the sweep would never see it. (Python installs its KeyboardInterrupt handler
# only where SIGINT is not ignored.) The sweep is exec'ed from a process that resets it.
DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def start_long_sweep(tmp_path: Path, uri: str, launcher: str = "joblib") -> subprocess.Popen:
    """Two endless jobs (with joblib: in two loky workers, at once), in a process group of
    their own (so the test can see every process of the sweep, and kill what is left whatever
    happens); output to files, which cannot fill up and block the sweep as an unread pipe can."""
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", DEFAULT_SIGINT, "-m", "nnx.run", "-m", *LONG_SWEEP,
               *LAUNCHERS[launcher], f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)


@contextlib.contextmanager
def long_sweep(tmp_path: Path, uri: str, launcher: str = "joblib"):
    """``start_long_sweep``'s process; whatever happens, what is left of its group is killed."""
    proc = start_long_sweep(tmp_path, uri, launcher)
    try:
        yield proc
    finally:
        processes.kill_group(proc.pid)
        proc.wait()


def wait_until_all_gone(proc: subprocess.Popen, tmp_path: Path) -> str:
    """The sweep's stderr once it has exited and no process of its group is left (guards fail
    the test naming what is left)."""
    proc.wait(timeout=120)
    processes.wait_gone(lambda: processes.group(proc.pid), 60, "processes of the sweep")
    return (tmp_path / "err.txt").read_text()


def wait_until_both_jobs_train(proc: subprocess.Popen, client, tmp_path: Path,
                               timeout: float = 600, running: int = 3):
    """The experiment once ``running`` runs are RUNNING (the parent and both jobs; with the
    basic launcher the parent and the first job). ``timeout`` guards against a hang only (a
    busy machine takes minutes to start two workers that import mlflow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before its jobs "
                                 f"ran: {(tmp_path / 'err.txt').read_text()[-3000:]}")
        exp = client.get_experiment_by_name("tutorial")
        found = exp and [r for r in client.search_runs([exp.experiment_id])
                         if r.info.status == "RUNNING"]
        if found and len(found) == running:
            return exp
        time.sleep(0.3)
    raise AssertionError(f"the sweep's jobs did not start in {timeout:.0f} s")


# What the one line on stderr says: the basic launcher's job stops at an epoch's end (as a
# single run does); the joblib launcher's process stops the sweep, joblib kills its workers.
STOPPED_LINE = {"basic": r"nnx: stopped: stopped by {name} after epoch \d+; checkpoint \S+"
                         r"/multirun/0/checkpoints/last.npz; the run is marked KILLED",
                "joblib": r"nnx: stopped by {name}: the sweep ended before its jobs did; its "
                          r"MLflow runs are marked KILLED"}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_to_a_sweep_kills_every_run_and_process(store, tmp_path, signum,
                                                                  code, launcher):
    # Ctrl-C: SIGINT to the whole process group, as a terminal sends it; SIGTERM: to the
    # launching process alone, as `kill` or a scheduler sends it. The sweep exits 130 or 143
    # with one line and no traceback; the parent and every job's run are closed KILLED; no
    # process of the sweep is left (not a worker, not loky's resource trackers).
    import re

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    with long_sweep(tmp_path, store, launcher) as proc:
        exp = wait_until_both_jobs_train(proc, client, tmp_path,
                                         running=3 if launcher == "joblib" else 2)
        if launcher == "joblib":
            workers = processes.children(proc.pid)
            assert len(workers) >= 2, [processes.command(p) for p in workers]
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        err = wait_until_all_gone(proc, tmp_path)
    name = signal.Signals(signum).name
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(STOPPED_LINE[launcher].format(name=name),
                                            lines[0]), err[-3000:]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == (3 if launcher == "joblib" else 2)
    assert {r.info.status for r in runs} == {"KILLED"}, [
        (r.info.run_name, r.info.status) for r in runs]
    parent = next(r for r in runs if r.data.tags.get("nnx.sweep") == "true")
    assert parent.data.tags["error"] == f"the sweep stopped before it ended: stopped by {name}"


def test_a_killed_worker_stops_the_sweep_with_one_paragraph(store, tmp_path):
    # kill -9 of one loky worker (the OOM killer's way): joblib gives up on the sweep, which
    # exits 1 with one paragraph (no traceback) after closing its runs: the parent FAILED, both
    # jobs KILLED; the other worker is stopped too.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    with long_sweep(tmp_path, store) as proc:
        exp = wait_until_both_jobs_train(proc, client, tmp_path)
        workers = [p for p in processes.children(proc.pid)
                   if "LokyProcess" in processes.command(p)]
        assert len(workers) == 2, [processes.command(p) for p in processes.children(proc.pid)]
        os.kill(workers[0], signal.SIGKILL)
        err = wait_until_all_gone(proc, tmp_path)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    first, hint = err.strip().splitlines()  # one paragraph (joblib's words in the middle)
    assert first.startswith("nnx: error: the sweep stopped: TerminatedWorkerError: A worker "
                            "process managed by the executor was unexpectedly terminated"), err
    assert first.endswith("(exit codes of the workers are {SIGKILL(-9)}); its MLflow runs are "
                          "closed (the sweep FAILED, jobs still running KILLED)"), err
    assert hint == "(set NNX_DEBUG=1 for the traceback)"
    runs = client.search_runs([exp.experiment_id])
    assert sorted((r.data.tags.get("nnx.sweep") == "true", r.info.status) for r in runs) == \
        [(False, "KILLED"), (False, "KILLED"), (True, "FAILED")]


def test_workers_of_a_killed_launcher_stop_and_close_their_runs(store, tmp_path):
    # SIGKILL leaves the launcher no way to stop its workers: they notice their parent is gone
    # (nnx.launcher_watch), finish the epoch under way, mark their own runs KILLED and exit.
    # Nobody is left to close the parent run: it stays RUNNING.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    proc = start_long_sweep(tmp_path, store)
    try:
        exp = wait_until_both_jobs_train(proc, client, tmp_path)
        workers = processes.children(proc.pid)
        proc.kill()
        proc.wait()
        processes.wait_gone(lambda: processes.group(proc.pid), 120,
                            "the workers of a killed launcher")
    finally:
        processes.kill_group(proc.pid)
    assert len(workers) >= 2
    runs = {r.data.tags.get("nnx.job_num", "parent"): r for r in
            client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["0", "1", "parent"]
    assert runs["parent"].info.status == "RUNNING"
    for job in ("0", "1"):
        run = runs[job]
        assert run.info.status == "KILLED", (job, run.data.tags.get("error"))
        assert run.data.tags["error"].startswith(
            f"stopped: the sweep's launcher (pid {proc.pid}) is gone after epoch "), \
            run.data.tags["error"]
        checkpoint = tmp_path / "multirun" / job / "checkpoints" / "last.npz"
        from nnx import checkpoint as ckpt

        meta = ckpt.read(checkpoint)[0]
        assert meta["epoch"] == meta["step"] > 0  # stopped at an epoch's end, checkpointed


def test_tracking_none_configures_the_callback_that_opens_no_parent_run():
    # one callback for every sweep: tracked, it opens the parent run; untracked, it only prints
    # the epilogue (it opens a parent only when tracking.name is mlflow)
    from hydra import compose, initialize_config_dir

    import nnx.run

    with initialize_config_dir(config_dir=str(nnx.run.CONF_DIR), version_base="1.3"):
        tracked = compose("config", overrides=[], return_hydra_config=True)
        untracked = compose("config", overrides=["tracking=none"], return_hydra_config=True)
    for config in (tracked, untracked):
        assert config.hydra.callbacks.sweep._target_ == "nnx.sweep_callback.MlflowSweepCallback"
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
