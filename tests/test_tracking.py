"""The MLflow tracker against a real sqlite store in a temporary folder (never ./mlflow.db).

In-process tests train with ``nnx.experiment.train`` on composed configs; the rest run
``python -m nnx.run`` for real (Hydra's folder, signals, an unreachable server).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import nnx.run  # registers generated config nodes
from nnx import experiment
from nnx.config import ConfigError
from nnx.metrics import stored_key
from nnx.run import compose
from nnx.trainer import STOP, NonFiniteError

ROOT = Path(__file__).resolve().parent.parent


# -- helpers (test_tracking_cost.py uses them too) ------------------------------------------
def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def only_run(uri: str, experiment_name: str):
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment_name)
    assert exp is not None, f"no experiment {experiment_name!r} in {uri}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def artifacts(client, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of a run, recursively."""
    out = set()
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            out |= artifacts(client, run_id, item.path)
        else:
            out.add(item.path)
    return out


def nnx_process(args: list[str], tmp_path: Path, uri: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nnx.run", *args,
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, **popen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- import cost ---------------------------------------------------------------------------
def test_import_nnx_never_imports_mlflow():
    code = ("import sys, nnx, nnx.tracking, nnx.trainer, nnx.experiment, nnx.run, "
            "nnx.sweep_callback, nnx.mlflow_model, nnx.plots, nnx.store, nnx.mlflow_tracker, "
            "nnx.run_metadata, nnx.tracking_settings, nnx.sweep_parent, nnx.network_files\n"
            "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


# -- a whole run, in process ---------------------------------------------------------------
def test_run_records_params_tags_metrics_weights_plots_and_model(store, tmp_path):
    import mlflow

    from nnx.mlflow_model import load_snapshot

    cfg = compose(["dataset=moons", "dataset.n_samples=64", "dataset.n_test=32",
                    "model.hidden=[8]", "model.activation=tanh", "trainer.epochs=6",
                    "trainer.batch_size=16", "trainer.log_every=1", f"tracking.uri={store}",
                    "tracking.snapshot_every=2", "tracking.histograms_every=3", "name=moons_t"])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    result = experiment.train(cfg)
    trainer = result["trainer"]
    run = only_run(store, "moons_t")
    client = client_for(store)
    rid = run.info.run_id
    assert run.info.status == "FINISHED"

    # params: the flattened resolved config, minus where it is logged
    params = run.data.params
    assert params["optimizer.lr"] == str(cfg["optimizer"]["lr"])
    assert params["model.hidden"] == "[8]"
    assert params["dataset.name"] == "moons" and params["trainer.epochs"] == "6"
    assert not any(k.startswith("tracking.") for k in params)
    # the objective's name is a param of its own; the metric "objective" holds its value
    assert params["objective_name"] == "val_loss" and "objective" not in params

    # tags: dataset, version, and every component's distribution and version
    tags = run.data.tags
    assert tags["dataset"] == "moons"
    assert tags["nnx.version"] == nnx.__version__
    # the objective (val_loss by default) comes from the 13 of 64 held out of train
    assert (tags["nnx.objective_source"], tags["nnx.dataset.n_validation"]) == ("val", "13")
    assert run.data.metrics["val/loss"] != run.data.metrics["test/loss"]
    for key in ("component.optimizer", "component.loss", "component.dataset",
                "component.layer.dense", "component.activation.tanh",
                "component.initializer.glorot_uniform"):
        assert tags[key] == f"nnx {nnx.__version__}", key

    # metrics: every key the trainer logged, at every epoch, with its value, in its section
    for i, row in enumerate(trainer.history):
        for key, value in row.items():
            if key == "epoch":
                continue
            history = client.get_metric_history(rid, stored_key(key))
            assert [m.step for m in history] == [1, 2, 3, 4, 5, 6], key
            assert history[i].value == pytest.approx(value, rel=1e-6), (key, i)
    assert {"diagnostics/layer0.weight_norm", "diagnostics/layer0.update_ratio",
            "diagnostics/grad_norm", "train/lr", "time/epoch_seconds", "time/samples_per_second",
            "val/loss", "val/accuracy", "train/loss", "train/accuracy"} <= set(run.data.metrics)
    assert not [k for k in run.data.metrics  # every metric in a section, or the objective
                if "/" not in k and k != "objective"]
    # measured once per run: one point each, at step 0 (a value, not a curve)
    final = result["metrics"]
    for key, name in (("objective", "objective"), ("test/loss", "test_loss"),
                      ("test/accuracy", "test_accuracy"), ("time/train_seconds", "train_seconds")):
        points = client.get_metric_history(rid, key)
        assert [(m.step, m.value) for m in points] == [(0, pytest.approx(final[name]))], key
    assert final["objective"] == final["val_loss"]

    files = artifacts(client, rid)
    assert {"config.yaml", "weights/epoch_00002.npz", "weights/epoch_00004.npz",
            "weights/epoch_00006.npz", "weights/final.npz", "checkpoints/last.npz",
            "plots/learning_curves.png", "plots/confusion_matrix.png",
            "plots/decision_boundary.png", "plots/histograms/epoch_00003.png",
            "plots/histograms/epoch_00006.png", "plots/histograms/final.png"} <= files, files
    assert "error.txt" not in files and "error" not in tags

    # weights: the final snapshot rebuilds the trained network exactly
    x = result["dataset"].x_test
    expected = trainer.network.predict(x)
    snapshot = client.download_artifacts(rid, "weights/final.npz", str(tmp_path))
    np.testing.assert_array_equal(load_snapshot(snapshot).predict(x), expected)

    # model: a pyfunc that predicts exactly what the network predicts, with no pickle inside
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
    np.testing.assert_array_equal(model.predict(x), expected)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{rid}/model", dst_path=str(tmp_path)))
    stored = [p.name for p in local.rglob("*") if p.is_file()]
    assert "weights.npz" in stored and "network.json" in stored
    assert not [n for n in stored if n.endswith((".pkl", ".pickle", ".cloudpickle"))], stored
    assert "loader_module: nnx.mlflow_model" in (local / "MLmodel").read_text()


def test_failed_run_is_marked_failed_with_the_error(store):
    # a mistake in the config fails before a run opens; divergence fails in the run
    cfg = compose(["experiment=xor", "debug=default", "loss=mse", "optimizer=sgd",
                   "optimizer.lr=1e200", "model.output_activation=identity",
                   f"tracking.uri={store}", "tracking.plots=false", "tracking.log_model=false"])
    with pytest.raises(NonFiniteError, match="training diverged"):
        experiment.train(cfg)
    run = only_run(store, "xor")
    assert run.info.status == "FAILED"
    assert "NonFiniteError: training diverged at epoch" in run.data.tags["error"]
    client = client_for(store)
    text = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert "status: FAILED" in text and "Traceback" in text and "NonFiniteError" in text


def test_interrupted_run_is_killed_and_resumes_from_its_run_id(store, tmp_path, capfd):
    cfg = compose(["experiment=xor", "trainer.epochs=50", f"tracking.uri={store}",
                    "tracking.plots=false", "tracking.log_model=false"])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    STOP.request("stopped by SIGTERM", 143)  # what nnx.run's signal handler does
    try:
        with pytest.raises(KeyboardInterrupt):
            experiment.train(cfg)
    finally:
        STOP.clear()
    run = only_run(store, "xor")
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("stopped by SIGTERM after epoch 1")
    client = client_for(store)
    assert {"error.txt", "checkpoints/last.npz"} <= artifacts(client, run.info.run_id)

    # trainer.resume=<run id>: the checkpoint is downloaded from the store, training goes on
    cfg = compose(["experiment=xor", "trainer.epochs=5", f"tracking.uri={store}",
                    f"trainer.resume={run.info.run_id}", "tracking.plots=false",
                    "tracking.log_model=false"])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path / "resumed" / "checkpoints")
    capfd.readouterr()
    result = experiment.train(cfg)
    assert result["trainer"].epoch == 5
    assert (tmp_path / "resumed" / "resume" / run.info.run_id / "last.npz").is_file()
    assert "Downloading artifacts" not in capfd.readouterr().err  # no MLflow progress bar
    exp = client.get_experiment_by_name("xor")
    resumed = [r for r in client.search_runs([exp.experiment_id])
               if r.info.run_id != run.info.run_id]
    assert len(resumed) == 1 and resumed[0].info.status == "FINISHED"
    assert resumed[0].data.tags["nnx.resumed_from"] == run.info.run_id
    # epochs 2..5 were trained in the resumed run
    steps = [m.step for m in client.get_metric_history(resumed[0].info.run_id, "train/loss")]
    assert steps == [5]  # xor logs every 10 epochs, and always the last


def test_resume_from_an_unknown_run_id_is_a_clear_error(store):
    cfg = compose(["experiment=xor", f"tracking.uri={store}", "trainer.resume=" + "0" * 32])
    with pytest.raises(FileNotFoundError, match=f"no MLflow run {'0' * 32} in sqlite"):
        experiment.train(cfg)


# -- pieces ----------------------------------------------------------------------------------
def test_metrics_are_buffered_and_written_in_batches(store):
    from nnx.mlflow_tracker import MlflowTracker
    from nnx.store import open_store

    client = open_store(store)
    exp = client.create_experiment("batches")
    tracker = MlflowTracker(client, store, exp, {"flush_seconds": 3600})
    tracker.start({"name": "batches", "objective": "m0"}, None, None)
    for step in range(1, 251):  # 250 steps x 10 metrics = 2500 metrics
        tracker.log_metrics({f"m{i}": step * 0.5 + i for i in range(10)}, step)
    # two chunks of 1000 went to the background writer as soon as they were full; 500 wait
    tracker._writer.drain()
    written = sum(len(client.get_metric_history(tracker.run_id, f"m{i}")) for i in range(10))
    assert written == 2000
    tracker.finish()
    run = client.get_run(tracker.run_id)
    assert len(client.get_metric_history(tracker.run_id, "m9")) == 250
    assert run.data.metrics["objective"] == 250 * 0.5 and run.info.status == "FINISHED"

    timed = MlflowTracker(client, store, exp, {"flush_seconds": 1e-6})
    timed.start({"name": "batches"}, None, None)
    timed.log_metrics({"a": 1.0}, 1)  # the interval has passed: sent at once
    timed._writer.drain()
    assert len(client.get_metric_history(timed.run_id, "a")) == 1
    timed.finish()


def test_params_and_tags_are_clipped_to_mlflow_limits(store):
    from nnx.mlflow_tracker import MlflowTracker
    from nnx.run_metadata import config_params
    from nnx.store import open_store

    params = config_params({"model": {"hidden": list(range(3000))}, "k" * 300: 1,
                            "tracking": {"uri": "x"}, "trainer": {"checkpoint_dir": "/x"}})
    assert len(params["model.hidden"]) == 6000 and params["model.hidden"].endswith("...")
    assert len(next(k for k in params if k.startswith("kkk"))) == 250
    assert "tracking.uri" not in params and "trainer.checkpoint_dir" not in params
    client = open_store(store)
    tracker = MlflowTracker(client, store, client.create_experiment("limits"))
    tracker.start({"name": "limits"}, None, None)
    tracker.log_params(params)
    tracker.set_tags({"long": "x" * 9000})
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert len(run.data.params["model.hidden"]) == 6000
    assert len(run.data.tags["long"]) == 8000


def test_tracking_settings_are_checked():
    from nnx.tracking_settings import check_settings

    defaults = check_settings({"name": "mlflow", "uri": None})
    assert defaults["flush_seconds"] == 10.0
    assert (defaults["system_metrics"], defaults["system_metrics_seconds"],
            defaults["verbose"]) == (True, 2.0, False)
    for bad, message in [({"snapshot_evry": 1}, "tracking.snapshot_evry: unknown setting"),
                         ({"snapshot_every": -1}, "tracking.snapshot_every: expected an integer"),
                         ({"timeout": 0}, "tracking.timeout: expected a number of seconds"),
                         ({"plots": "yes"}, "tracking.plots: expected true or false"),
                         ({"system_metrics": "on"}, "tracking.system_metrics: expected true"),
                         ({"system_metrics_seconds": 0},
                          "tracking.system_metrics_seconds: expected a number of seconds"),
                         ({"verbose": 1}, "tracking.verbose: expected true or false")]:
        with pytest.raises(ConfigError, match=message):
            check_settings(bad)


def test_tracking_uri_resolution(monkeypatch, tmp_path):
    from nnx.store import resolve_uri

    monkeypatch.delenv("NNX_TRACKING_URI", raising=False)
    monkeypatch.chdir(ROOT / "tests")  # inside the checkout: its top folder's store
    assert resolve_uri(None) == f"sqlite:///{ROOT / 'mlflow.db'}"
    monkeypatch.setenv("NNX_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/env.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # config beats env
    monkeypatch.chdir(tmp_path)
    assert resolve_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert resolve_uri("plain.db") == f"sqlite:///{tmp_path / 'plain.db'}"


def test_unreachable_server_fails_in_seconds_naming_the_uri():
    from nnx.mlflow_tracker import MlflowTracker
    from nnx.store import TrackingError

    uri = f"http://127.0.0.1:{free_port()}"
    outcome = []

    def connect():
        try:
            MlflowTracker.from_config({"name": "x", "tracking": {"name": "mlflow", "uri": uri}})
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)

    # A guard, not a measure: with MLflow's default retries the call would take minutes.
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"still trying to reach {uri} after 60 s: retries are on"
    assert len(outcome) == 1 and isinstance(outcome[0], TrackingError), outcome
    assert uri in str(outcome[0])


# -- python -m nnx.run -------------------------------------------------------------------------
def test_nnx_run_against_an_unreachable_server_fails_before_training(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    # timeout: a guard against MLflow's default retries (minutes), not a measure
    done = subprocess.run([sys.executable, "-m", "nnx.run", "experiment=xor",
                           f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert uri in done.stderr and "not reachable" in done.stderr
    assert "final:" not in done.stdout and not (tmp_path / "run" / "checkpoints").exists()


def wait_for_running_run(uri: str, timeout: float = 60):
    """The run once it is RUNNING (created by the tracker's start, just before training)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name("tutorial")
        if exp is not None:
            runs = client.search_runs([exp.experiment_id])
            if runs and runs[0].info.status == "RUNNING":
                time.sleep(1.0)  # well into training
                return runs[0]
        time.sleep(0.3)
    raise AssertionError("the run never started")


def test_sigterm_marks_the_run_killed(store, tmp_path):
    # Ctrl-C (SIGINT) takes the same handler in nnx.run; test_sweeps sends one to a sweep.
    signum, code = signal.SIGTERM, 143
    proc = nnx_process(["experiment=tutorial", "trainer.epochs=10000000", "trainer.log_every=1000",
                        "tracking.plots=false", "tracking.log_model=false"], tmp_path, store)
    try:
        run = wait_for_running_run(store)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    client = client_for(store)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith(f"stopped by {signal.Signals(signum).name}")
    assert client.get_metric_history(run.info.run_id, "train/loss")  # flushed on the way out
    # what python -m nnx.run adds: Hydra's folder, the job's log, the checkpoint
    files = artifacts(client, run.info.run_id)
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.yaml",
            "logs/run.log", "checkpoints/last.npz", "error.txt"} <= files, files
    assert run.data.tags["nnx.output_dir"] == str(tmp_path / "run")
    assert "nnx.job_num" not in run.data.tags and "mlflow.parentRunId" not in run.data.tags


# -- what W&B and TensorBoard users expect: system metrics, the dataset, a quiet console ------
def quick_moons(store: str, *overrides: str) -> dict:
    cfg = compose(["dataset=moons", "dataset.n_samples=200", "dataset.n_test=50",
                   "model.hidden=[8]", "trainer.epochs=5", f"tracking.uri={store}",
                   "tracking.plots=false", "name=moons_sys", *overrides])
    return experiment.train(cfg)


def runs_newest_first(store: str, name: str) -> list:
    client = client_for(store)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def test_system_metrics_are_logged_unless_turned_off(store):
    # log_model on: it takes seconds, and MLflow's model logging ends the run for a moment
    # (set back to RUNNING at once), which a monitor must survive
    quick_moons(store, "tracking.system_metrics_seconds=0.2")
    run = runs_newest_first(store, "moons_sys")[0]
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage",
            "system/system_memory_usage_megabytes"} <= system, sorted(run.data.metrics)
    memory = client_for(store).get_metric_history(run.info.run_id,
                                                  "system/system_memory_usage_megabytes")
    assert all(m.value > 0 for m in memory) and [m.step for m in memory] == list(
        range(len(memory)))
    quick_moons(store, "tracking.system_metrics_seconds=0.2", "tracking.system_metrics=false")
    off = runs_newest_first(store, "moons_sys")[0]
    assert off.info.run_id != run.info.run_id and off.info.status == "FINISHED"
    assert not [k for k in off.data.metrics if k.startswith("system/")]
    assert "train/loss" in off.data.metrics


def test_the_dataset_is_a_run_input_per_split_with_a_digest_of_the_data(store):
    from nnx.mlflow_tracker import data_digest

    first = quick_moons(store, "tracking.log_model=false", "tracking.system_metrics=false")
    quick_moons(store, "tracking.log_model=false", "tracking.system_metrics=false")
    quick_moons(store, "tracking.log_model=false", "tracking.system_metrics=false",
                "dataset.noise=0.3")
    newest, same, oldest = runs_newest_first(store, "moons_sys")

    def inputs(run) -> dict:
        return {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
                for i in run.inputs.dataset_inputs}

    splits = inputs(oldest)
    assert set(splits) == {"training", "validation", "test"}
    assert {d.name for d in splits.values()} == {"moons"}
    ds = first["dataset"]
    test = splits["test"]
    assert test.digest == data_digest(ds.x_test, ds.y_test)
    assert '"features_shape": [50, 2]' in test.profile and '"targets_shape": [50]' in test.profile
    # 200 training samples, of which trainer.val_split=0.2 holds 40 out
    assert '"features_shape": [160, 2]' in splits["training"].profile
    assert '"features_shape": [40, 2]' in splits["validation"].profile
    assert {c: d.digest for c, d in inputs(same).items()} == {c: d.digest
                                                              for c, d in splits.items()}
    changed = inputs(newest)  # dataset.noise=0.3: other points, other digests
    assert all(changed[c].digest != splits[c].digest for c in splits)
    # the digest is of every value: one changed entry changes it
    x = ds.x_test.copy()
    x[-1, -1] += 1.0
    assert data_digest(x, ds.y_test) != test.digest


def test_mlflow_info_messages_stay_off_the_console_unless_verbose(store, capfd):
    capfd.readouterr()
    quick_moons(store, "tracking.system_metrics_seconds=0.2")  # logs a model: validation INFO
    quiet = capfd.readouterr()
    assert "INFO mlflow" not in quiet.out + quiet.err
    quick_moons(store, "tracking.system_metrics_seconds=0.2", "tracking.verbose=true")
    loud = capfd.readouterr()
    assert "INFO mlflow" in loud.out + loud.err
    quick_moons(store, "tracking.system_metrics_seconds=0.2")  # and quiet again after
    again = capfd.readouterr()
    assert "INFO mlflow" not in again.out + again.err
