"""Shared fixtures: a way to run ``python -m nnx.run`` for real, in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_nnx(args: list[str], tmp_path: Path, *, module: str = "nnx.run", timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m nnx.run ARGS`` with Hydra's output and the MLflow store under tmp_path."""
    full_env = {**os.environ, "NNX_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    extra = []
    if module == "nnx.run":
        sweep = any(a in ("-m", "--multirun") for a in args)
        extra = [f"hydra.sweep.dir={tmp_path / 'multirun'}" if sweep
                 else f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run([sys.executable, "-m", module, *args, *extra], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


@pytest.fixture
def nnx_run(tmp_path):
    """``nnx_run(args)`` -> CompletedProcess of a real ``python -m nnx.run``."""
    return lambda args, **kw: run_nnx(args, tmp_path, **kw)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty, migrated sqlite store, made once per session (creating one takes seconds)."""
    path = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not path.exists():
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store(tmp_path, store_template) -> str:
    """A fresh store of this test's own: the URI of a copy of the template."""
    path = tmp_path / "mlflow.db"
    shutil.copy(store_template, path)
    return f"sqlite:///{path}"
