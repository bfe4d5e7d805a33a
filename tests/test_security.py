"""Loading never runs code; configs pick code by registry name only; servers stay local.

See docs/security.md for what is and is not safe to load from others.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnx import checkpoint, experiment
from nnx.config import ConfigError
from nnx.network import Network
from nnx.run import compose

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "nnx").rglob("*.py"))
# Ways to run code while loading data: none may appear in nnx/.
FORBIDDEN = ["allow_pickle=True", "pickle.load", "cloudpickle", "import pickle", "yaml.load(",
             "yaml.unsafe_load", "joblib.load", "torch.load", "dill", "marshal.load", "shelve",
             "hydra.utils.instantiate", "instantiate(", "get_method(", "get_class(", "exec(",
             "__import__("]
PROBE = "nnx_security_probe"  # a module that must never be imported by a config value



@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_no_code_runs_on_load_paths(pattern):
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in SOURCES
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern in line]
    assert not hits, hits


def test_every_numpy_load_refuses_pickles():
    calls = [(p, m.group(0)) for p in SOURCES
             for m in re.finditer(r"np\.load\((?:[^()]|\([^()]*\))*\)", p.read_text())]
    assert calls, "no np.load found: has the pattern gone stale?"
    assert all("allow_pickle=False" in call for _, call in calls), calls


def test_import_module_only_imports_nnx_own_base_classes():
    for path in SOURCES:
        for line in path.read_text().splitlines():
            if "import_module(" in line:
                assert path.name == "registry.py" and "import_module(module)" in line, line
    from nnx.registry import KINDS

    assert all(kind.base.startswith("nnx.") for kind in KINDS)


def test_a_checkpoint_holding_a_pickle_is_refused_unread(tmp_path):
    """np.save of an object array writes a pickle; loading it must fail, not run it."""
    bad = tmp_path / "evil.npz"
    with open(bad, "wb") as f:
        np.savez(f, params=np.array([os.system], dtype=object),
                 **{checkpoint.META_KEY: np.frombuffer(b'{"format": 1}', dtype=np.uint8)})
    with pytest.raises(checkpoint.CheckpointError, match="Object arrays cannot be loaded"):
        checkpoint.read(bad)


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """An importable module that records being imported; the tests check it never is."""
    (tmp_path / f"{PROBE}.py").write_text(
        "import os\nos.environ['NNX_SECURITY_PROBE'] = 'imported'\n"
        "class Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NNX_SECURITY_PROBE", raising=False)
    yield
    assert PROBE not in sys.modules and "NNX_SECURITY_PROBE" not in os.environ


IMPORT_PATHS = ["os:system", "builtins.eval", "builtins:eval", "subprocess.Popen",
                f"{PROBE}:Evil", f"{PROBE}.Evil", "nnx.optimizers.SGD", "nnx.optimizers:SGD"]
KEYS = ["optimizer.name", "loss.name", "schedule.name", "dataset.name", "model.activation",
        "model.output_activation", "model.initializer"]


@pytest.fixture(scope="module")
def default_config() -> dict:
    return compose(["tracking=none"])


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", IMPORT_PATHS)
def test_import_paths_are_unknown_names(probe, default_config, key, value):
    cfg = copy.deepcopy(default_config)
    node, _, leaf = key.rpartition(".")
    cfg[node][leaf] = value
    with pytest.raises(ConfigError, match=rf"^{re.escape(node)}(\.\w+)?: unknown \w+ "
                       rf"{re.escape(repr(value))}"):
        experiment.build(cfg)


def test_layer_specs_from_files_resolve_names_only(probe):
    """An architecture read from a checkpoint or an MLflow model is rebuilt by name."""
    for name in (f"{PROBE}:Evil", f"{PROBE}:relu", "os:system", "builtins.eval"):
        with pytest.raises(ValueError, match="unknown"):
            Network([{"name": name}], in_features=2)


def test_nnx_run_rejects_an_import_path_as_an_unknown_name(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "nnx.run", "optimizer.name=os:system", "tracking=none",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "optimizer: unknown optimizer 'os:system'. Valid names: " in done.stderr
    assert "Traceback" not in done.stderr


def test_servers_the_project_starts_listen_on_localhost_only():
    """`make ui` binds 127.0.0.1; nothing in nnx/ or conf/ says 0.0.0.0 or starts a server."""
    makefile = (ROOT / "Makefile").read_text()
    servers = [line for line in makefile.splitlines()
               if re.search(r"mlflow (ui|server)|models serve|http\.server", line)]
    assert servers, "no server command in the Makefile: has the pattern gone stale?"
    assert all("--host 127.0.0.1" in line or "-h 127.0.0.1" in line for line in servers), servers
    for path in [*SOURCES, *sorted((ROOT / "conf").rglob("*.yaml")), ROOT / "Makefile"]:
        text = path.read_text()
        assert "0.0.0.0" not in text, path
        assert not re.search(r"HTTPServer|serve_forever|\.bind\(", text), path
