"""A sweep's jobs as one ranked table: for the terminal (the epilogue) and as Markdown (the
parent run's description in the MLflow UI).

    rows = rows_from_runs(children, swept)              # a tracked sweep: its child runs
    rows = rows_from_folders(sweep_dir, swept, since)   # tracking=none: the jobs' result.json
    ranked = rank(rows, direction)
    print(text_table(ranked, objective))

Ranked: the finished jobs best first by their objective, then finished jobs without one, then
pruned trials (stopped early: their value is not a result), then jobs that failed, were killed
or never ended, in job order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from nnx import metrics as M
from nnx.run_names import _number, varied_values

RESULT_FILE = "result.json"  # what each job writes into its Hydra output folder (nnx.run)
# Metrics shown after the objective, when the jobs have them: at most MAX_METRICS of them.
KEY_METRICS = ("val_loss", "val_accuracy", "test_accuracy", "loss", "accuracy", "val_rmse",
               "test_rmse", "val_r2")
MAX_METRICS = 3


@dataclass
class Row:
    """One job of a sweep."""

    job: int | None  # the job's number (an Optuna trial's number in an Optuna sweep)
    values: list[tuple[str, str]]  # (key, value) of the overrides the sweep varies
    status: str  # FINISHED, PRUNED, FAILED, KILLED, RUNNING
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    name: str = ""
    error: str = ""

    @property
    def scored(self) -> bool:
        return self.status == "FINISHED" and self.objective is not None \
            and math.isfinite(self.objective)


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _job_number(text) -> int | None:
    return int(text) if str(text).isdigit() else None


def rows_from_runs(children, swept) -> list[Row]:
    """Rows of a tracked sweep's child runs (MLflow ``Run`` objects)."""
    rows = []
    for run in children:
        # The users' names (val_loss), whichever key scheme the store has (val/loss or val_loss).
        tags, metrics = run.data.tags, M.user_metrics(run.data.metrics)
        status = "PRUNED" if tags.get("nnx.trial_state") == "pruned" else run.info.status
        overrides = json.loads(tags.get("nnx.overrides") or "[]")
        rows.append(Row(job=_job_number(tags.get("trial", tags.get("nnx.job_num", ""))),
                        values=varied_values(overrides, swept), status=status,
                        objective=_finite(metrics.get("objective")),
                        metrics={k: v for k, v in metrics.items() if k in KEY_METRICS},
                        run_id=run.info.run_id, name=run.info.run_name or "",
                        error=tags.get("error", "")))
    return rows


def rows_from_folders(sweep_dir: str | Path, swept, since: float = 0.0) -> list[Row]:
    """Rows of an untracked sweep, from its jobs' folders: ``.hydra/overrides.yaml`` says what
    each job ran, ``result.json`` how it ended (no file: the job died before it could write
    it). Folders older than ``since`` (a time.time()) belong to an earlier sweep."""
    import yaml

    rows = []
    for folder in sorted(Path(sweep_dir).iterdir() if Path(sweep_dir).is_dir() else []):
        overrides_file = folder / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file() or overrides_file.stat().st_mtime < since - 1:
            continue
        overrides = [str(o) for o in yaml.safe_load(overrides_file.read_text()) or []]
        result_file = folder / RESULT_FILE
        try:
            result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        except ValueError:
            result = {}
        metrics = {k: v for k, v in (result.get("metrics") or {}).items() if k in KEY_METRICS}
        number = result.get("job", _job_number(folder.name))
        rows.append(Row(job=number, values=varied_values(overrides, swept),
                        status=result.get("status", "KILLED"),
                        objective=_finite(result.get("objective")), metrics=metrics,
                        run_id=result.get("run_id"), error=result.get("error", "")
                        or ("" if result else "the job left no result")))
    return rows


def rank(rows: list[Row], direction: str = "minimize") -> list[Row]:
    """Best first (see the module docstring); ties keep the job order."""
    sign = -1.0 if str(direction).startswith("max") else 1.0

    def key(row: Row):
        group = 0 if row.scored else 1 if row.status == "FINISHED" else \
            2 if row.status == "PRUNED" else 3
        value = sign * row.objective if group in (0, 2) and row.objective is not None else 0.0
        return group, value, row.job if row.job is not None else math.inf

    return sorted(rows, key=key)


def shown_metrics(rows: list[Row], objective: str) -> list[str]:
    """The key metrics the jobs have, besides the objective's own."""
    have = {k for r in rows for k in r.metrics}
    return [k for k in KEY_METRICS if k in have and k != objective][:MAX_METRICS]


def _value(text: str) -> str:
    number = _number(str(text))
    return f"{number:.3g}" if number is not None and not float(number).is_integer() else str(text)


def _metric(value) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4g}"


def columns(rows: list[Row], objective: str) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the ranked rows: rank, job, varied params, objective, metrics,
    status."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k, _ in row.values if k not in keys]
    metrics = shown_metrics(rows, objective)
    header = ["rank", "job", *keys, objective, *metrics, "status"]
    cells = []
    for i, row in enumerate(rows, 1):
        values = dict(row.values)
        cells.append([str(i), "" if row.job is None else f"#{row.job}",
                      *(_value(values[k]) if k in values else "" for k in keys),
                      _metric(row.objective), *(_metric(row.metrics.get(k)) for k in metrics),
                      row.status])
    return header, cells


def text_table(rows: list[Row], objective: str) -> str:
    """The ranked rows as aligned columns (numbers right-aligned)."""
    header, cells = columns(rows, objective)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    numeric = {i for i, h in enumerate(header) if i == 0 or h == objective
               or h in KEY_METRICS}

    def line(parts):
        return "  ".join(p.rjust(w) if i in numeric else p.ljust(w)
                         for i, (p, w) in enumerate(zip(parts, widths))).rstrip()

    return "\n".join([line(header), *(line(c) for c in cells)])


def markdown_table(rows: list[Row], objective: str, link=None) -> str:
    """The ranked rows as a Markdown table; ``link(row)`` -> a URL for the job's cell."""
    header, cells = columns(rows, objective)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, cell in zip(rows, cells):
        name = (row.name or cell[1]).replace("|", "\\|")
        if link is not None and row.run_id:
            cell = [cell[0], f"[{name}]({link(row)})", *cell[2:]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") if i != 1 else c
                                       for i, c in enumerate(cell)) + " |")
    return "\n".join(lines)


def describe(row: Row) -> str:
    """``#3 adam relu`` for a row: its run name, else its number and values."""
    from nnx.run_names import short_value

    if row.name:
        return row.name
    return " ".join([f"#{row.job}" if row.job is not None else "#?",
                     *(short_value(k, v) for k, v in row.values)])
