"""A sweep's parent run, and what the launching process tells each job of the sweep.

``nnx.sweep_callback`` calls these in the launching process of a Hydra multirun:

    env = start_sweep(cfg.tracking, name, info)   # store, experiment and parent run, first
    ...                                           # jobs run with env in their environment
    end_sweep(env, direction, results)            # children counted, best run recorded

Creating the store and the experiment here, once, before any job starts, is what keeps
parallel jobs from racing on a fresh sqlite store (see DESIGN.md). A job learns its parent
run from ``sweep_parent(uri)`` and its Hydra folder, number and overrides from ``hydra_job()``.
mlflow is imported on first use.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from nnx.run_metadata import (
    MAX_KEY,
    MAX_PARAM_VALUE,
    MAX_PARAMS_PER_BATCH,
    MAX_TAG_VALUE,
    clip,
    git_state,
    now_ms,
    param_text,
    user_name,
)
from nnx.store import experiment_id, open_store, resolve_uri
from nnx.tracking_settings import check_settings

# Set by nnx.sweep_callback: the launching process of a sweep passes the store, experiment
# and parent run to its jobs; each job learns its own folder and number.
ENV_SWEEP_URI = "NNX_MLFLOW_TRACKING_URI"
ENV_EXPERIMENT_ID = "NNX_MLFLOW_EXPERIMENT_ID"
ENV_PARENT_RUN_ID = "NNX_MLFLOW_PARENT_RUN_ID"
ENV_OUTPUT_DIR = "NNX_HYDRA_OUTPUT_DIR"
ENV_JOB_NUM = "NNX_HYDRA_JOB_NUM"
ENV_OVERRIDES = "NNX_HYDRA_OVERRIDES"
ENV_SWEEPER = "NNX_HYDRA_SWEEPER"
ENV_SWEPT = "NNX_HYDRA_SWEPT"  # JSON list of the keys a sweep varies


# -- in a job of the sweep ----------------------------------------------------------------
def hydra_job() -> dict:
    """What the sweep callback told this process about its Hydra job (empty outside Hydra)."""
    info = {}
    if os.environ.get(ENV_OUTPUT_DIR):
        info["output_dir"] = Path(os.environ[ENV_OUTPUT_DIR])
    if os.environ.get(ENV_JOB_NUM, "").isdigit():
        info["job_num"] = int(os.environ[ENV_JOB_NUM])
    if os.environ.get(ENV_OVERRIDES):
        try:
            info["overrides"] = list(json.loads(os.environ[ENV_OVERRIDES]))
        except ValueError:
            pass
    if os.environ.get(ENV_SWEEPER):
        info["sweeper"] = os.environ[ENV_SWEEPER]
    try:
        info["swept"] = list(json.loads(os.environ.get(ENV_SWEPT) or "[]"))
    except ValueError:
        info["swept"] = []
    return info


def override_key(override: str) -> str:
    """``+model.x=1`` -> ``model.x``; ``optimizer=adam`` -> ``optimizer``."""
    return override.partition("=")[0].lstrip("+~")


def sweep_parent(uri: str) -> tuple[str, str] | None:
    """(experiment id, parent run id) when this process is a job of a tracked sweep on ``uri``."""
    parent, experiment = os.environ.get(ENV_PARENT_RUN_ID), os.environ.get(ENV_EXPERIMENT_ID)
    if parent and experiment and os.environ.get(ENV_SWEEP_URI) == uri:
        return experiment, parent
    return None


# -- in the launching process (nnx.sweep_callback) ----------------------------------------
def start_sweep(tracking: dict, name: str, info: dict) -> dict[str, str]:
    """Create the store, the experiment and the sweep's parent run, before any job starts.

    ``info``: sweep_dir, sweeper, launcher, objective, direction, overrides (list of str),
    search_space (dict). Returns the environment the jobs need to log under the parent.
    """
    settings = check_settings(dict(tracking))
    uri = resolve_uri(settings["uri"])
    client = open_store(uri, float(settings["timeout"]))
    experiment = str(settings["experiment"] or name)
    exp_id = experiment_id(client, experiment, uri)
    from nnx import __version__
    from nnx.run_names import parent_name

    tags = {"mlflow.user": user_name(), "mlflow.source.type": "LOCAL", "mlflow.source.name": "nnx.run",
            "nnx.sweep": "true", "nnx.version": __version__,
            "nnx.objective": str(info.get("objective", "val_loss")),
            "nnx.direction": str(info.get("direction", "")),
            "nnx.sweeper": str(info.get("sweeper", "")),
            "nnx.launcher": str(info.get("launcher", "")),
            "nnx.sweep_dir": str(info.get("sweep_dir", "")),
            "nnx.overrides": json.dumps(list(info.get("overrides", [])))}
    git = git_state()
    if git is not None:
        tags["nnx.git_commit"] = tags["mlflow.source.git.commit"] = git[0]
    run = client.create_run(exp_id, start_time=now_ms(), run_name=parent_name(experiment),
                            tags={k: clip(v, MAX_TAG_VALUE) for k, v in tags.items()})
    from mlflow.entities import Param

    space = {f"sweep.{k}": clip(str(v), MAX_PARAM_VALUE)
             for k, v in (info.get("search_space") or {}).items()}
    items = [Param(clip(k, MAX_KEY), v) for k, v in space.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
    return {ENV_SWEEP_URI: uri, ENV_EXPERIMENT_ID: exp_id, ENV_PARENT_RUN_ID: run.info.run_id}


def sweep_children(client, experiment: str, parent_run_id: str) -> list:
    """Every run whose parent is ``parent_run_id``, oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"],
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def end_sweep(env: dict[str, str], direction: str | None = None, results: dict | None = None,
              status: str | None = None, error: str | None = None) -> None:
    """Close a sweep's parent run: children counted, best value and params recorded.

    ``results``: the Optuna sweeper's ``optimization_results.yaml`` (best_params, best_value),
    when there is one. ``status``: None = FINISHED if every child finished, else FAILED.
    Children still RUNNING (their process was killed) are closed as KILLED.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env[ENV_SWEEP_URI])
    parent = env[ENV_PARENT_RUN_ID]
    children = sweep_children(client, env[ENV_EXPERIMENT_ID], parent)
    orphans = [c for c in children if c.info.status in ("RUNNING", "SCHEDULED")]
    for child in orphans:
        client.set_tag(child.info.run_id, "error", "the sweep stopped while this job ran")
        client.set_terminated(child.info.run_id, "KILLED", end_time=now_ms())
    if orphans:
        children = sweep_children(client, env[ENV_EXPERIMENT_ID], parent)
    counts: dict[str, int] = {}
    for child in children:
        counts[child.info.status] = counts.get(child.info.status, 0) + 1
    tags = [RunTag("nnx.children", str(len(children)))]
    tags += [RunTag(f"nnx.children.{s.lower()}", str(n)) for s, n in sorted(counts.items())]
    params, metrics = [], []
    direction = direction or client.get_run(parent).data.tags.get("nnx.direction") or "minimize"
    scored = [c for c in children if c.info.status == "FINISHED"
              and math.isfinite(c.data.metrics.get("objective", math.nan))
              and c.data.tags.get("nnx.trial_state") != "pruned"]  # stopped early: not a result
    if scored:
        pick = max if direction.startswith("max") else min
        best = pick(scored, key=lambda c: c.data.metrics["objective"])
        metrics.append(Metric("best_objective", best.data.metrics["objective"], now_ms(), 0))
        tags += [RunTag("nnx.best_run_id", best.info.run_id),
                 RunTag("nnx.best_run_name", best.info.run_name or "")]
        swept = {k[len("sweep."):] for k in client.get_run(parent).data.params
                 if k.startswith("sweep.")}
        best_params = {}
        for override in json.loads(best.data.tags.get("nnx.overrides", "[]")):
            if override_key(override) in swept:
                best_params[override_key(override)] = override.partition("=")[2]
        if results and results.get("best_params"):
            best_params = {str(k): v for k, v in results["best_params"].items()}
        params += [Param(clip(f"best.{k}", MAX_KEY), clip(param_text(v), MAX_PARAM_VALUE))
                   for k, v in best_params.items()]
    if results and results.get("best_value") is not None:
        metrics.append(Metric("optuna_best_value", float(results["best_value"]), now_ms(), 0))
    if status is None:
        status = "FINISHED" if children and counts.get("FINISHED", 0) == len(children) else "FAILED"
        if status == "FAILED":
            error = error or (f"{len(children) - counts.get('FINISHED', 0)} of {len(children)} "
                              "jobs did not finish" if children else "no job logged a run")
    if error:
        tags.append(RunTag("error", clip(error, MAX_TAG_VALUE)))
    existing = client.get_run(parent).data.params
    params = [p for p in params if p.key not in existing]
    client.log_batch(parent, metrics=metrics, params=params[:MAX_PARAMS_PER_BATCH], tags=tags)
    client.set_terminated(parent, status=status, end_time=now_ms())
