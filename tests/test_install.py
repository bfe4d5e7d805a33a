"""nnx as a package: configs found through the package ``nnx.conf``, runs from any folder (the
default store and the git commit follow the working directory), a user's own configs and a
plugin's composed with nnx's, the ``nnx`` command, and the bad input around them.

Real wheel and sdist installs into fresh virtualenvs take minutes; ``.ci/check-install`` does
those. These tests use the editable install the suite runs in.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

import nnx.run
from nnx.locations import checkout, conf_dir, default_store, plugin_conf_dirs
from nnx.registry import reset
from nnx.run_metadata import git_state
from nnx.store import ENV_URI, resolve_uri

ROOT = Path(__file__).resolve().parents[1]
USER_PROJECT = ROOT / "experiments" / "user_project"
NNX = Path(sys.executable).with_name("nnx")  # the console script of this environment


def run(*args: str, cwd: Path, timeout: int = 120, user: int | None = None, **env):
    """A command in a clean environment: no store, plugin or path settings of the caller's."""
    environ = {k: v for k, v in os.environ.items()
               if k not in (ENV_URI, "NNX_DISABLE_PLUGINS", "PYTHONPATH", "NNX_DEBUG")}
    environ.update(env)
    return subprocess.run(list(args), cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout, check=False, user=user)


def nnx_run(*args: str, cwd: Path, **kw):
    return run(sys.executable, "-m", "nnx.run", *args, cwd=cwd, **kw)


# -- where the configs come from ---------------------------------------------------------------
def test_configs_resolve_through_the_package_nnx_conf():
    """One place: the package nnx.conf, which the editable install maps to the checkout's conf/;
    nnx.run reads the same folder."""
    package = importlib.resources.files("nnx.conf")
    assert Path(str(package)).resolve() == (ROOT / "conf").resolve() == conf_dir().resolve()
    assert nnx.run.CONF_DIR == conf_dir()
    assert (conf_dir() / "config.yaml").is_file()


def test_hydra_finds_the_same_configs_by_package_and_by_folder():
    """``pkg://nnx.conf`` (Hydra's importlib source) and the folder compose the same config."""
    with hydra.initialize_config_module(config_module="nnx.conf", version_base="1.3"):
        by_package = OmegaConf.to_container(hydra.compose("config", ["experiment=tutorial"]))
    assert by_package == nnx.run.compose(["experiment=tutorial"])
    assert by_package["optimizer"] == {"name": "sgd", "lr": 1.0, "momentum": 0.0,
                                       "nesterov": False, "weight_decay": 0.0, "clip_norm": 0.0,
                                       "decay_all": False}


def test_pyproject_ships_every_package_and_every_config():
    """A package folder missing from ``packages`` or a config file outside the package-data
    globs would be missing from wheels and sdists but present here."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"] == {"nnx.conf": "conf"}
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("nnx", "hydra_plugins")
             for p in (ROOT / top).rglob("__init__.py")}  # hydra_plugins: a namespace package
    assert set(project["packages"]) == found | {"nnx.conf"}
    globs = project["package-data"]["nnx.conf"]
    configs = {p for p in (ROOT / "conf").rglob("*") if p.is_file() and p.suffix != ".pyc"
               and "__pycache__" not in p.parts}
    shipped = {p for g in globs for p in (ROOT / "conf").glob(g)} | {ROOT / "conf/__init__.py"}
    assert configs == shipped, sorted(str(p) for p in configs ^ shipped)


# -- runs from any folder ----------------------------------------------------------------------
def test_default_store_is_the_working_directory_or_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_URI, raising=False)
    assert checkout(tmp_path) is None and default_store(tmp_path) == tmp_path / "mlflow.db"
    assert checkout(ROOT / "experiments" / "digits") == ROOT
    assert default_store(ROOT / "experiments" / "digits") == ROOT / "mlflow.db"
    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.chdir(ROOT / "experiments")
    assert resolve_uri(None) == f"sqlite:///{ROOT}/mlflow.db"
    monkeypatch.setenv(ENV_URI, "elsewhere.db")  # the variable still wins, made absolute
    assert resolve_uri(None) == f"sqlite:///{(ROOT / 'experiments' / 'elsewhere.db').resolve()}"


def test_git_commit_is_the_working_directory_s_repository(tmp_path, monkeypatch):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    assert git_state() is None  # not a repository
    repo = tmp_path / "mine"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "first"]):
        subprocess.run([git, *args], cwd=repo, env=env, check=True, capture_output=True)
    head = subprocess.run([git, "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    assert git_state() == (head, False)


@pytest.mark.slow
def test_a_tracked_run_from_an_empty_folder_stores_there_and_says_where(tmp_path):
    """The acceptance run, on the editable install: mlflow.db in the working directory, named
    at the end with the command that browses it."""
    done = nnx_run("experiment=tutorial", "trainer.epochs=20", cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "predictions: " in done.stdout
    db = tmp_path / "mlflow.db"
    assert db.is_file() and (tmp_path / "outputs").is_dir()
    assert f"in {db} (browse: mlflow ui --backend-store-uri sqlite:///{db})" in done.stdout


# -- the nnx command ---------------------------------------------------------------------------
def test_nnx_command_dispatches_and_passes_hydra_arguments_through(tmp_path):
    assert NNX.is_file(), f"{NNX} missing: reinstall (make install)"
    usage = run(str(NNX), cwd=tmp_path)
    assert usage.returncode == 2 and "nnx run" in usage.stdout and "nnx compare" in usage.stdout
    wrong = run(str(NNX), "train", cwd=tmp_path)
    assert wrong.returncode == 2 and "unknown command 'train'" in wrong.stderr
    args = ("--config-dir", str(USER_PROJECT / "conf"), "experiment=noisy_moons", "--cfg", "job")
    by_script = run(str(NNX), "run", *args, cwd=tmp_path)
    by_module = nnx_run(*args, cwd=tmp_path)
    assert by_script.returncode == by_module.returncode == 0, by_script.stderr
    assert by_script.stdout == by_module.stdout and "nesterov: true" in by_script.stdout
    listed = json.loads(run(str(NNX), "list", "--json", "--kind", "optimizers",
                            cwd=tmp_path).stdout)
    assert {"sgd", "adam"} <= {c["name"] for c in listed["components"]}
    assert not list(tmp_path.glob("*")), "--cfg and list write nothing"
    sweep = run(str(NNX), "run", "-m", "experiment=xor", "optimizer=sgd,adam", "tracking=none",
                "trainer.epochs=2", "print_predictions=false", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert sorted(p.name for p in tmp_path.glob("multirun/*/*/*") if p.is_dir()) == ["0", "1"]


# -- a user's own configs, a plugin's configs --------------------------------------------------
def test_the_example_user_project_composes_with_nnx_s_groups():
    conf = USER_PROJECT / "conf"
    cfg = nnx.run.compose(["experiment=noisy_moons"], config_dir=conf)
    assert cfg["dataset"]["noise"] == 0.3 and cfg["dataset"]["name"] == "moons"  # theirs
    assert cfg["optimizer"]["nesterov"] is True and cfg["schedule"]["name"] == "cosine"
    assert cfg["loss"]["name"] == "softmax_cross_entropy"  # nnx's default, untouched
    variant = nnx.run.compose(["experiment=noisy_moons_adam"], config_dir=conf)
    assert variant["optimizer"]["name"] == "adam" and variant["dataset"] == cfg["dataset"]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        nnx.run.compose([], config_dir=conf / "missing")


@pytest.mark.slow
def test_the_example_user_project_runs_from_its_own_folder(tmp_path):
    project = tmp_path / "user_project"
    shutil.copytree(USER_PROJECT / "conf", project / "conf")
    done = run(str(NNX), "run", "--config-dir", "conf", "experiment=noisy_moons",
               "trainer.epochs=2", "tracking.plots=false", "tracking.log_model=false",
               cwd=project, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nnx noisy_moons: dataset moons (800 train, 200 validation, 500 test)" in done.stdout
    assert (project / "mlflow.db").is_file() and (project / "outputs").is_dir()


@pytest.fixture
def plugin_with_configs(tmp_path, monkeypatch):
    """An installed distribution (dist-info on sys.path) that ships a config tree through the
    ``nnx.configs`` entry point: a tuned option for a built-in and one named like nnx's own."""
    site = tmp_path / "site"
    info = site / "nnx_tuned-0.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnx-tuned\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[nnx.configs]\ntuned = nnx_tuned.conf\n")
    tree = site / "nnx_tuned" / "conf" / "optimizer"
    tree.mkdir(parents=True)
    for package in (site / "nnx_tuned", tree.parent):
        (package / "__init__.py").write_text("")
    (tree / "sgd_tuned.yaml").write_text("name: sgd\nlr: 0.3\nmomentum: 0.95\n")
    (tree / "sgd.yaml").write_text("name: sgd\nlr: 123.0\n")  # never reached: nnx's comes first
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("NNX_DISABLE_PLUGINS", raising=False)
    reset()
    yield site
    monkeypatch.undo()
    reset()
    for module in [m for m in sys.modules if m.startswith("nnx_tuned")]:
        del sys.modules[module]


def test_a_plugin_ships_configs_after_nnx_s_own(plugin_with_configs, tmp_path, monkeypatch):
    assert plugin_conf_dirs() == [("nnx-tuned", (plugin_with_configs / "nnx_tuned/conf"))]
    cfg = nnx.run.compose(["optimizer=sgd_tuned"])
    assert cfg["optimizer"] == {"name": "sgd", "lr": 0.3, "momentum": 0.95}
    assert nnx.run.compose(["optimizer=sgd"])["optimizer"]["lr"] == 0.01  # nnx's sgd.yaml
    monkeypatch.setenv("NNX_DISABLE_PLUGINS", "1")
    assert plugin_conf_dirs() == []
    done = nnx_run("--info", "searchpath", cwd=tmp_path, PYTHONPATH=str(plugin_with_configs))
    assert "nnx.configs nnx-tuned" in done.stdout, done.stdout + done.stderr


def test_a_plugin_naming_a_missing_config_package_is_skipped_with_a_warning(tmp_path):
    site = tmp_path / "site"
    info = site / "nnx_gone-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnx-gone\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nnx.configs]\ngone = nnx_gone.conf\n")
    done = nnx_run("experiment=tutorial", "--cfg", "job", cwd=tmp_path, PYTHONPATH=str(site))
    assert done.returncode == 0, done.stderr
    assert ("nnx: warning: nnx-gone[gone] in nnx.configs: cannot use package 'nnx_gone.conf' "
            "(ModuleNotFoundError") in done.stderr
    assert "Traceback" not in done.stderr


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("form", [["--config-dir", "confs"], ["--config-dir=confs"],
                                  ["-cd", "confs"]])
def test_a_config_dir_that_does_not_exist(tmp_path, form):
    done = nnx_run(*form, "experiment=tutorial", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"nnx: error: {form[0].split('=')[0]} confs: no such folder "
                                  f"{tmp_path / 'confs'}. Give the folder that holds your own")
    assert len(done.stderr.strip().splitlines()) == 1  # one paragraph


def test_a_user_experiment_naming_an_unknown_option(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    bad = tmp_path / "conf" / "experiment" / "mine.yaml"
    bad.write_text("# @package _global_\ndefaults:\n  - override /optimizer: adamm\n"
                   "name: mine\n")
    done = nnx_run("-cd", "conf", "experiment=mine", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"nnx: error: {bad}: its defaults entry `override /optimizer: "
                              "adamm` names no option of the group optimizer. Did you mean "
                              "'adam'? Valid options: adagrad, adam, adamw, rmsprop, sgd")
    assert message.endswith("Fix the entry in that file") and "\n" not in message
    # through an experiment it builds on, too
    (bad.parent / "outer.yaml").write_text("# @package _global_\ndefaults:\n  - mine\n")
    done = nnx_run("-cd", "conf", "experiment=outer", cwd=tmp_path)
    assert done.returncode == 2 and f"nnx: error: {bad}: its defaults entry" in done.stderr


# As root (CI) a mode-555 folder is still writable: a read-only bind mount of it in a private
# mount namespace is not (nothing changes outside the namespace).
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift && exec "$@"'


@pytest.fixture
def unwritable(tmp_path):
    """(folder, prefix): a folder that a command run behind ``prefix`` cannot write, with that
    command's working directory set to it."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(folder)]
        folder.chmod(0o755)
        return
    prefix = ["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(folder)]
    probe = subprocess.run([*prefix, "touch", "probe"], capture_output=True, text=True,
                           check=False)
    if shutil.which("unshare") is None or "Read-only" not in probe.stderr:
        pytest.skip(f"as root, and no read-only bind mount here: {probe.stderr.strip()}")
    yield folder, prefix


@pytest.mark.parametrize("where", ["run folder and store", "store"])
def test_a_working_directory_that_is_not_writable(unwritable, tmp_path, where):
    folder, prefix = unwritable
    args = ["experiment=tutorial", "trainer.epochs=2"]
    if where == "store":  # the run folder elsewhere: then the default store is what fails
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    done = run(*prefix, sys.executable, "-m", "nnx.run", *args, cwd=tmp_path, timeout=180)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if where == "store":
        assert f"nnx: error: cannot create the MLflow store {folder}/mlflow.db: {folder} is not " \
            "writable (" in done.stderr
        assert ("). The default store is mlflow.db in the working directory: run from a "
                "writable folder, or pick the store with tracking.uri=") in done.stderr
    else:
        assert done.stderr.startswith(f"nnx: error: the working directory {folder} is not "
                                      "writable (")
        assert "), and by default nnx writes there: the run folders" in done.stderr
        assert "hydra.run.dir=<writable folder>" in done.stderr
    assert not list(folder.iterdir())
