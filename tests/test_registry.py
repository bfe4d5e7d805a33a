"""The registry: names from entry-point metadata, lazy loading, helpful errors, plugins."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

import nnx

R = importlib.import_module("nnx.registry")

# The built-ins, written out independently of pyproject.toml; a new built-in only adds names.
BUILTINS = {
    "layers": {"dense", "dropout"},
    "activations": {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus",
                    "silu", "softmax"},
    "losses": {"sse", "mse", "mae", "huber", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "softmax_cross_entropy"},
    "optimizers": {"sgd", "adagrad", "rmsprop", "adam", "adamw"},
    "initializers": {"uniform01", "normal", "glorot_uniform", "glorot_normal", "he_uniform",
                     "he_normal", "zeros"},
    "schedules": {"constant", "step", "exponential", "cosine", "warmup"},
    "datasets": {"tutorial", "xor", "digits"},
}
COMPONENT_MODULES = ["nnx.activations", "nnx.layers", "nnx.losses", "nnx.optimizers",
                     "nnx.initializers", "nnx.schedules", "nnx.data", "nnx.datasets"]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("kind", sorted(R.GROUPS))
def test_names_list_builtins_and_equal_entry_points(kind):
    names = R.names(kind)
    assert BUILTINS[kind] <= set(names)
    assert names == sorted(names)
    metadata = {ep.name for ep in entry_points(group=f"nnx.{kind}")}
    if os.environ.get("NNX_DISABLE_PLUGINS"):
        assert set(names) <= metadata
    else:
        assert set(names) == metadata


def test_the_kind_table_is_the_one_list_of_kinds():
    """pyproject's entry-point groups, the conf/ groups and the base classes all agree with
    ``KINDS``, and every other list of kinds is derived from it."""
    from nnx.config import GROUP_KINDS

    root = Path(__file__).resolve().parent.parent
    declared = {ep.group for ep in distribution("nnx").entry_points}  # from pyproject.toml
    assert {k.group for k in R.KINDS} == {g for g in declared if g.startswith("nnx.")}
    assert list(R.GROUPS) == list(R.SINGULAR) == [k.name for k in R.KINDS] == list(BUILTINS)
    for kind in R.KINDS:
        assert R.kind_record(kind.name) is kind and kind.group == f"nnx.{kind.name}"
        base = kind.base.replace(":", ".")
        assert R.component_problem(kind.name, int) == \
            f"expected a class derived from {base}, got int(builtins.object)"
    assert R.MODULE_KINDS == ("layers", "activations")  # what a network's layer list names
    assert GROUP_KINDS == {"loss": "losses", "optimizer": "optimizers", "schedule": "schedules",
                           "dataset": "datasets"}
    assert all((root / "conf" / group).is_dir() for group in GROUP_KINDS)
    with pytest.raises(ValueError, match=r"unknown component kind 'gadgets'; valid kinds: "
                                         r"layers, activations, losses, optimizers, "
                                         r"initializers, schedules, datasets$"):
        R.kind_record("gadgets")


def test_listing_names_imports_no_component_module():
    code = f"""
        import importlib, sys
        r = importlib.import_module("nnx.registry")
        for kind in r.GROUPS:
            assert r.names(kind), kind
            r.registry(kind).entries()
        imported = [m for m in {COMPONENT_MODULES!r} if m in sys.modules]
        assert not imported, imported
        r.get("losses", "mse")
        assert "nnx.losses" in sys.modules and "nnx.optimizers" not in sys.modules
    """
    run_python(code)


def test_import_nnx_does_not_import_mlflow_or_hydra():
    code = """
        import sys
        import nnx
        heavy = [m for m in sys.modules if m.split(".")[0] in ("mlflow", "hydra", "omegaconf")]
        assert not heavy, heavy
    """
    run_python(code)


def test_get_returns_the_class():
    from nnx.activations import ReLU
    from nnx.optimizers import Adam

    assert R.get("activations", "relu") is ReLU
    assert R.get("optimizers", "adam") is Adam
    assert R.registry("activations").get("relu") is ReLU  # cached, same object
    assert isinstance(R.build("optimizers", "adam", lr=0.5), Adam)
    assert R.build("optimizers", "adam", lr=0.5).lr == 0.5


def test_unknown_name_suggests_and_lists_valid_names():
    with pytest.raises(R.UnknownComponentError) as info:
        R.get("activations", "rleu")
    message = str(info.value)
    assert "'rleu'" in message and "Did you mean 'relu'?" in message
    for name in R.names("activations"):
        assert name in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="Valid names") as info:
        R.get("optimizers", "zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_the_registry_module_is_reachable_by_its_dotted_name():
    assert nnx.registry is R
    assert nnx.registry.registry("activations").names() == R.names("activations")


def test_package_shortcuts():
    assert nnx.names("activations") == R.names("activations")
    assert nnx.get("activations", "relu") is R.get("activations", "relu")
    assert nnx.build("optimizers", "sgd", lr=0.1).lr == 0.1


def test_unknown_kind():
    with pytest.raises(ValueError, match="valid kinds"):
        R.registry("widgets")


def test_qualified_lookup():
    from nnx.activations import ReLU

    assert R.get("activations", "nnx:relu") is ReLU
    assert "nnx:relu" in R.registry("activations")
    assert "nope:relu" not in R.registry("activations")
    with pytest.raises(R.UnknownComponentError, match="nope:relu"):
        R.get("activations", "nope:relu")


def test_build_names_the_component_on_a_bad_argument():
    with pytest.raises(TypeError, match="optimizer 'sgd'.*colour"):
        R.build("optimizers", "sgd", colour="red")


# -- a third-party plugin, installed as metadata on sys.path ------------------------------
PLUGIN_MODULE = '''
import numpy as np
from nnx.activations import Activation


class Cube(Activation):
    """y = x**3; dy/dx = 3 x**2."""

    def forward(self, x):
        self._x = x
        return x**3

    def backward(self, grad):
        return grad * 3 * self._x**2


class NoBackward(Activation):
    def forward(self, x):
        return x


NotAClass = 3
'''

ENTRY_POINTS = """
[nnx.activations]
cube = fakeplug_mod:Cube
relu = fakeplug_mod:Cube
broken = fakeplug_missing_module:Thing
half = fakeplug_mod:NoBackward
number = fakeplug_mod:NotAClass
"""


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "fakeplug_mod.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "fakeplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return str(tmp_path)


def test_plugin_is_found_checked_and_isolated(plugin_path):
    code = """
        import numpy as np
        import nnx
        import importlib
        R = importlib.import_module("nnx.registry")
        from nnx.testing import check_component

        reg = R.registry("activations")
        assert {"cube", "broken", "half", "number"} <= set(reg.names())
        cube = R.get("activations", "cube")
        assert cube.__name__ == "Cube"
        check_component("activations", "cube")          # the same check the built-ins get

        # Two distributions register "relu": the bare name is ambiguous, qualified names work.
        try:
            R.get("activations", "relu")
        except R.PluginError as e:
            assert "'nnx:relu'" in str(e) and "'fakeplug:relu'" in str(e), e
        else:
            raise AssertionError("ambiguous name accepted")
        assert R.get("activations", "nnx:relu").__name__ == "ReLU"
        assert R.get("activations", "fakeplug:relu") is cube

        # A broken plugin's error names the package, the entry point and the cause.
        try:
            R.get("activations", "broken")
        except R.PluginError as e:
            message = str(e)
            assert message.startswith("fakeplug[broken]:"), message
            assert "fakeplug_missing_module:Thing" in message, message
            assert "failed to load" in message and "ModuleNotFoundError" in message, message
            assert isinstance(e.__cause__, ImportError), repr(e.__cause__)
        else:
            raise AssertionError("broken plugin loaded")
        for name, why in [("half", "backward"), ("number", "class")]:
            try:
                R.get("activations", name)
            except R.PluginError as e:
                assert str(e).startswith(f"fakeplug[{name}]:") and why in str(e), e
            else:
                raise AssertionError(name)
        assert set(reg.failures()) == {"fakeplug:broken", "fakeplug:half", "fakeplug:number"}

        # The rest keeps working, and a plugin's component is chosen like a built-in.
        net = nnx.Network([{"name": "dense", "units": 2}, "cube", "nnx:tanh"], 3,
                          rng=np.random.default_rng(0))
        assert type(net.layers[1]) is cube
        print("ok")
    """
    out = run_python(code, PYTHONPATH=plugin_path, NNX_DISABLE_PLUGINS="")
    assert out.stdout.strip() == "ok"


def test_disable_plugins_hides_other_distributions(plugin_path):
    code = """
        import importlib
        R = importlib.import_module("nnx.registry")
        names = R.names("activations")
        assert "cube" not in names and "relu" in names, names
        assert R.get("activations", "relu").__name__ == "ReLU"
    """
    run_python(code, PYTHONPATH=plugin_path, NNX_DISABLE_PLUGINS="1")
