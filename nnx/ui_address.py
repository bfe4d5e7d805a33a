"""The address a user opens to see a run in the MLflow UI.

    ui_address("sqlite:///.../mlflow.db", "3", "ab12")
        -> "http://127.0.0.1:5000/#/experiments/3/runs/ab12"   (the UI that `make ui` starts)
    ui_address("http://127.0.0.1:5001", "3", "ab12")
        -> "http://127.0.0.1:5001/#/experiments/3/runs/ab12"   (that server's own UI)

A sqlite or file store has no UI of its own: ``mlflow ui`` must be started over it, and
``make ui`` does so on port 5000 over the checkout's ``mlflow.db`` (in a checkout only);
``ui_hint`` says how.
"""

from __future__ import annotations

LOCAL_UI = "http://127.0.0.1:5000"  # where `make ui` (and plain `mlflow ui`) listens


def run_path(experiment_id: str, run_id: str | None = None) -> str:
    """The UI's relative link to an experiment or a run (the part after the host)."""
    path = f"#/experiments/{experiment_id}"
    return f"{path}/runs/{run_id}" if run_id else path


def ui_base(uri: str) -> str:
    """The UI that shows the store ``uri``: the server itself, else the local ``mlflow ui``."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return LOCAL_UI


def ui_address(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The full address of a run (or of an experiment, without ``run_id``) in the UI."""
    return f"{ui_base(uri)}/{run_path(experiment_id, run_id)}"


def ui_hint(uri: str) -> str:
    """How to get the UI at ``ui_base(uri)`` running: '' for a server, which serves it."""
    if uri.startswith(("http://", "https://")):
        return ""
    from nnx.locations import checkout, default_store
    from nnx.store import sqlite_path

    # `make ui` is a target of nnx's checkout: outside one (nnx installed from a wheel) there is
    # no Makefile, and the default store is the working directory's, which `mlflow ui` serves.
    if checkout() is not None and sqlite_path(uri) == default_store():
        return "make ui starts it"
    return f"start it: mlflow ui --port 5000 --backend-store-uri {uri}"


def ui_line(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """One line for the end of a run or a sweep: the address, and how to open it."""
    hint = ui_hint(uri)
    return f"MLflow UI: {ui_address(uri, experiment_id, run_id)}" + (f" ({hint})" if hint else "")
