"""``python -m nnx.compare`` and ``nnx.compare.runs_table`` over real runs in a temporary store."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NNX_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, store_template):
    """A store holding one basic-launcher sweep of three learning rates: (uri, parent run id)."""
    folder = tmp_path_factory.mktemp("compare")
    shutil.copy(store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    done = python(["-m", "nnx.run", "-m", "experiment=xor", "optimizer.lr=0.01,0.05,0.2",
                   "trainer.epochs=30", "tracking.plots=false", "tracking.log_model=false",
                   f"hydra.sweep.dir={folder / 'multirun'}"], ROOT, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xor")
    parent = client.search_runs([exp.experiment_id], "tags.`nnx.sweep` = 'true'")[0]
    return uri, parent.info.run_id


def test_tutorial_run_then_compare_shows_it(tmp_path, store_template):
    """The acceptance: ``python -m nnx.run experiment=tutorial``, then ``python -m nnx.compare``."""
    shutil.copy(store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = python(["-m", "nnx.run", "experiment=tutorial", "tracking.plots=false",
                   "tracking.log_model=false", f"hydra.run.dir={tmp_path / 'run'}"], ROOT, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = python(["-m", "nnx.compare"], tmp_path, uri)  # no arguments: the latest experiment
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "experiment tutorial (1 run)" in out
    for column in ("optimizer.name", "optimizer.lr", "model.hidden", "loss.name", "loss",
                   "objective"):
        assert column in out
    assert "FINISHED" in out and "sgd" in out and "sse" in out
    report = tmp_path / "outputs" / "compare" / "tutorial"
    table = pd.read_csv(report / "runs.csv", index_col="rank")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(table.loc[1, "run_id"])
    assert table.loc[1, "loss"] == pytest.approx(run.data.metrics["train/loss"])
    assert f"{run.data.metrics['train/loss']:.6f}"[:6] in out
    assert "| rank | run_id |" in (report / "runs.md").read_text()
    # the tutorial has no validation set (4 samples): the curves are of the training loss
    assert (report / "curves_loss.png").stat().st_size > 1000


def test_runs_table_of_a_sweep_is_sorted_best_first(swept, tmp_path):
    from nnx.compare import runs_table, write_report

    uri, parent = swept
    table = runs_table(sweep=parent, uri=uri)
    assert len(table) == 3 and list(table.index) == [1, 2, 3]
    assert table.attrs["varied"] == ["optimizer.lr"]
    assert sorted(table["optimizer.lr"]) == ["0.01", "0.05", "0.2"]
    assert list(table["objective"]) == sorted(table["objective"])  # loss: smaller is better
    assert set(table["status"]) == {"FINISHED"}
    assert {"loss", "accuracy", "test_loss"} <= set(table.columns)
    # by experiment name: the same three runs; the sweep's parent trains nothing and is left out
    by_name = runs_table(experiment="xor", uri=uri)
    assert sorted(by_name["run_id"]) == sorted(table["run_id"])
    # another metric, larger is better
    by_accuracy = runs_table(sweep=parent, uri=uri, metric="accuracy")
    assert list(by_accuracy["accuracy"]) == sorted(by_accuracy["accuracy"], reverse=True)
    written = write_report(table, tmp_path / "report", client=_client(uri))
    assert {p.name for p in written} == {"runs.csv", "runs.md", "objective_vs_params.png",
                                         "curves_loss.png"}  # xor: no validation set
    assert all(p.stat().st_size > 0 for p in written)


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def test_compare_command_for_a_sweep(swept, tmp_path, capsys):
    from nnx.compare import main

    uri, parent = swept
    assert main(["--sweep", parent, "--metric", "loss", "--uri", uri,
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "sorted by loss (ascending, best first)" in out and "optimizer.lr" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "runs.csv", "runs.md", "objective_vs_params.png", "curves_loss.png"}


def test_compare_errors_are_clear(swept, tmp_path):
    from nnx.compare import CompareError, runs_table

    uri, parent = swept
    with pytest.raises(CompareError, match="no experiment 'nope'.*experiments: .*xor"):
        runs_table(experiment="nope", uri=uri)
    with pytest.raises(CompareError, match="no run has a metric 'nope'"):
        runs_table(sweep=parent, uri=uri, metric="nope")
    done = python(["-m", "nnx.compare", "--uri", f"sqlite:///{tmp_path / 'none.db'}"],
                  tmp_path, "")
    assert done.returncode == 2
    assert "there is no MLflow store at" in done.stderr and "Traceback" not in done.stderr


# -- runs that did not finish: built in a real store with MLflow's own client -----------------
def logged_runs(uri: str, experiment: str, runs: list[tuple[str, dict, dict]]) -> dict:
    """Create ``runs``: (status, params, metrics) each, oldest first; returns name -> run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(experiment)
    ids = {}
    for i, (status, params, metrics) in enumerate(runs):
        run = client.create_run(exp, run_name=f"r{i}", start_time=1000 + i,
                                tags={"nnx.objective": "val_loss"})
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value, step=1)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        ids[f"r{i}"] = run.info.run_id
    return ids


def test_unfinished_runs_follow_the_finished_ones_by_hand(store):
    from nnx.compare import runs_table, to_markdown

    # r1 was killed with a better loss than any finished run; r2 failed before any metric;
    # r4 still runs. The finished ones come first, best first; r3 has no objective.
    logged_runs(store, "mixed", [
        ("FINISHED", {"optimizer.lr": "0.1"}, {"objective": 0.5, "loss": 0.5}),
        ("KILLED", {"optimizer.lr": "0.2"}, {"loss": 0.01}),
        ("FAILED", {"optimizer.lr": "0.3"}, {}),
        ("FINISHED", {"optimizer.lr": "0.4"}, {"loss": 0.7}),
        ("RUNNING", {"optimizer.lr": "0.5"}, {"loss": 0.2}),
        ("FINISHED", {"optimizer.lr": "0.6"}, {"objective": 0.3, "loss": 0.9}),
    ])
    table = runs_table(experiment="mixed", uri=store)
    assert table.attrs["metric"] == "objective"
    assert list(table["run_name"]) == ["r5", "r0", "r3", "r1", "r2", "r4"]  # no objective: as
    assert list(table["status"]) == ["FINISHED"] * 3 + ["KILLED", "FAILED", "RUNNING"]  # started
    assert list(table["objective"][:2]) == [0.3, 0.5] and table["objective"][2:].isna().all()
    by_loss = runs_table(experiment="mixed", uri=store, metric="loss")
    assert list(by_loss["run_name"]) == ["r0", "r3", "r5", "r1", "r4", "r2"]
    assert list(by_loss["loss"][:5]) == [0.5, 0.7, 0.9, 0.01, 0.2]
    assert pd.isna(by_loss["loss"].iloc[5])  # the failed run has no loss: an empty cell
    assert "| 6 | " in to_markdown(by_loss) and "| FAILED |" in to_markdown(by_loss)


def test_compare_order_property_over_random_statuses(store):
    import numpy as np

    from nnx.compare import runs_table

    rng = np.random.default_rng(20)
    statuses = ["FINISHED", "FAILED", "KILLED", "RUNNING"]
    runs = []
    for i in range(14):
        status = statuses[int(rng.integers(0, 4))] if i > 1 else "FINISHED"
        metrics = {} if rng.random() < 0.25 else {"val_accuracy": float(rng.integers(0, 20))}
        runs.append((status, {"seed": str(i)}, metrics))  # whole numbers: ties happen
    ids = logged_runs(store, "random", runs)
    table = runs_table(experiment="random", uri=store, metric="val_accuracy")
    assert sorted(table["run_id"]) == sorted(ids.values())  # every run, once
    finished = list(table["status"] == "FINISHED")
    assert finished == sorted(finished, reverse=True)  # finished ones first
    expected = {ids[f"r{i}"]: m.get("val_accuracy") for i, (_, _, m) in enumerate(runs)}
    for part in (table[table["status"] == "FINISHED"], table[table["status"] != "FINISHED"]):
        values = [expected[r] for r in part["run_id"]]
        scored = [v for v in values if v is not None]
        assert scored == sorted(scored, reverse=True)  # accuracy: larger is better
        assert values == scored + [None] * (len(values) - len(scored))  # missing ones last
        ties = [r for r, v in zip(part["run_id"], values) if v is not None]
        for a, b in itertools.pairwise(ties):  # equal values keep the order the runs started
            if expected[a] == expected[b]:
                assert list(ids.values()).index(a) < list(ids.values()).index(b)


# -- stores of either age: flat keys (before the metric sections) and sectioned keys ----------
def log_history(client, experiment_id: str, name: str, start: int, params: dict,
                metrics: dict[str, list[float]]) -> str:
    """A FINISHED run logged with MLflow's own client, each metric's values at steps 1, 2, ..."""
    run = client.create_run(experiment_id, run_name=name, start_time=start,
                            tags={"nnx.objective": "val_loss"})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    for key, values in metrics.items():
        for step, value in enumerate(values, 1):
            client.log_metric(run.info.run_id, key, value, step=step)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_a_store_written_before_the_metric_sections_still_compares(store, tmp_path, capsys):
    """An old run (flat keys ``loss``, ``val_loss``, the param ``objective``) beside a new one
    (``train/loss``, ``val/loss``, the param ``objective_name``): one table, one metric each."""
    from mlflow.tracking import MlflowClient

    from nnx.compare import curves, main, runs_table, write_report

    client = MlflowClient(store)
    exp = client.create_experiment("ages")
    log_history(client, exp, "old", 1000, {"optimizer.lr": "0.1", "objective": "val_loss"},
                {"loss": [0.9, 0.5], "val_loss": [1.0, 0.6], "objective": [0.6],
                 "test_loss": [0.65], "layer0.grad_norm": [2.0, 1.0]})
    log_history(client, exp, "new", 2000, {"optimizer.lr": "0.2", "objective_name": "val_loss"},
                {"train/loss": [0.8, 0.4], "val/loss": [0.9, 0.3], "objective": [0.3],
                 "test/loss": [0.35], "diagnostics/layer0.grad_norm": [3.0, 1.5],
                 "system/cpu_utilization_percentage": [12.0]})
    table = runs_table(experiment="ages", uri=store)
    assert table.attrs["metric"] == "objective"
    assert list(table["run_name"]) == ["new", "old"]
    assert list(table["objective"]) == [0.3, 0.6]
    assert list(table["loss"]) == [0.4, 0.5] and list(table["val_loss"]) == [0.3, 0.6]
    assert list(table["test_loss"]) == [0.35, 0.65]
    # objective (old) and objective_name (new) are one param, the same in both: not varied
    assert table.attrs["varied"] == ["optimizer.lr"]
    everything = runs_table(experiment="ages", uri=store, all_params=True)
    assert list(everything["objective_name"]) == ["val_loss", "val_loss"]
    # --metric by the user's name or by the stored key
    for metric in ("val_loss", "val/loss"):
        by = runs_table(experiment="ages", uri=store, metric=metric)
        assert by.attrs["metric"] == "val_loss" and list(by["run_name"]) == ["new", "old"]
    found = curves(client, table, "val_loss")
    assert {k: list(v) for k, (_, v) in found.items()} == {"1. new": [0.9, 0.3],
                                                          "2. old": [1.0, 0.6]}
    found = curves(client, table, "layer0.grad_norm")
    assert {k: list(v) for k, (_, v) in found.items()} == {"1. new": [3.0, 1.5],
                                                          "2. old": [2.0, 1.0]}
    written = write_report(table, tmp_path / "report", client)
    assert {p.name for p in written} == {"runs.csv", "runs.md", "objective_vs_params.png",
                                         "curves_val_loss.png"}
    assert main(["--experiment", "ages", "--uri", store, "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "experiment ages (2 runs)" in out and "sorted by objective (ascending" in out


def test_params_that_do_not_change_the_training_are_not_varied(store):
    """The tutorial study's reproduce run prints its predictions, its sweep does not:
    ``print_predictions`` differs, but is no parameter of what was trained."""
    from nnx.compare import runs_table

    logged_runs(store, "printing", [
        ("FINISHED", {"optimizer.lr": "0.1", "print_predictions": "true", "seed": "0"},
         {"objective": 0.5}),
        ("FINISHED", {"optimizer.lr": "0.2", "print_predictions": "false", "seed": "0"},
         {"objective": 0.4}),
    ])
    assert runs_table(experiment="printing", uri=store).attrs["varied"] == ["optimizer.lr"]


def test_a_sweeps_label_says_sweep_once(swept):
    from nnx.compare import runs_table

    uri, parent = swept
    label = runs_table(sweep=parent, uri=uri).attrs["label"]
    assert label.startswith("sweep ") and "sweep sweep" not in label


def test_runs_that_logged_no_metric_yet_still_show_unless_a_metric_is_asked_for(store):
    from nnx.compare import CompareError, runs_table

    logged_runs(store, "fresh", [("RUNNING", {"optimizer.lr": "0.1"}, {}),
                                 ("KILLED", {"optimizer.lr": "0.2"}, {})])
    table = runs_table(experiment="fresh", uri=store)  # default metric: loss, which none has
    assert list(table["status"]) == ["RUNNING", "KILLED"] and table["loss"].isna().all()
    with pytest.raises(CompareError, match="--metric: no run has a metric 'val_loss'"):
        runs_table(experiment="fresh", uri=store, metric="val_loss")
