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
    assert table.loc[1, "loss"] == pytest.approx(run.data.metrics["loss"])
    assert f"{run.data.metrics['loss']:.6f}"[:6] in out
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
