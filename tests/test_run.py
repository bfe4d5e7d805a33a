"""``python -m nnx.run``: configs compose, every preset trains, bad input is rejected clearly."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx.run  # registers generated config nodes for components without YAML
from nnx import experiment
from nnx.config import GROUP_KINDS, ConfigError
from nnx.registry import registry
from nnx.run import compose

CONF = Path(nnx.run.CONF_DIR)
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# Presets on Fashion-MNIST train on the small IDX files the tests write (every machine has them);
# test_fashion_presets_train_on_the_real_files runs them where the real dataset is installed.
FASHION_PRESETS = [p for p in PRESETS if "override /dataset: fashion_mnist\n" in
                   (CONF / "experiment" / f"{p}.yaml").read_text()]


def group_options(group: str) -> list[str]:
    """Every option of a config group: YAML files plus every registered name."""
    files = {p.stem for p in (CONF / group).glob("*.yaml")}
    kind = GROUP_KINDS.get(group)
    return sorted(files | (set(registry(kind).names()) if kind else set()))


CASES = [(g, o) for g in ["dataset", "loss", "optimizer", "schedule", "model", "trainer",
                          "tracking", "debug"] for o in group_options(g)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes_and_builds(group, option):
    cfg = compose([f"{group}={option}", "tracking=none"] if group != "tracking"
                   else [f"{group}={option}"])
    if group in GROUP_KINDS:
        assert cfg[group]["name"] == option
        # The node holds the component's constructor arguments, and it builds from them.
        from nnx.config import DATASET_KEYS, build_component

        skip = DATASET_KEYS if group == "dataset" else ("name",)
        build_component(group, cfg[group], skip=skip)


def train_a_few_steps(preset: str, *overrides: str) -> dict:
    """Train ``preset`` for two short epochs (debug=default); returns experiment.train's result."""
    cfg = compose([f"experiment={preset}", "debug=default", "tracking=none", *overrides])
    result = experiment.train(cfg)
    logs, trainer, ds = result["metrics"], result["trainer"], result["dataset"]
    x_train, _, x_val, y_val = experiment.fit_data(cfg, ds, trainer.loss,
                                                   trainer.network.out_features)
    batch = cfg["trainer"]["batch_size"] or len(x_train)
    assert trainer.epoch == 2
    assert trainer.step == 2 * min(3, -(-len(x_train) // batch))  # limit_batches=3
    assert np.isfinite(logs["loss"])
    # the objective is the configured metric: recomputed here from the trained network on the
    # validation split (the test set never selects: a test_* objective is refused)
    split, _, metric = cfg["objective"].rpartition("_")
    assert split in ("", "val")
    if split:
        out = trainer.network.predict(x_val)
        if metric == "accuracy":
            labels = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
            truth = y_val if y_val.ndim == 1 else (y_val.argmax(axis=1) if y_val.shape[1] > 1
                                                   else (y_val[:, 0] > 0.5).astype(int))
            expected = float(np.mean(labels == truth))
        else:
            assert metric == "loss"
            expected = trainer.loss.forward(out, y_val)
    else:  # the training loss of the last epoch, as the history recorded it
        expected = trainer.history[-1][cfg["objective"]]
    assert logs["objective"] == pytest.approx(expected, rel=1e-6), cfg["objective"]
    return result


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_a_few_steps(preset, small_fashion_dir):
    shrink = []
    if preset in FASHION_PRESETS:
        shrink = [f"dataset.data_dir={small_fashion_dir}", "dataset.download=false"]
    result = train_a_few_steps(preset, *shrink)
    if preset in FASHION_PRESETS:  # it read the small files, not a dataset found elsewhere
        assert len(result["dataset"].x_test) == 100  # (100, 784) flat, (100, 1, 28, 28) shaped


@pytest.mark.needs_fashion_mnist
@pytest.mark.parametrize("preset", FASHION_PRESETS)
def test_fashion_presets_train_on_the_real_files(preset):
    result = train_a_few_steps(preset, "dataset.limit_train=512", "dataset.download=false")
    assert len(result["dataset"].x_test) == 10000


def test_presets_list_only_what_they_change():
    for preset in PRESETS:
        text = (CONF / "experiment" / f"{preset}.yaml").read_text()
        assert text.startswith("# @package _global_"), preset
        assert "\nname: " + preset in text, preset


def test_tutorial_acceptance(nnx_run, capsys, tmp_path):
    done = nnx_run(["experiment=tutorial", "tracking=none"])
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("predictions:"))
    predictions = np.array([float(v) for v in line.split(":")[1].split()])
    np.testing.assert_allclose(predictions, [0, 1, 1, 0], atol=0.05)
    # The README's "in a few lines of Python" prints these very numbers (its first line).
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = re.search(r"## The tutorial, in a few lines of Python\n.*?```python\n(.*?)```",
                        readme, re.DOTALL).group(1)
    (tmp_path / "readme_tutorial.py").write_text(snippet)
    runpy.run_path(str(tmp_path / "readme_tutorial.py"))
    printed = capsys.readouterr().out.splitlines()[0].strip("[]").split()
    assert printed == line.split(":")[1].split()


def test_in_all_time_is_the_whole_process(nnx_run):
    """The summary's "in all" counts from the interpreter's start (imports included), so it is
    never less than the training time printed beside it. Once it counted from ``train`` only."""
    done = nnx_run(["experiment=tutorial", "tracking=none"])
    assert done.returncode == 0, done.stderr
    steps, in_all = re.search(r"steps in ([\d.]+) s \(([\d.]+) s in all", done.stdout).groups()
    assert float(in_all) >= float(steps), done.stdout


def test_process_seconds_count_from_before_nnx_was_imported():
    """An order of clock readings, not a duration: the process started before ``nnx.run`` was
    imported, so its age is at least the time since that import (on Linux, from /proc)."""
    import time

    from nnx import run

    since_import = time.monotonic() - run._IMPORTED
    assert run.process_seconds() >= since_import


def test_digits_preset_reaches_097(nnx_run):
    done = nnx_run(["experiment=digits_mlp", "tracking=none"])
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test_accuracy (\d\.\d+)", done.stdout).group(1))
    assert accuracy >= 0.97


def test_sweep_basic_launcher_runs_six_jobs(nnx_run, tmp_path):
    done = nnx_run(["-m", "experiment=xor", "optimizer=sgd,adam",
                    "model.activation=sigmoid,tanh,relu", "tracking=none", "trainer.epochs=5"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("objective (loss)") == 6
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.is_dir()) == \
        [str(i) for i in range(6)]


def test_sweep_joblib_launcher_runs_six_jobs(nnx_run, tmp_path):
    done = nnx_run(["-m", "experiment=xor", "optimizer=sgd,adam",
                    "model.activation=sigmoid,tanh,relu", "tracking=none", "trainer.epochs=5",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert done.returncode == 0, done.stderr
    assert "joblib" in (tmp_path / "multirun" / "multirun.yaml").read_text()
    jobs = [p for p in (tmp_path / "multirun").iterdir() if p.is_dir()]
    assert len(jobs) == 6
    # every job ran to the end: each left its own log with the summary
    assert all("objective (loss)" in (p / "run.log").read_text() for p in jobs)


def test_optuna_search_reports_best(nnx_run):
    done = nnx_run(["-m", "experiment=spirals", "hparams_search=optuna",
                    "hydra.sweeper.n_trials=3", "trainer.epochs=2", "tracking=none"])
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "study 'spirals': trials 0-2 in this sweep: 3 complete, 0 pruned, 0 failed" in out
    # the sweep's epilogue (one for every sweeper) ranks the trials and names the best by what
    # it varied, numbers at 3 significant digits: "best: #1 lr=0.00443 ...: val_loss 1.01"
    assert re.search(r"^best: #[0-2] lr=[0-9.e+-]+ .*: val_loss [0-9.]+$", out, re.MULTILINE), out[-2000:]


@pytest.mark.parametrize("args,expected", [
    (["optimizer=nope"], "optimizer=nope: unknown optimizer 'nope'. Valid names: adagrad,"),
    (["optimizer.lr=abc"], "optimizer.lr: expected a number, got 'abc'"),
    (["optimizer.lr=-1"], "optimizer.lr: lr must be in (0.0, inf), got -1"),
    (["trainer.epochs=-1"], "trainer.epochs: expected an integer >= 1, got -1"),
    (["model.hidden=[0]"], "model.hidden: expected a list of positive integers, got [0]"),
    (["model.in_features=5"], "model.in_features: the model has 5 but dataset 'moons' needs 2"),
    (["model.activation=rleu"], "Did you mean 'relu'?"),
    (["experiment=nope"], "experiment=nope: unknown experiment 'nope'. Valid names: "),
    (["dtype=float16"], "dtype: expected one of float32, float64, got 'float16'"),
])
def test_bad_input_exits_non_zero_with_one_clear_message(nnx_run, args, expected):
    done = nnx_run([*args, "tracking=none"])
    assert done.returncode != 0
    assert expected in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_config_errors_name_the_key_in_process():
    cfg = compose(["optimizer=adam", "optimizer.beta1=1.5", "tracking=none"])
    with pytest.raises(ConfigError, match=r"optimizer\.beta1: beta1 must be in \[0.0, 1.0\), got 1.5"):
        experiment.train(cfg)


def test_compose_then_train_from_python_as_the_readme_shows():
    from nnx.experiment import train

    config = compose(["experiment=xor", "tracking=none"])
    assert config["dataset"]["name"] == "xor" and config["tracking"]["name"] == "none"
    result = train(config)
    assert sorted(result) == ["dataset", "metrics", "trainer"]
    assert result["metrics"]["test_accuracy"] == 1.0


def test_a_run_on_a_terminal_says_what_it_does_before_its_progress_bar(monkeypatch, store):
    """Loading data and opening the store take seconds before the first epoch (digits_mlp:
    ~10 s here): a terminal is told; a pipe or a log is not."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    overrides = ["experiment=xor", "trainer.epochs=2", f"tracking.uri={store}",
                 "tracking.plots=false", "tracking.log_model=false",
                 "tracking.system_metrics=false"]
    monkeypatch.setattr(sys, "stderr", Terminal())
    experiment.train(compose(overrides))
    lines = [line for line in sys.stderr.getvalue().splitlines() if line.startswith("nnx: ")]
    assert lines == ["nnx: loading dataset xor ...",
                     f"nnx: opening the MLflow store {store.removeprefix('sqlite:///')} ...",
                     "nnx: logging the network, its model and plots ..."]
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: nothing
    experiment.train(compose(overrides))
    assert "nnx: " not in sys.stderr.getvalue()
