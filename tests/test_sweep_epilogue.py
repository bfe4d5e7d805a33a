"""The end of a sweep: the epilogue in the terminal, the names of its runs, the parent run as a
report. Real ``python -m nnx.run -m`` processes against a real sqlite store in tmp_path."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnx import sweep_table as T
from nnx.run_names import child_name, parent_name, short_value, single_name
from nnx.ui_address import ui_address, ui_line

SPIRALS = ["experiment=spirals", "trainer.epochs=4", "tracking.log_model=false",
           "tracking.plots=[boundary]"]
TIME = r"\d\d:\d\d:\d\d"


def store_runs(tmp_path: Path):
    """(client, experiment id, parent, children) of the only sweep in tmp_path's store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("nnx.sweep") == "true"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return client, parents[0].info.experiment_id, parents[0], children


def table_rows(out: str) -> list[list[str]]:
    """The epilogue's table rows (split on whitespace), rank first."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank  job"))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("best:"):
            return rows
        rows.append(line.split())
    raise AssertionError("no 'best:' line after the table")


def test_a_4_job_joblib_sweep_ends_with_the_epilogue(nnx_run, tmp_path):
    done = nnx_run(["-m", *SPIRALS, "optimizer=sgd,adam", "model.activation=tanh,relu",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    client, exp, parent, children = store_runs(tmp_path)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    parent_id = parent.info.run_id
    # each parallel job printed one line when it ended, and no summary of its own
    for child in children:
        job, params = child.data.tags["nnx.job_num"], child.data.params
        value = child.data.metrics["objective"]
        assert (f"job #{job} optimizer={params['optimizer.name']} "
                f"model.activation={params['model.activation']}: val_loss {value:.4g} "
                "(FINISHED)") in out.splitlines()
    assert "objective (val_loss)" not in out
    # the ranked table: best first by the objective the store holds
    assert re.search(r"^sweep 'spirals': 4 jobs, 4 finished; objective val_loss \(minimize\)$",
                     out, re.MULTILINE)
    ranked = sorted(children, key=lambda c: c.data.metrics["objective"])
    rows = table_rows(out)
    assert [r[1] for r in rows] == [f"#{c.data.tags['nnx.job_num']}" for c in ranked]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and all(r[-1] == "FINISHED" for r in rows)
    for row, child in zip(rows, ranked):
        assert row[2:4] == [child.data.params["optimizer.name"],
                            child.data.params["model.activation"]]
        assert float(row[4]) == pytest.approx(child.data.metrics["objective"], rel=1e-3)
    best = ranked[0]
    assert f"best: {best.info.run_name}: val_loss {best.data.metrics['objective']:.6g}" in out
    # the parent run id, the compare command (which works), the UI address
    assert f"parent run: {parent_id}" in out.splitlines()
    command = next(line for line in out.splitlines() if line.startswith("compare: "))
    assert command == f"compare: python -m nnx.compare --sweep {parent_id}"
    env = {**os.environ, "NNX_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    compared = subprocess.run([sys.executable, *shlex.split(command[len("compare: "):])[1:],
                               "--no-plots"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
    assert compared.returncode == 0, compared.stderr
    assert f"best run: {best.info.run_id}" in compared.stdout
    assert (f"MLflow UI: http://127.0.0.1:5000/#/experiments/{exp}/runs/{parent_id} (start it: "
            f"mlflow ui --port 5000 --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'})") \
        in out.splitlines()
    # names: children by what differs, the parent by the experiment and the time
    for child in children:
        assert child.info.run_name == (f"#{child.data.tags['nnx.job_num']} "
                                       f"{child.data.params['optimizer.name']} "
                                       f"{child.data.params['model.activation']}")
    assert re.fullmatch(f"sweep spirals {TIME}", parent.info.run_name)
    # the parent as a report: the ranked table with links, the best run's link, the plots
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Sweep of `spirals`**: 4 jobs, objective `val_loss` (minimize).\n")
    link = f"#/experiments/{exp}/runs/{best.info.run_id}"
    assert f"Best run: [{best.info.run_name}]({link}): val_loss **" in note
    assert ("| rank | job | optimizer | model.activation | val_loss | val_accuracy | "
            "test_accuracy | loss | status |") in note
    assert f"| 1 | [{best.info.run_name}]({link}) | " in note
    assert f"`python -m nnx.compare --sweep {parent_id}`" in note
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"objective_vs_params.png", "curves_val_loss.png", "decision_boundaries.png",
            "runs.csv", "runs.md"} <= artifacts


def test_a_failed_job_is_ranked_last_and_marked(nnx_run, tmp_path):
    # job 0 trains; job 1 diverges, which stops the basic launcher's sweep: the epilogue still
    # comes, from the exit hook, with the failed job last
    done = nnx_run(["-m", "experiment=xor", "optimizer.lr=0.05,1e200", "loss=mse",
                    "model.output_activation=identity", "debug=default",
                    "tracking.plots=false", "tracking.log_model=false"])
    assert done.returncode != 0
    rows = table_rows(done.stdout)
    assert [(r[0], r[1], r[-1]) for r in rows] == [("1", "#0", "FINISHED"), ("2", "#1", "FAILED")]
    assert "sweep 'xor': 2 jobs, 1 finished, 1 failed" in done.stdout
    _, _, parent, children = store_runs(tmp_path)
    finished = next(c for c in children if c.info.status == "FINISHED")
    assert f"best: {finished.info.run_name}: " in done.stdout
    assert f"parent run: {parent.info.run_id}" in done.stdout
    note = parent.data.tags["mlflow.note.content"]
    assert re.search(r"^\| 2 \| \[#1 lr=1e\+200\]\(#/experiments/\d+/runs/\w+\) \| 1e\+200 \| "
                     r".*\| FAILED \|$", note, re.MULTILINE), note


def test_an_untracked_sweep_prints_its_ranked_table(nnx_run, tmp_path):
    done = nnx_run(["-m", "experiment=spirals", "trainer.epochs=3", "tracking=none",
                    "model.activation=tanh,relu", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
    results = [json.loads((tmp_path / "multirun" / str(n) / "result.json").read_text())
               for n in range(2)]
    ranked = sorted(results, key=lambda r: r["objective"])
    rows = table_rows(done.stdout)
    assert [r[1] for r in rows] == [f"#{r['job']}" for r in ranked]
    assert [float(r[3]) for r in rows] == pytest.approx([r["objective"] for r in ranked],
                                                        rel=1e-3)
    assert "parent run:" not in done.stdout and "compare:" not in done.stdout


def test_optuna_trials_are_named_by_rounded_values(nnx_run, tmp_path):
    done = nnx_run(["-m", "experiment=spirals", "hparams_search=optuna",
                    "hydra.sweeper.n_trials=2", "trainer.epochs=2", "tracking.plots=false",
                    "tracking.log_model=false"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _, _, parent, children = store_runs(tmp_path)
    for child in children:
        lr = float(child.data.params["optimizer.lr"])
        assert child.info.run_name.startswith(f"#{child.data.tags['trial']} lr={lr:.3g} ")
        assert len(child.info.run_name) < 60
    # one epilogue: the study's line above the common table
    assert "study 'spirals': trials 0-1 in this sweep: 2 complete" in done.stdout
    assert len(table_rows(done.stdout)) == 2
    note = parent.data.tags["mlflow.note.content"]
    assert "| rank | job |" in note and "**Optuna study `spirals`**" in note


def test_a_single_tracked_run_is_named_and_prints_its_ui_address(nnx_run, tmp_path):
    done = nnx_run(["experiment=xor", "debug=default", "tracking.plots=false",
                    "tracking.log_model=false"])
    assert done.returncode == 0, done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("xor")
    (run,) = client.search_runs([exp.experiment_id])
    assert re.fullmatch(f"xor {TIME}", run.info.run_name)
    assert (f"MLflow UI: http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs/"
            f"{run.info.run_id} (start it: ") in done.stdout


# -- the pieces, without processes ---------------------------------------------------------
@pytest.mark.parametrize("key,value,shown", [
    ("optimizer", "adam", "adam"),
    ("optimizer.lr", "0.04194198868307857", "lr=0.0419"),
    ("optimizer.weight_decay", "1.14215e-5", "weight_decay=1.14e-05"),
    ("trainer.epochs", "10", "epochs=10"),
    ("model.hidden", "[64,32]", "[64,32]"),
    ("optimizer.lr", "1e200", "lr=1e+200"),
])
def test_short_values(key, value, shown):
    assert short_value(key, value) == shown


def test_names():
    swept = {"optimizer", "model.activation", "optimizer.lr", "optimizer.weight_decay"}
    assert child_name(3, ["optimizer=adam", "model.activation=relu", "trainer.epochs=3"],
                      swept) == "#3 adam relu"
    assert child_name(19, ["optimizer.lr=0.04194198868307857",
                           "optimizer.weight_decay=1.14215e-5"], swept) \
        == "#19 lr=0.0419 weight_decay=1.14e-05"
    assert parent_name("spirals", 0.0).startswith("sweep spirals ")
    assert re.fullmatch(f"spirals {TIME}", single_name("spirals"))


def test_ui_addresses():
    assert ui_address("sqlite:////x/mlflow.db", "3", "ab") == \
        "http://127.0.0.1:5000/#/experiments/3/runs/ab"
    assert ui_address("https://mlflow.example.org/", "3", "ab") == \
        "https://mlflow.example.org/#/experiments/3/runs/ab"
    assert ui_line("http://127.0.0.1:5001", "3") == \
        "MLflow UI: http://127.0.0.1:5001/#/experiments/3"
    assert ui_line("sqlite:////x/mlflow.db", "3", "ab").endswith(
        "(start it: mlflow ui --port 5000 --backend-store-uri sqlite:////x/mlflow.db)")


def test_make_ui_is_named_only_for_the_store_of_a_checkout(tmp_path, monkeypatch):
    """`make ui` serves the checkout's mlflow.db; from a folder outside any checkout the
    default store is that folder's, and there is no Makefile: the line says `mlflow ui`."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root / "experiments")
    assert ui_line(f"sqlite:///{root / 'mlflow.db'}", "1", "ab").endswith("(make ui starts it)")
    monkeypatch.chdir(tmp_path)
    assert ui_line(f"sqlite:///{tmp_path / 'mlflow.db'}", "1", "ab").endswith(
        f"(start it: mlflow ui --port 5000 --backend-store-uri sqlite:///{tmp_path}/mlflow.db)")


def test_rank_puts_scored_then_pruned_then_failed():
    rows = [T.Row(0, [], "FAILED"), T.Row(1, [], "FINISHED", 0.5), T.Row(2, [], "PRUNED", 0.1),
            T.Row(3, [], "FINISHED", 0.2), T.Row(4, [], "FINISHED", math.nan),
            T.Row(5, [], "KILLED", 0.01)]
    assert [r.job for r in T.rank(rows, "minimize")] == [3, 1, 4, 2, 0, 5]
    assert [r.job for r in T.rank(rows, "maximize")] == [1, 3, 4, 2, 0, 5]
