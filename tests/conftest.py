"""Shared fixtures: a way to run ``python -m nnx.run`` for real, in a temporary folder; a small
Fashion-MNIST written by the tests; and the ``needs_fashion_mnist`` marker, whose tests are
skipped (with the reason in pytest's summary) on a machine without the real dataset."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from idx_files import small_fashion

ROOT = Path(__file__).resolve().parent.parent


def run_nnx(args: list[str], tmp_path: Path, *, module: str = "nnx.run", timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m nnx.run ARGS`` with Hydra's output and the MLflow store under tmp_path.
    The store starts as a copy of the session's migrated empty one (unless the test made its
    own, or tracks nothing): creating a store runs MLflow's migrations, a second or two a run."""
    store = tmp_path / "mlflow.db"
    if _TEMPLATE and not store.exists() and "tracking=none" not in args:
        shutil.copy(_TEMPLATE[0], store)
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


_TEMPLATE: list[Path] = []  # the session's store_template, for run_nnx (a plain function)


@pytest.fixture(scope="session", autouse=True)
def _template_for_runs(store_template):
    _TEMPLATE[:] = [store_template]


@pytest.fixture
def store(tmp_path, store_template) -> str:
    """A fresh store of this test's own: the URI of a copy of the template."""
    path = tmp_path / "mlflow.db"
    shutil.copy(store_template, path)
    return f"sqlite:///{path}"


# -- Fashion-MNIST: small files for every machine, the real dataset only where it is installed --
@pytest.fixture(scope="session")
def small_fashion_dir(tmp_path_factory) -> Path:
    """A folder with the four Fashion-MNIST IDX files: 300 training and 100 test images."""
    directory = tmp_path_factory.mktemp("fashion_mnist")
    small_fashion(directory, n_train=300, n_test=100)
    return directory


def fashion_mnist_missing() -> str | None:
    """Why the real dataset cannot be read (nnx looked and found nothing), or None when it can.
    Never downloads."""
    from nnx.registry import build

    source = build("datasets", "fashion_mnist", download=False)
    if source.find() is not None:
        return None
    where = ", ".join(str(d) for d in source.search_dirs())
    return f"Fashion-MNIST is not installed (looked in {where}); `make data` gets it"


def pytest_collection_modifyitems(config, items):
    """Skip the ``needs_fashion_mnist`` tests when the dataset is absent; with
    $NNX_REQUIRE_FASHION_MNIST set (CI's pass with the dataset) its absence is an error instead."""
    marked = [item for item in items if item.get_closest_marker("needs_fashion_mnist")]
    reason = fashion_mnist_missing() if marked else None
    if reason is None:
        return
    if os.environ.get("NNX_REQUIRE_FASHION_MNIST"):
        raise pytest.UsageError(f"$NNX_REQUIRE_FASHION_MNIST is set, but {reason}")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))


# -- no process of the suite outlives it ----------------------------------------------------------
# Every process a test starts inherits this marker (tests pass os.environ on to subprocesses), so
# one left running after the session (a sweep's worker, a server) is found by it, whoever its
# parent has become.
SESSION_MARKER = ("NNX_TEST_SESSION", str(os.getpid()))
os.environ.setdefault(*SESSION_MARKER)


@pytest.hookimpl(trylast=True)  # after pytest-xdist has shut its workers down (they carry it too)
def pytest_sessionfinish(session, exitstatus):
    import processes

    if os.environ.get(SESSION_MARKER[0]) != SESSION_MARKER[1]:
        return  # a pytest run inside a test: the outer session checks
    try:
        processes.wait_gone(lambda: processes.carrying(*SESSION_MARKER), 30,
                            "processes started by the tests")
    except AssertionError as left:
        for pid in processes.carrying(*SESSION_MARKER):
            os.kill(pid, signal.SIGKILL)
        session.config.get_terminal_writer().line(f"\nFAILED: {left} (killed now)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
