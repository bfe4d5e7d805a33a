"""``python -m nnx.compare``: the runs of an experiment or a sweep as one table, best first.

    python -m nnx.compare                              # the latest experiment in the default store
    python -m nnx.compare --experiment xor             # every run of experiment "xor"
    python -m nnx.compare --sweep <parent run id>      # the jobs of one sweep
    python -m nnx.compare --metric val_accuracy --uri http://127.0.0.1:5000 --out report/

Prints the runs with the params that vary between them and their final metrics, sorted by
``--metric`` (default: the runs' objective), finished runs first (a run that was killed,
failed or is still running follows them, marked by its status); writes ``runs.csv`` and
``runs.md``, the metric against every varied param (``objective_vs_params.png``) and the
learning curves of the best runs overlaid (``curves_<metric>.png``) into ``--out``. The table
alone, as a library call: ``nnx.compare.runs_table(experiment="xor")``.

Metrics go by the names users write (``val_loss``; ``--metric val/loss``, the stored key, is
taken too): a run's stored keys (``val/loss``) are read back through ``nnx.metrics.user_name``,
and a store written before the metric sections (flat ``val_loss``) compares the same way.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnx import metrics as M
from nnx.heartbeat import is_stale

# Metrics shown in the table (when the runs have them), after the sort metric.
SHOWN_METRICS = ("objective", "loss", "accuracy", "val_loss", "val_accuracy", "test_loss",
                 "test_accuracy", "rmse", "val_rmse", "test_rmse", "r2", "val_r2", "test_r2")
# Params shown when none varies (a single run), so the table still says what was trained.
KEY_PARAMS = ("dataset.name", "model.hidden", "model.activation", "loss.name", "optimizer.name",
              "optimizer.lr", "schedule.name", "trainer.epochs", "trainer.batch_size", "seed")
# Params that differ between runs without saying anything about the training.
IGNORED_PARAMS = ("trainer.checkpoint_dir", "trainer.progress", "trainer.resume",
                  "print_predictions")


def run_params(run) -> dict[str, str]:
    """A run's params, the objective's name as ``objective_name`` in stores of either age."""
    params = dict(run.data.params)
    if "objective" in params:  # written before the param was renamed
        params.setdefault(M.OBJECTIVE_PARAM, params.pop("objective"))
    return params


class CompareError(LookupError):
    """Nothing to compare: an unknown experiment or sweep, or no runs."""


def _client(uri: str | None):
    from nnx.store import check_server, is_http, resolve_uri, sqlite_path

    uri = resolve_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise CompareError(f"there is no MLflow store at {db}: run something first "
                           "(python -m nnx.run ...) or name one with --uri")
    if is_http(uri):
        check_server(uri)
    from mlflow.tracking import MlflowClient  # after the checks: importing it takes seconds

    return MlflowClient(uri), uri


def _latest_experiment(client):
    """The experiment whose newest run started last."""
    best, newest = None, -1
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], max_results=1,
                                  order_by=["attributes.start_time DESC"])
        if runs and runs[0].info.start_time > newest:
            best, newest = exp, runs[0].info.start_time
    if best is None:
        raise CompareError("the store has no runs yet: run something first (python -m nnx.run)")
    return best


def _search_all(client, experiment_id: str, filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_runs(experiment: str | None = None, sweep: str | None = None, uri: str | None = None):
    """(runs, label, default metric, direction, client) for an experiment, a sweep or neither."""
    from mlflow.exceptions import MlflowException

    client, uri = _client(uri)
    direction = None
    if sweep:
        try:
            parent = client.get_run(sweep)
        except MlflowException as error:
            raise CompareError(f"--sweep: there is no run {sweep} in {uri}") from error
        runs = _search_all(client, parent.info.experiment_id,
                           f"tags.mlflow.parentRunId = '{sweep}'")
        if not runs:
            raise CompareError(f"--sweep: run {sweep} ({parent.info.run_name}) has no child runs;"
                               " is it a sweep's parent run?")
        name = parent.info.run_name or sweep
        # A parent's name says "sweep" itself ("sweep 2026-12-01 10:00:00"): not twice.
        label = name if name.lower().startswith("sweep") else f"sweep {name}"
        direction = parent.data.tags.get("nnx.direction") or None
    else:
        if experiment:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                names = sorted(e.name for e in client.search_experiments())
                raise CompareError(f"--experiment: no experiment {experiment!r} in {uri}; "
                                   f"experiments: {', '.join(names) or 'none'}")
        else:
            exp = _latest_experiment(client)
        runs = [r for r in _search_all(client, exp.experiment_id)
                if r.data.tags.get("nnx.sweep") != "true"]  # a sweep's parent trains nothing
        if not runs:
            raise CompareError(f"experiment {exp.name!r} in {uri} has no training runs")
        label = f"experiment {exp.name}"
    objectives = {r.data.tags.get("nnx.objective") for r in runs} - {None}
    metric = (M.OBJECTIVE if any(M.OBJECTIVE in M.user_metrics(r.data.metrics) for r in runs)
              else "loss")
    if direction is None and len(objectives) == 1:
        direction = M.direction(objectives.pop())
    return runs, label, metric, direction, client


def _table(runs, metric: str, direction: str | None, all_params: bool,
           required: bool = True) -> pd.DataFrame:
    """The table ``runs_table`` describes; a ``metric`` no run has is an error when the user
    asked for it (``required``), an empty column when it is the default (runs that have logged
    nothing yet, e.g. killed before their first flush, still show)."""
    metric = M.user_name(metric)
    params = pd.DataFrame([run_params(r) for r in runs])
    params = params.drop(columns=[c for c in IGNORED_PARAMS if c in params], errors="ignore")
    # Varied: two or more distinct values. A param that only some runs have (optimizer.momentum
    # beside optimizer=adam,sgd) follows from another that varies, and is left out.
    varied = [c for c in params.columns if params[c].dropna().astype(str).nunique() > 1]
    if all_params:
        shown_params = list(params.columns)
    else:
        shown_params = varied or [c for c in KEY_PARAMS if c in params.columns]
    rows = []
    now = time.time()
    for run in runs:
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name,
               "status": "PRUNED" if run.data.tags.get("nnx.trial_state") == "pruned"
               # RUNNING, but its heartbeat stopped: the process died (nnx.runs reap)
               else "STALE" if is_stale(run, now)
               else run.info.status}  # an Optuna trial stopped early: finished, not a failure
        row.update({p: run_params(run).get(p) for p in shown_params})
        metrics = M.user_metrics(run.data.metrics)
        for key in (metric, *SHOWN_METRICS):
            if key in metrics and key not in row:
                row[key] = metrics[key]
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric not in table and not required:
        table[metric] = np.nan
    if metric not in table:
        raise CompareError(f"--metric: no run has a metric {metric!r}; metrics: "
                           + ", ".join(sorted({k for r in runs
                                               for k in M.user_metrics(r.data.metrics)})))
    # Best first among the finished runs; then the runs that did not finish (running, killed,
    # failed), whose metrics are those of an epoch part-way: not comparable with a finished
    # run's, however good. In each group, runs without the metric come last.
    ascending = not M.higher_is_better(metric, direction)
    finished = table["status"] == "FINISHED"
    groups = (table[finished], table[~finished])
    table = pd.concat([group.sort_values(metric, ascending=ascending, na_position="last",
                                         kind="stable") for group in groups])
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    table.attrs.update({"metric": metric, "varied": varied, "ascending": ascending})
    return table


def runs_table(experiment: str | None = None, sweep: str | None = None, metric: str | None = None,
               uri: str | None = None, all_params: bool = False) -> pd.DataFrame:
    """The runs of ``experiment`` (a name) or ``sweep`` (a parent run id), or of the latest
    experiment when neither is given, in the store ``uri`` (default: the project's store).

    Columns: run_id, run_name, status, the params that vary between runs (all of them with
    ``all_params``), the sort metric and the usual final metrics. Rows: the FINISHED runs best
    first by ``metric`` (default: ``objective``, each run's configured objective), then the
    others (RUNNING, KILLED, FAILED) in the same order; a run without the metric is last of
    its group, with NaN there. ``table.attrs`` holds
    ``metric``, ``varied`` (the varied param names), ``label`` and ``uri``.
    """
    runs, label, default, direction, client = find_runs(experiment, sweep, uri)
    table = _table(runs, metric or default, direction, all_params, required=metric is not None)
    table.attrs.update({"label": label, "uri": client.tracking_uri})
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no optional dependency)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.6g}"
        return "" if value is None else str(value).replace("|", "\\|")

    header = ["rank", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, row in table.iterrows():
        lines.append("| " + " | ".join([str(rank), *(cell(v) for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def curves(client, table: pd.DataFrame, metric: str, limit: int = 12) -> dict:
    """label -> (epochs, values) of ``metric`` for the best ``limit`` runs in ``table``, from
    its stored key (``val/loss``), or its flat name in a store older than the sections."""
    out = {}
    for rank, row in table.head(limit).iterrows():
        for key in M.stored_keys(metric):
            history = client.get_metric_history(row["run_id"], key)
            if history:
                break
        if history:
            steps = np.array([m.step for m in history])
            values = np.array([m.value for m in history])
            order = np.argsort(steps, kind="stable")
            out[f"{rank}. {row['run_name']}"] = (steps[order], values[order])
    return out


def write_report(table: pd.DataFrame, out: str | Path, client=None,
                 draw: bool = True) -> list[Path]:
    """runs.csv, runs.md and (``draw``) objective_vs_params.png and curves_<metric>.png
    (the latter needs ``client``) into ``out``."""
    from nnx import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "runs.csv", out / "runs.md"]
    table.to_csv(written[0])
    written[1].write_text(f"# {table.attrs.get('label', 'runs')}\n\n" + to_markdown(table))
    if not draw:
        return written
    metric, varied = table.attrs["metric"], table.attrs.get("varied", [])
    scored = table[table[metric].notna()]
    if varied and len(scored) > 1:
        written.append(plots.objective_vs_params(scored, metric, varied,
                                                 out / "objective_vs_params.png",
                                                 table.attrs.get("label", "")))
    if client is not None:
        for curve_metric in ("val_loss", "loss"):
            found = curves(client, table, curve_metric)
            if found:
                written.append(plots.overlay_curves(found, curve_metric,
                                                    out / f"curves_{curve_metric}.png",
                                                    table.attrs.get("label", "")))
                break
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnx.compare",
        description="Compare MLflow runs of an experiment or a sweep: a table, best first, "
                    "with CSV, Markdown and plots.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--experiment", help="an experiment name (default: the latest one)")
    which.add_argument("--sweep", help="a sweep's parent run id: compare its jobs")
    parser.add_argument("--metric", help="sort by this metric (default: objective)")
    parser.add_argument("--uri", help="tracking URI (default: $NNX_TRACKING_URI, else "
                                      "./mlflow.db, or the checkout's inside an nnx checkout)")
    parser.add_argument("--out", help="folder for runs.csv, runs.md and the plots "
                                      "(default: outputs/compare/<experiment or sweep>)")
    parser.add_argument("--all-params", action="store_true",
                        help="show every param, not only those that vary")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    try:
        runs, label, default, direction, client = find_runs(args.experiment, args.sweep, args.uri)
        table = _table(runs, args.metric or default, direction, args.all_params,
                       required=args.metric is not None)
    except (CompareError, ConnectionError) as error:
        print(f"nnx.compare: error: {error}", file=sys.stderr)
        return 2
    table.attrs.update({"label": label, "uri": client.tracking_uri})
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in label.split(" ", 1)[-1])
    out = Path(args.out) if args.out else Path("outputs") / "compare" / slug
    written = write_report(table, out, client, draw=not args.no_plots)
    order = "ascending" if table.attrs["ascending"] else "descending"
    runs = f"{len(table)} run{'' if len(table) == 1 else 's'}"
    print(f"{label} ({runs}) in {table.attrs['uri']}, sorted by {table.attrs['metric']} "
          f"({order}, best first)")
    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 40):
        print(table.drop(columns=["run_id"]).to_string())
    print("best run: " + str(table.iloc[0]["run_id"]))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
