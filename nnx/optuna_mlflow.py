"""An Optuna study in MLflow: the sweep's parent run and its children, seen from the study.

Called by nnx's Optuna sweeper (``nnx.optuna_sweeper``) in the launching process while the
sweep's parent run is open (``nnx.sweep_callback`` opens it before the sweeper starts and
closes it after): each function does nothing when the sweep is not tracked.

- ``tag_parent``: the study's name, storage, sampler and pruner on the parent, at the start.
- ``summarise``: at the end, each child gets its trial's state (complete, pruned, failed) and
  value; the parent gets the counts, Optuna's best trial, the importance of each parameter
  (Optuna's default evaluator, fANOVA, over the study's complete trials), a Markdown summary
  as its description, and the optimisation-history plot as an artifact.
- ``discard_parent``: a sweep stopped by a bad setting, before any trial, leaves no run behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "waiting"}


def _sweep():
    """(client, experiment id, parent run id) of the sweep this process tracks, or None."""
    from nnx import sweep_parent as mt

    env = os.environ
    if not (env.get(mt.ENV_PARENT_RUN_ID) and env.get(mt.ENV_SWEEP_URI)):
        return None
    from mlflow.tracking import MlflowClient

    return (MlflowClient(env[mt.ENV_SWEEP_URI]), env[mt.ENV_EXPERIMENT_ID],
            env[mt.ENV_PARENT_RUN_ID])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tags(client, run_id: str, tags: dict) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


def tag_parent(study_name: str, storage: str, sampler, pruner) -> None:
    sweep = _sweep()
    if sweep is None:
        return
    client, _, parent = sweep
    _tags(client, parent, {"nnx.optuna.study": study_name, "nnx.optuna.storage": storage,
                           "nnx.optuna.sampler": type(sampler).__name__,
                           "nnx.optuna.pruner": type(pruner).__name__})


def importances(study) -> dict[str, float]:
    """Parameter -> importance (summing to 1) over the study's complete trials; {} when
    there are too few trials or nothing varies."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def history_plot(study, path: Path) -> Path | None:
    """Optuna's optimisation-history plot (every trial's value, the best so far) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        axes = optuna.visualization.matplotlib.plot_optimization_history(study)
    figure = axes.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def summarise(study, ran: list[int], sweep_dir: Path) -> None:
    """Children's trial states and values; the parent's counts, best trial, importances,
    description and plot. A failure here is a warning: the trials are stored either way."""
    sweep = _sweep()
    if sweep is None:
        return
    try:
        _summarise(*sweep, study, ran)
    except Exception as error:  # noqa: BLE001 - the study is safe in its storage
        print(f"nnx: warning: the sweep's MLflow summary failed: {type(error).__name__}: "
              f"{error}", file=sys.stderr)


def _summarise(client, experiment: str, parent: str, study, ran: list[int]) -> None:
    from mlflow.entities import Metric

    from nnx import sweep_parent as mt

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for child in mt.sweep_children(client, experiment, parent):
        number = child.data.tags.get("trial", "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if trial is None:
            continue
        tags = {"nnx.trial_state": STATES.get(trial.state.name, trial.state.name.lower())}
        if trial.user_attrs.get("fail_reason"):
            tags["nnx.trial_fail_reason"] = trial.user_attrs["fail_reason"]
        _tags(client, child.info.run_id, tags)
        value = trial.value if trial.value is not None else (
            trial.intermediate_values[max(trial.intermediate_values)]
            if trial.intermediate_values else None)
        if value is not None and math.isfinite(value):
            client.log_batch(child.info.run_id, metrics=[Metric("trial_value", value,
                                                                _now_ms(), 0)])
    counts = {s: 0 for s in STATES.values()}
    for number in ran:
        counts[STATES.get(trials[number].state.name, "running")] += 1
    tags = {f"nnx.trials.{s}": n for s, n in counts.items() if n}
    tags["nnx.children.pruned"] = counts["pruned"]
    tags["nnx.optuna.trials"] = ",".join(map(str, ran))
    metrics = []
    try:
        best = study.best_trial
    except ValueError:
        best = None
    scores = importances(study)
    if best is not None:
        tags["nnx.optuna.best_trial"] = best.number
        metrics.append(Metric("optuna_best_trial", best.number, _now_ms(), 0))
    metrics += [Metric(f"importance.{k}"[:250], v, _now_ms(), 0) for k, v in scores.items()]
    tags["mlflow.note.content"] = description(study, ran, counts, best, scores)
    _tags(client, parent, tags)
    if metrics:
        client.log_batch(parent, metrics=metrics)
    if any(t.state.name == "COMPLETE" for t in trials.values()):
        with tempfile.TemporaryDirectory(prefix="nnx-optuna-") as tmp:
            path = history_plot(study, Path(tmp) / "optimization_history.png")
            client.log_artifact(parent, str(path), "optuna")


def description(study, ran, counts, best, scores) -> str:
    """The parent run's Markdown description: what ran, the best trial, the importances."""
    lines = [f"**Optuna study `{study.study_name}`** ({study.direction.name.lower()}): "
             f"trials {', '.join(map(str, ran)) or 'none'} in this sweep: "
             + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "."]
    if best is not None:
        lines += ["", f"Best trial of the study: **{best.number}**, value {best.value:.6g}", "",
                  "| param | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in best.params.items()]
    if scores:
        lines += ["", "| param | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in scores.items()]
    return "\n".join(lines)


def discard_parent(reason: str) -> None:
    """Delete the sweep's parent run (no trial ran) and stop its exit hook from closing it or,
    for an untracked sweep, from printing an epilogue of no job."""
    from nnx.sweep_callback import GUARD

    GUARD.disarm()
    sweep = _sweep()
    if sweep is None:
        return
    client, _, parent = sweep
    with contextlib.suppress(Exception):  # the error itself is what the user must see
        client.set_tag(parent, "error", reason[:5000])
        client.set_terminated(parent, "FAILED")
        client.delete_run(parent)
