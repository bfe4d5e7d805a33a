"""Plugins, end to end, with real distributions on sys.path (no mocks of importlib.metadata).

A "distribution" here is what an installer leaves behind: ``<name>-<version>.dist-info/``
(METADATA + entry_points.txt) beside its modules, in a temporary folder that goes on
``sys.path`` (in this process) or ``PYTHONPATH`` (in a subprocess). The example plugin in
experiments/plugins/ is installed for real with ``pip install --no-deps --target``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nnx import config as nnx_config
from nnx.network import mlp
from nnx.registry import (
    AmbiguousComponentError,
    PluginError,
    UnknownComponentError,
    registry,
    reset,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "plugins" / "nnx-example-plugin"
PLUGIN_MODULES = ("nnx_broken", "nnx_twin", "nnx_example_plugin", "nnx_kit")


def make_distribution(root: Path, dist: str, entry_points: dict, modules: dict,
                      version: str = "0.1") -> None:
    """Write an installed distribution: its dist-info (METADATA, entry_points.txt) and modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    for filename, source in modules.items():
        (root / filename).write_text(textwrap.dedent(source))


PARTS = '''
    """Components of nnx-broken: most of them wrong on purpose, one (cube) fine."""
    from nnx.activations import Activation
    from nnx.losses import Loss


    def not_a_class(x):
        return x


    class NotAModule:  # forward and backward, but not derived from nnx.module.Module
        def forward(self, x):
            return x

        def backward(self, grad):
            return grad


    class NoBackward(Activation):
        def forward(self, x):
            return x


    class LossWithoutBackward(Loss):
        def forward(self, pred, target):
            return 0.0


    class Cube(Activation):
        """y = x**3; dy/dx = 3 x**2."""

        def forward(self, x):
            self._x = x
            return x**3

        def backward(self, grad):
            return grad * 3 * self._x**2
'''
BROKEN = {  # name -> (group, value, what the error must say)
    "exploding": ("nnx.activations", "nnx_broken_boom:Exploding",
                  "failed to load: RuntimeError: boom at import"),
    "quitting": ("nnx.activations", "nnx_broken_exit:Quitting", "failed to load: SystemExit: 3"),
    "missing": ("nnx.activations", "nnx_broken_parts:DoesNotExist", "failed to load: AttributeError"),
    "not_a_class": ("nnx.activations", "nnx_broken_parts:not_a_class",
                    "expected a class derived from nnx.module.Module, got 'not_a_class'"),
    "wrong_base": ("nnx.activations", "nnx_broken_parts:NotAModule",
                   "expected a class derived from nnx.module.Module, got NotAModule(builtins.object)"),
    "no_backward": ("nnx.activations", "nnx_broken_parts:NoBackward",
                    "NoBackward does not implement backward()"),
    "no_backward_loss": ("nnx.losses", "nnx_broken_parts:LossWithoutBackward",
                         "LossWithoutBackward does not implement backward()"),
    "module_as_optimizer": ("nnx.optimizers", "nnx_broken_parts:Cube",
                            "expected a class derived from nnx.optimizers.Optimizer, got Cube("),
}
KIND = {"nnx.activations": "activations", "nnx.losses": "losses", "nnx.optimizers": "optimizers"}


def twin_module(factor: int) -> str:
    return f'''
        from nnx.activations import Activation


        class Twin(Activation):
            """y = {factor} x."""

            def forward(self, x):
                return {factor} * x

            def backward(self, grad):
                return {factor} * grad
    '''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """One folder holding three distributions: nnx-broken, nnx-twin-a and nnx-twin-b."""
    root = tmp_path_factory.mktemp("site")
    groups: dict = {}
    for name, (group, value, _) in BROKEN.items():
        groups.setdefault(group, {})[name] = value
    groups["nnx.activations"]["cube"] = "nnx_broken_parts:Cube"
    make_distribution(root, "nnx-broken", groups, {
        "nnx_broken_boom.py": 'raise RuntimeError("boom at import")\n',
        "nnx_broken_exit.py": "import sys\nsys.exit(3)\n",
        "nnx_broken_parts.py": PARTS,
    })
    make_distribution(root, "nnx-twin-a", {"nnx.activations": {"twin": "nnx_twin_a:Twin"}},
                      {"nnx_twin_a.py": twin_module(2)})
    # nnx-twin-b also takes the name of a built-in: tanh becomes ambiguous too
    make_distribution(root, "nnx-twin-b", {"nnx.activations": {"twin": "nnx_twin_b:Twin",
                                                               "tanh": "nnx_twin_b:Twin"}},
                      {"nnx_twin_b.py": twin_module(3)}, version="2.0")
    return root


def _forget_plugin_modules() -> None:
    for module in [m for m in sys.modules if m.startswith(PLUGIN_MODULES)]:
        del sys.modules[module]


@pytest.fixture
def on_path(monkeypatch):
    """Put folders on sys.path for one test; the registry forgets them afterwards."""
    monkeypatch.delenv("NNX_DISABLE_PLUGINS", raising=False)

    def add(folder: Path) -> None:
        monkeypatch.syspath_prepend(str(folder))  # also invalidates importlib's caches
        reset()

    yield add
    monkeypatch.undo()
    reset()
    _forget_plugin_modules()


@pytest.fixture
def broken(plugin_dir, on_path) -> Path:
    on_path(plugin_dir)
    return plugin_dir


def run_python(*args: str, pythonpath: Path | None = None, cwd: Path, timeout: int = 60,
               **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NNX_DISABLE_PLUGINS", "PYTHONPATH")}
    if pythonpath is not None:
        environ["PYTHONPATH"] = str(pythonpath)
    environ.update(env)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout, check=False)


# -- broken plugins ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", BROKEN)
def test_broken_plugin_raises_naming_package_entry_point_and_cause(broken, name):
    group, value, reason = BROKEN[name]
    reg = registry(KIND[group])
    assert name in reg.names()  # listed from metadata: nothing was imported to know the name
    with pytest.raises(PluginError) as info:
        reg.get(name)
    error = info.value
    message = str(error)
    assert message.startswith(f"nnx-broken[{name}]: {group} entry point '{name} = {value}'")
    assert "of nnx-broken 0.1" in message and reason in message
    assert (error.distribution, error.version, error.entry_point) == \
        ("nnx-broken", "0.1", f"{name} = {value}")
    assert error.__cause__ is not None  # raised "from" the cause
    if "failed to load" not in reason:
        assert isinstance(error.__cause__, TypeError)
    assert f"nnx-broken:{name}" in reg.failures()
    with pytest.raises(PluginError) as again:  # cached, raised afresh, still chained
        reg.get(f"nnx-broken:{name}")
    assert str(again.value) == message and again.value.__cause__ is error.__cause__


def test_import_error_keeps_the_original_exception(broken):
    with pytest.raises(PluginError) as info:
        registry("activations").get("exploding")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "boom at import"


def test_the_rest_keeps_working(broken):
    reg = registry("activations")
    loaded = reg.load_all()  # records failures, raises nothing
    assert set(reg.failures()) == {f"nnx-broken:{n}" for n, (g, _, _) in BROKEN.items()
                                   if g == "nnx.activations"}
    assert {"nnx:relu", "nnx:sigmoid", "nnx-broken:cube"} <= set(loaded)
    cube = reg.build("cube")
    np.testing.assert_array_equal(cube.forward(np.array([[2.0, -1.0]])), [[8.0, -1.0]])
    net = mlp(3, [4], 1, activation="cube", output_activation="sigmoid",
              rng=np.random.default_rng(0))
    assert net.forward(np.ones((2, 3))).shape == (2, 1)
    assert registry("optimizers").build("adam", lr=0.1).lr == 0.1
    assert registry("losses").get("mse").__name__ == "MeanSquaredError"


def test_config_reports_a_broken_plugin_by_its_key(broken):
    with pytest.raises(nnx_config.ConfigError) as info:
        nnx_config.check_name("model.activation", "no_backward", "activations")
    message = str(info.value)
    assert message.startswith("model.activation: nnx-broken[no_backward]")
    assert "does not implement backward()" in message


# -- the same name from two distributions ------------------------------------------------------
def test_duplicate_name_names_both_distributions_and_how_to_pick(broken):
    reg = registry("activations")
    with pytest.raises(AmbiguousComponentError) as info:
        reg.get("twin")
    message = str(info.value)
    assert "'twin' is registered by several distributions (nnx-twin-a and nnx-twin-b)" in message
    assert "pick one with 'nnx-twin-a:twin' or 'nnx-twin-b:twin'" in message
    assert isinstance(info.value, PluginError)  # config code catches one type for both
    assert "twin" in reg  # registered, though ambiguous
    x = np.array([[1.0, -2.0]])
    assert reg.build("nnx-twin-a:twin").forward(x).tolist() == [[2.0, -4.0]]
    assert reg.build("nnx-twin-b:twin").forward(x).tolist() == [[3.0, -6.0]]
    assert reg.build("nnx_twin_b:twin").forward(x).tolist() == [[3.0, -6.0]]  # PEP 503 spelling
    with pytest.raises(UnknownComponentError, match="'nnx-twin-c' does not register 'twin'"):
        reg.get("nnx-twin-c:twin")


def test_a_plugin_shadowing_a_built_in_makes_it_ambiguous_not_replaced(broken):
    from nnx.activations import Tanh

    with pytest.raises(AmbiguousComponentError, match="'nnx:tanh' or 'nnx-twin-b:tanh'"):
        registry("activations").get("tanh")
    assert registry("activations").get("nnx:tanh") is Tanh
    net = mlp(2, [3], 1, activation="nnx-twin-b:twin", rng=np.random.default_rng(0))
    assert net.specs()[1]["name"] == "nnx-twin-b:twin"  # a network describes it unambiguously


# -- NNX_DISABLE_PLUGINS -----------------------------------------------------------------------
def test_disable_plugins_hides_every_other_distribution(broken, monkeypatch):
    reg = registry("activations")
    reg.load_all()
    assert reg.failures()
    monkeypatch.setenv("NNX_DISABLE_PLUGINS", "1")
    assert not {"cube", "twin", "exploding"} & set(reg.names())
    assert {e.distribution for e in reg.entries()} == {"nnx"}
    assert reg.failures() == {}
    assert reg.get("tanh").__module__ == "nnx.activations"  # no longer ambiguous
    with pytest.raises(UnknownComponentError, match="comes from nnx-broken.*NNX_DISABLE_PLUGINS"):
        reg.get("cube")
    monkeypatch.setenv("NNX_DISABLE_PLUGINS", "0")
    assert "cube" in reg.names()


# -- python -m nnx.list ------------------------------------------------------------------------
def test_list_json_reports_failures_and_still_lists_built_ins(plugin_dir, tmp_path):
    done = run_python("-m", "nnx.list", "--json", pythonpath=plugin_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    rows = {(c["kind"], c["name"], c["distribution"]): c for c in listing["components"]}
    relu = rows["activations", "relu", "nnx"]
    assert relu["value"] == "nnx.activations:ReLU" and relu["summary"].startswith("y = max(x, 0)")
    assert rows["activations", "cube", "nnx-broken"]["summary"] == "y = x**3; dy/dx = 3 x**2."
    assert rows["activations", "cube", "nnx-broken"]["version"] == "0.1"
    assert ("optimizers", "adam", "nnx") in rows and ("datasets", "xor", "nnx") in rows
    failures = {(f["kind"], f["name"]): f for f in listing["failures"]}
    assert set(failures) == {(KIND[g], n) for n, (g, _, _) in BROKEN.items()}
    for name, (group, value, reason) in BROKEN.items():
        failure = failures[KIND[group], name]
        assert failure["distribution"] == "nnx-broken"
        assert failure["entry_point"] == f"{name} = {value}"
        assert reason in failure["error"]
    assert {"kind": "activations", "name": "twin",
            "distributions": ["nnx-twin-a", "nnx-twin-b"]} in listing["duplicates"]


def test_list_plain_and_kind_filter(plugin_dir, tmp_path):
    done = run_python("-m", "nnx.list", "--kind", "activations", pythonpath=plugin_dir,
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("activations (")
    assert not [line for line in out.splitlines() if line.startswith(("losses (", "layers ("))]
    assert "note: activation 'twin' is registered by nnx-twin-a and nnx-twin-b" in out
    failed = out.split("failed to load (6)\n")[1]
    assert "nnx-broken 0.1" in failed and "exploding = nnx_broken_boom:Exploding" in failed
    lines = out.splitlines()
    relu = next(line for line in lines if line.split()[:2] == ["relu", "nnx"])
    header = next(line for line in lines if line.lstrip().startswith("NAME"))
    assert relu.index("nnx") == header.index("DISTRIBUTION")  # aligned columns


def test_list_unknown_kind_exits_non_zero_naming_the_valid_kinds(tmp_path):
    done = run_python("-m", "nnx.list", "--kind", "gadgets", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown kind 'gadgets'; valid kinds: layers, activations, losses" in done.stderr
    assert done.stdout == ""


def test_list_kind_takes_the_singular_too(capsys):
    """``--kind loss`` means losses (it used to try "losss"); the singular comes from KINDS."""
    from nnx.list import main

    assert main(["--json", "--kind", "loss", "--kind", "activation"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {c["kind"] for c in listing["components"]} == {"losses", "activations"}


def test_list_with_plugins_disabled(plugin_dir, tmp_path):
    done = run_python("-m", "nnx.list", "--json", "--kind", "activations", pythonpath=plugin_dir,
                      cwd=tmp_path, NNX_DISABLE_PLUGINS="1")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert {c["distribution"] for c in listing["components"]} == {"nnx"}
    assert listing["failures"] == [] and listing["duplicates"] == []


# -- the example plugin, installed for real ----------------------------------------------------
@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """experiments/plugins/nnx-example-plugin installed with pip into a throwaway folder."""
    # Built from a copy: setuptools leaves build/ and *.egg-info/ beside the sources it builds.
    source = tmp_path_factory.mktemp("example-source") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    target = tmp_path_factory.mktemp("example-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
         "--target", str(target), str(source)],
        env={**os.environ, "PIP_FIND_LINKS": ""}, capture_output=True, text=True, timeout=180,
        check=False)
    assert done.returncode == 0, f"pip could not install {EXAMPLE}:\n{done.stdout}{done.stderr}"
    assert (target / "nnx_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


EXAMPLE_COMPONENTS = {("activations", "mish"), ("layers", "rms_norm"), ("losses", "log_cosh"),
                      ("optimizers", "lion"), ("datasets", "checkerboard")}


def test_example_plugin_is_listed(example_site, tmp_path):
    done = run_python("-m", "nnx.list", "--json", pythonpath=example_site, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    mine = {(c["kind"], c["name"]): c for c in listing["components"]
            if c["distribution"] == "nnx-example-plugin"}
    assert set(mine) == EXAMPLE_COMPONENTS
    assert {c["version"] for c in mine.values()} == {"0.1.0"}
    assert mine["optimizers", "lion"]["value"] == "nnx_example_plugin.optimizers:Lion"
    assert not [f for f in listing["failures"] if f["distribution"] == "nnx-example-plugin"]


def test_example_plugin_passes_its_own_tests_against_the_installed_copy(example_site, tmp_path):
    done = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"),
                      pythonpath=example_site, cwd=tmp_path, timeout=120,
                      PYTHONDONTWRITEBYTECODE="1")  # leave the source tree as it was
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_example_plugin_trains_through_nnx_run(example_site, tmp_path):
    run_dir = tmp_path / "run"
    done = run_python(
        "-m", "nnx.run", "experiment=xor", "dataset=checkerboard", "dataset.n_samples=64",
        "dataset.n_test=32", "model.activation=mish", "loss=log_cosh", "optimizer=lion",
        "optimizer.lr=0.01", "tracking=none", "trainer.epochs=5", "print_predictions=false",
        f"hydra.run.dir={run_dir}", pythonpath=example_site, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dataset checkerboard (64 train, 0 validation, 32 test)" in done.stdout + done.stderr
    composed = (run_dir / ".hydra" / "config.yaml").read_text()
    for line in ("name: lion", "name: log_cosh", "activation: mish", "name: checkerboard"):
        assert line in composed


def test_example_plugin_layer_trains_in_a_sequential_model(example_site, tmp_path):
    done = run_python(
        "-m", "nnx.run", "model=sequential",
        "model.layers=[{name: dense, units: 16}, rms_norm, relu, {name: dense, units: 2}]",
        "dataset=moons", "tracking=none", "trainer.epochs=3", f"hydra.run.dir={tmp_path / 'run'}",
        pythonpath=example_site, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # 2-16 dense, rms_norm's scale and shift (16 each), 16-2 dense
    assert "dataset moons (320 train, 80 validation, 200 test), 114 parameters" in done.stdout + done.stderr


def test_example_plugin_passes_the_kit_and_leaves_cleanly(example_site, on_path):
    from nnx.list import collect
    from nnx.testing import check_component

    def example_entries():
        listing = collect(["activations", "layers", "losses", "optimizers", "datasets"])
        return {(c["kind"], c["name"]) for c in listing["components"]
                if c["distribution"] == "nnx-example-plugin"}

    installed_here = example_entries()  # e.g. by experiments/plugins/check_example_plugin.sh
    on_path(example_site)
    assert example_entries() == EXAMPLE_COMPONENTS
    for kind, name in sorted(EXAMPLE_COMPONENTS):
        check_component(kind, name)
    assert registry("activations").get("mish").__module__ == "nnx_example_plugin.activations"
    # off the path again: gone from the registry and the listing, and nothing else broke
    sys.path.remove(str(example_site))
    reset()
    _forget_plugin_modules()
    if installed_here:
        pytest.skip("nnx-example-plugin is also installed in this environment; "
                    "uninstall it to check that removing it removes it cleanly")
    assert example_entries() == set()
    with pytest.raises(UnknownComponentError, match="unknown activation 'mish'"):
        registry("activations").get("mish")
    assert registry("activations").failures() == {}
