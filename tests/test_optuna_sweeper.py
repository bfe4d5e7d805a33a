"""nnx's Optuna sweeper: search-space syntax, samplers, pruners, stored studies, bad input.

The first half builds distributions, samplers and studies in this process; the second runs
``python -m nnx.run -m ...`` for real: pruning, a rerun continuing its study, the joblib and
submitit launchers, two sweeps sharing one study, a killed sweep, settings that cannot work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nnx import optuna_space as searchspace
from nnx import optuna_sweeper as S

ROOT = Path(__file__).resolve().parent.parent
# A spirals run of a few epochs with the sweeper and the search given on the command line.
SPIRALS = ["experiment=spirals", "hydra/sweeper=optuna", "trainer.epochs=4", "trainer.log_every=1"]
QUICK = ["tracking.plots=false", "tracking.log_model=false"]


# -- in this process -----------------------------------------------------------------------
def test_search_space_syntax_gives_these_distributions():
    space, fixed, literal = searchspace.parse_space(
        {"a": "interval(0.1, 0.5)", "b": "tag(log, interval(1e-4, 0.1))",
         "c": "tag(int, interval(1, 8))", "d": "choice(relu, tanh)", "e": "range(1, 5)",
         "f": "range(0.1, 0.5, 0.1)", "g": "shuffle(range(3))", "h": "choice([64,64],[128])",
         "i": "tag(log, range(1, 9))", "k": "3"},
        ["j=choice(sgd,adam)", "trainer.epochs=7"])
    assert space["a"] == FloatDistribution(0.1, 0.5)
    assert space["b"] == FloatDistribution(1e-4, 0.1, log=True)
    assert space["c"] == IntDistribution(1, 8)
    assert space["d"] == CategoricalDistribution(("relu", "tanh"))
    assert space["e"] == IntDistribution(1, 4)  # range stops before its end, as in Hydra
    assert space["f"].step == pytest.approx(0.1) and space["f"].high == pytest.approx(0.4)
    assert sorted(space["g"].choices) == [0, 1, 2]
    assert space["h"] == CategoricalDistribution(("[64,64]", "[128]"))
    assert space["i"] == IntDistribution(1, 8, log=True)
    assert space["j"] == CategoricalDistribution(("sgd", "adam"))
    assert fixed == {"k": "3", "trainer.epochs": "7"}
    assert literal == {"h": {"[64,64]", "[128]"}}


def test_a_trial_value_goes_back_as_the_override_that_means_it():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    literal = {"h": {"[64,64]"}}
    for key, value in [("h", "[64,64]"), ("d", "a b"), ("x", 1e-05), ("y", True), ("z", 3),
                       ("w", "it's")]:
        text = searchspace.override_text(key, value, literal)
        parsed = parser.parse_override(text).value()
        assert parsed == ([64, 64] if key == "h" else value), text
    for text in ("sqlite:////a b/it's.db", "C:\\dir\\", "a\\'b", "plain"):
        override = "++hydra.job.env_set.X=" + searchspace.quoted(text)
        assert parser.parse_override(override).value() == text


@pytest.mark.parametrize("expression,message", [
    ("interval(0.1)", "cannot parse 'interval(0.1)'"),
    ("tag(lg, interval(1, 2))", "unknown tag 'lg' (valid tags: log, int)"),
    ("tag(log, interval(0, 1))", "'tag(log, interval(0, 1))': "),
    ("interval(2, 1)", "'interval(2, 1)': "),
    ("tag(int, interval(0.5, 3))", "tag(int, ...) needs whole bounds, got 0.5, 3"),
    ("choice(a, a)", "a choice is listed twice"),
    ("tag(log, choice(1, 2))", "tag(log, ...) applies to interval and range only"),
])
def test_a_bad_search_space_expression_names_its_key_and_the_syntax(expression, message):
    with pytest.raises(S.SweepError) as error:
        searchspace.parse_space({"optimizer.lr": expression}, [])
    text = str(error.value)
    assert text.startswith("hydra.sweeper.params.optimizer.lr: ")
    assert message in text
    assert "interval(low, high), tag(log, interval(low, high))" in text


def test_pruners_by_name_and_with_arguments():
    classes = {name: type(S.make_pruner(name)).__name__ for name in S.PRUNERS}
    assert classes == {"none": "NopPruner", "median": "MedianPruner",
                       "percentile": "PercentilePruner",
                       "successive_halving": "SuccessiveHalvingPruner",
                       "hyperband": "HyperbandPruner"}
    assert S.make_pruner("percentile")._percentile == 25.0
    pruner = S.make_pruner({"name": "percentile", "percentile": 25.0, "n_warmup_steps": 3})
    assert isinstance(pruner, optuna.pruners.PercentilePruner)
    assert pruner._percentile == 25.0 and pruner._n_warmup_steps == 3
    assert isinstance(S.make_pruner(None), optuna.pruners.NopPruner)
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.pruner: unknown pruner 'medain' "
                       r"\(did you mean 'median'\?\); valid: none, median, percentile, "
                       r"successive_halving, hyperband$"):
        S.make_pruner("medain")
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.pruner\.warmup: MedianPruner takes "
                       r"no argument 'warmup'; valid: n_startup_trials, n_warmup_steps, "
                       r"interval_steps, n_min_trials$"):
        S.make_pruner({"name": "median", "warmup": 3})
    with pytest.raises(S.SweepError, match=r"hydra\.sweeper\.pruner: PercentilePruner"):
        S.make_pruner({"name": "percentile", "percentile": 150.0})


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "grid"])
def test_every_sampler_runs_a_small_study_inside_the_space(name):
    lr = "tag(log, range(1, 9))" if name == "grid" else "tag(log, interval(1e-4, 0.1))"
    space, _, _ = searchspace.parse_space(
        {"lr": lr, "width": "range(16, 80, 16)", "act": "choice(relu, tanh)"}, [])
    if name == "grid":  # a log range is no grid: give it as choices
        space["lr"] = CategoricalDistribution((1e-3, 1e-2))
    sampler = S.make_sampler({"name": name, "seed": 3}, space)
    assert type(sampler).__name__ == S.SAMPLERS[name]
    study = optuna.create_study(sampler=sampler)
    for _ in range(16 if name == "grid" else 6):
        trial = study.ask()
        values = {k: searchspace.suggest(trial, k, d) for k, d in space.items()}
        assert all(space[k]._contains(space[k].to_internal_repr(v)) for k, v in values.items())
        try:
            study.tell(trial, values["width"] * (2 if values["act"] == "relu" else 1))
        except RuntimeError:  # the grid sampler stops a complete study
            pass
    if name == "grid":  # 2 x 4 x 2 points, each once
        points = {tuple(t.params[k] for k in sorted(space)) for t in study.trials}
        assert len(study.trials) == len(points) == 16
        assert S.grid_left(study, space) == 0


def test_a_seed_repeats_a_sampler_and_a_rerun_moves_it_on():
    space = {"x": FloatDistribution(0.0, 1.0)}

    def first(sampler):
        study = optuna.create_study(sampler=sampler)
        return searchspace.suggest(study.ask(), "x", space["x"])

    same = [first(S.make_sampler({"name": "random", "seed": 5}, space)) for _ in range(2)]
    assert same[0] == same[1]
    assert first(S.make_sampler({"name": "random", "seed": 5}, space, done=8)) != same[0]


def test_samplers_and_grids_that_cannot_work():
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.sampler: unknown sampler 'tpee' "
                       r"\(did you mean 'tpe'\?\); valid: tpe, random, grid, cmaes$"):
        S.make_sampler({"name": "tpee"}, {})
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.params\.lr: the grid sampler needs "
                       r"choice\(\.\.\.\) or range\(\.\.\.\), not an interval"):
        S.make_sampler({"name": "grid"}, {"lr": FloatDistribution(0.1, 0.2)})
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.sampler\.n_startup: TPESampler takes"
                       r" no argument 'n_startup'; valid: .*n_startup_trials"):
        S.make_sampler({"name": "tpe", "n_startup": 3}, {})


def test_storages_open_by_url_and_a_bad_url_says_what_is_valid(tmp_path):
    for url in (f"journal://{tmp_path / 'a.journal'}", str(tmp_path / "b.journal"),
                f"sqlite:///{tmp_path / 'c.db'}"):
        storage = S.open_storage(url)
        optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)
        assert len(optuna.load_study(study_name="s", storage=S.open_storage(url)).trials) == 1
    for url, cause in [("nope://x", "nope"),
                       (f"journal://{tmp_path / 'missing' / 'x.journal'}", "no folder"),
                       (f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "unable to open")]:
        with pytest.raises(S.SweepError) as error:
            S.open_storage(url)
        assert str(error.value).startswith(f"hydra.sweeper.storage: cannot open {url!r}: ")
        assert cause in str(error.value)
        assert str(error.value).endswith("valid: journal:///<file> (or a plain file path), "
                                         "sqlite:///<file>, postgresql://..., mysql://..., "
                                         "grpc://<host>:<port>")


def test_stale_running_trials_are_failed_with_a_reason_and_live_ones_kept(tmp_path):
    storage = S.open_storage(f"journal://{tmp_path / 'optuna.journal'}")
    study = optuna.create_study(storage=storage, study_name="s")
    dead, alive = study.ask(), study.ask()
    storage.set_trial_system_attr(dead._trial_id, S.ATTR_HEARTBEAT, time.time() - 1000)
    storage.set_trial_system_attr(alive._trial_id, S.ATTR_HEARTBEAT, time.time())
    assert S.fail_stale_trials(study, storage, grace_period=60) == [dead.number]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING]
    assert trials[0].user_attrs["fail_reason"].startswith("stale: its sweep stopped (no heartbeat "
                                                          "for 1000 s, grace period 60 s)")


def sweeper_for(overrides: list[str], tmp_path: Path):
    """The sweeper Hydra would build for ``-m <overrides>``, with its composed config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import nnx.run

    with initialize_config_dir(config_dir=str(nnx.run.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "tracking=none",
                                           f"hydra.sweeper.storage=journal://{tmp_path}/o.journal"],
                      return_hydra_config=True)
    settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    settings.pop("_target_")
    sweeper = S.OptunaSweeper(**settings)
    sweeper.config = cfg
    return sweeper


@pytest.mark.parametrize("overrides,message", [
    (["hydra.sweeper.direction=maximize"],
     ("hydra.sweeper.direction: maximize contradicts objective 'val_loss', which is minimized; "
     "set hydra.sweeper.direction=minimize or null (it follows the objective)")),
    (["objective=val_accuracy", "hydra.sweeper.direction=minimize"],
     "hydra.sweeper.direction: minimize contradicts objective 'val_accuracy'"),
    (["hydra.sweeper.direction=up"], ("hydra.sweeper.direction: expected minimize, maximize or "
                                     "null (follow the objective), got 'up'")),
    (["hydra.sweeper.sampler.name=tpee"], "hydra.sweeper.sampler: unknown sampler 'tpee'"),
    (["hydra.sweeper.pruner=medain"], ("valid: none, median, percentile, successive_halving, "
                                      "hyperband")),
    (["hydra.sweeper.pruner=median", "objective=test_accuracy"],
     ("hydra.sweeper.pruner: median prunes on the objective every epoch, but 'test_accuracy' is "
     "measured once, after training")),
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials: expected an integer >= 1, got 0"),
    (['+params={optimizer.lrr: "interval(0.1, 0.2)"}'],
     ("hydra.sweeper.params.optimizer.lrr: 'optimizer.lrr' is not a key of the config (did you "
     "mean 'optimizer.lr'?)")),
    (['+params={model.activation: "tag(log, choice(relu, tanh))"}'],
     ("hydra.sweeper.params.model.activation: 'tag(log, choice(relu, tanh))': tag(log, ...) "
     "applies to interval and range only")),
])
def test_settings_that_cannot_work_fail_before_any_trial(overrides, message, tmp_path):
    extra = [o for o in overrides if o.startswith("+params=")]
    sweeper = sweeper_for(["experiment=spirals", "hparams_search=optuna",
                           *[o for o in overrides if o not in extra]], tmp_path)
    for item in extra:  # keys with dots inside hydra.sweeper.params, as a YAML file has them
        sweeper.params.update(yaml.safe_load(item[len("+params="):]))
    with pytest.raises(S.SweepError) as error:
        sweeper.open_study(sweeper.check([]))
    assert message in str(error.value)
    assert not (tmp_path / "o.journal").exists() or not optuna.get_all_study_names(
        S.open_storage(f"journal://{tmp_path}/o.journal"))


def test_a_stored_study_keeps_its_direction_and_its_choices(tmp_path):
    sweeper = sweeper_for(["experiment=spirals", "hparams_search=optuna"], tmp_path)
    study, _ = sweeper.open_study(sweeper.check([]))
    study.optimize(lambda t: len(t.suggest_categorical("model.activation", ["relu", "tanh"])),
                   n_trials=1)
    other = sweeper_for(["experiment=spirals", "hparams_search=optuna", "objective=val_accuracy"],
                        tmp_path)
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.direction: study 'spirals' in "
                       r"journal://.*o\.journal is stored with direction minimize, but objective "
                       r"'val_accuracy' is maximized; name another study"):
        other.open_study(other.check([]))
    changed = sweeper_for(["experiment=spirals", "hparams_search=optuna"], tmp_path)
    changed.params = {**changed.params, "model.activation": "choice(relu, elu)"}
    with pytest.raises(S.SweepError, match=r"^hydra\.sweeper\.params\.model\.activation: study "
                       r"'spirals' in .* searched it as choice\('relu', 'tanh'\) .*keep that, or "
                       r"start another study: hydra\.sweeper\.study_name=<new name>$"):
        changed.open_study(changed.check([]))


# -- python -m nnx.run -m ... --------------------------------------------------------------
def sweep(args: list[str], tmp_path: Path, name: str = "multirun", uri: str | None = None,
          background: bool = False, timeout: float = 240):
    env = {**os.environ, "NNX_TRACKING_URI": uri or f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "nnx.run", "-m", *args, f"hydra.sweep.dir={tmp_path / name}"]
    if background:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def study_in(url: str, name: str = "spirals"):
    return optuna.load_study(study_name=name, storage=S.open_storage(url))


def test_a_pruned_trial_stops_at_that_epoch_and_a_rerun_continues_the_study(store, tmp_path):
    # A two-point grid, one point per sweep: the grid's order for seed 1 puts the good learning
    # rate first, so the second sweep's trial (lr 1e-5, barely moving) is worse than the
    # first's at epoch 1, and the median pruner (no start-up trials) stops it there.
    args = [*SPIRALS, "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=1",
            "optimizer.lr=choice(0.03,0.00001)", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.pruner={name:median,n_startup_trials:0,n_warmup_steps:0}", *QUICK]
    first = sweep(args, tmp_path, "first", uri=store)
    assert first.returncode == 0, first.stderr[-3000:]
    second = sweep(args, tmp_path, "second", uri=store)
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert "pruned at epoch 1 by the median pruner (trial 1): val_loss" in out
    assert "study 'spirals': trial 1 in this sweep: 0 complete, 1 pruned, 0 failed " \
           "(2 in the study)" in out
    study = study_in(f"journal://{tmp_path / 'optuna.journal'}")  # beside the MLflow store
    assert [(t.number, t.state, t.params["optimizer.lr"]) for t in study.trials] == [
        (0, TrialState.COMPLETE, 0.03), (1, TrialState.PRUNED, 0.00001)]
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3, 4]
    assert sorted(study.trials[1].intermediate_values) == [1]
    # MLflow: a parent per sweep; the pruned child is FINISHED, tagged with its state and epoch
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("spirals")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.data.tags.get("nnx.sweep") == "true"]
    children = {r.data.tags["trial"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 2 and sorted(children) == ["0", "1"]
    assert {p.info.status for p in parents} == {"FINISHED"}
    for parent in parents:
        assert parent.data.tags["nnx.optuna.study"] == "spirals"
        assert parent.data.tags["nnx.optuna.storage"] == f"journal://{tmp_path / 'optuna.journal'}"
    pruned, complete = children["1"], children["0"]
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["nnx.trial_state"] == "pruned"
    assert pruned.data.tags["nnx.pruned_epoch"] == "1"
    assert [m.step for m in client.get_metric_history(pruned.info.run_id, "train/loss")] == [1]
    assert complete.data.tags["nnx.trial_state"] == "complete"
    assert complete.data.metrics["trial_value"] == pytest.approx(study.trials[0].value)
    assert parents[1].data.tags["nnx.trials.pruned"] == "1"
    assert parents[1].data.tags["nnx.optuna.best_trial"] == "0"
    assert "best_objective" not in parents[1].data.metrics  # a pruned run is not a result
    assert parents[0].data.metrics["best_objective"] == pytest.approx(study.trials[0].value)
    assert [a.path for a in client.list_artifacts(parents[0].info.run_id, "optuna")] == [
        "optuna/optimization_history.png"]
    from nnx.compare import runs_table

    table = runs_table(experiment="spirals", uri=store)
    assert sorted(table["status"]) == ["FINISHED", "PRUNED"]  # the trials (not the parents)


def test_joblib_workers_report_to_the_trials_they_run(tmp_path):
    done = sweep(["experiment=spirals", "hparams_search=optuna", "tracking=none",
                  "trainer.epochs=3", "trainer.log_every=1", "hydra.sweeper.n_trials=4",
                  "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                 tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = study_in(f"journal://{tmp_path / 'optuna.journal'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    # each job opened the study in its worker and reported every epoch to its own trial
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)
    assert all(t.value == t.intermediate_values[3] for t in study.trials)
    results = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    assert results["trials"] == [0, 1, 2, 3] and results["counts"]["complete"] == 4


def test_submitit_local_jobs_report_to_their_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = sweep([*SPIRALS, "optimizer.lr=interval(0.001,0.1)", "tracking=none",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                  "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = study_in(f"journal://{tmp_path / 'optuna.journal'}")
    assert {t.state for t in study.trials} == {TrialState.COMPLETE} and len(study.trials) == 2
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in study.trials)


def test_two_sweeps_at_once_add_their_trials_to_one_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    procs = [sweep([*SPIRALS, "optimizer.lr=tag(log,interval(0.001,0.1))", "tracking=none",
                    f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=3",
                    f"hydra.sweeper.sampler.seed={seed}"], tmp_path, f"sweep{seed}",
                   background=True) for seed in (1, 2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out[-3000:]
    study = study_in(url)
    assert [t.number for t in study.trials] == list(range(6))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    mine = [yaml.safe_load((tmp_path / f"sweep{s}" / "optimization_results.yaml").read_text())
            ["trials"] for s in (1, 2)]
    assert len(mine[0]) == len(mine[1]) == 3 and sorted(mine[0] + mine[1]) == list(range(6))


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_sweep_leaves_no_trial_running(how, tmp_path):
    # sqlite: a killed process's lock goes with it (a journal file's lock is broken only after
    # its 30 s grace period)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    long = [*SPIRALS[:2], "optimizer.lr=interval(0.001,0.1)", "tracking=none",
            f"hydra.sweeper.storage={url}",
            "trainer.epochs=100000000", "trainer.log_every=1", "trainer.progress=false",
            "hydra.sweeper.heartbeat_interval=0.5"]
    proc = sweep(long, tmp_path, "first", background=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (tmp_path / "optuna.db").exists():
                names = optuna.get_all_study_names(S.open_storage(url))
                if names and study_in(url).trials and study_in(url).trials[0].intermediate_values:
                    break  # training: its first epochs are reported
            time.sleep(0.3)
        else:
            raise AssertionError("the sweep never started training a trial")
        proc.send_signal(getattr(signal, how))
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    trial = study_in(url).trials[0]
    if how == "SIGINT":  # the sweep fails its own trial on the way out
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_reason"] == "the sweep was interrupted (exit status 130)"
    else:  # killed: left RUNNING, and failed as stale when the study is next opened
        assert trial.state == TrialState.RUNNING
        time.sleep(1.5)
    done = sweep([*SPIRALS, "optimizer.lr=interval(0.001,0.1)", "tracking=none",
                  "trainer.epochs=2", "hydra.sweeper.n_trials=1", "hydra.sweeper.grace_period=1",
                  f"hydra.sweeper.storage={url}"], tmp_path, "second")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study_in(url).trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
    if how == "SIGKILL":
        assert "failed 1 stale RUNNING trial(s) of an interrupted sweep: 0" in \
            done.stdout + done.stderr
        assert trials[0].user_attrs["fail_reason"].startswith("stale: its sweep stopped")


@pytest.mark.parametrize("args,message", [
    (["hydra.sweeper.pruner=medain"],
     ("nnx: error: hydra.sweeper.pruner: unknown pruner 'medain' (did you mean 'median'?); "
     "valid: none, median, percentile, successive_halving, hyperband")),
    (["hydra.sweeper.storage=nope://x"], ("nnx: error: hydra.sweeper.storage: cannot open "
                                         "'nope://x': ")),
    (["hydra.sweeper.direction=maximize"], ("nnx: error: hydra.sweeper.direction: maximize "
                                           "contradicts objective 'val_loss'")),
    (["optimizer.lr=tag(lg,interval(0.1,1))"],
     ("nnx: error: optimizer.lr (command line): 'tag(lg,interval(0.1,1))': unknown tag 'lg' "
     "(valid tags: log, int)")),
    (["hydra/sweeper/sampler=nope"], "Could not find 'hydra/sweeper/sampler/nope'"),
])
def test_bad_input_stops_the_sweep_before_any_trial_with_one_line(args, message, store, tmp_path):
    done = sweep(["experiment=spirals", "hparams_search=optuna", *args, *QUICK], tmp_path,
                 uri=store)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "Launching" not in done.stdout + done.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("spirals")
    assert exp is None or client.search_runs([exp.experiment_id]) == []  # no sweep ran


def test_an_untracked_sweep_stopped_before_any_trial_prints_the_error_alone(tmp_path):
    # no parent run to discard, but no epilogue either: it would rank no job ("0 jobs, ")
    done = sweep(["experiment=spirals", "hparams_search=optuna", "hydra.sweeper.pruner=medain",
                  "tracking=none"], tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "nnx: error: hydra.sweeper.pruner: unknown pruner 'medain' (did you mean 'median'?); "
        "valid: none, median, percentile, successive_halving, hyperband")


def test_failed_trials_are_failed_with_their_reason_and_counted(store, tmp_path):
    # every run fails while training (a learning rate that makes the loss NaN in the first
    # steps); max_failure_rate=1 lets the sweep go on through both
    done = sweep([*SPIRALS, "optimizer=sgd", "optimizer.lr=interval(1e299,1e300)",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.max_failure_rate=1.0", *QUICK],
                 tmp_path, uri=store)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trials 0-1 in this sweep: 0 complete, 0 pruned, 2 failed" in done.stdout + done.stderr
    study = study_in(f"journal://{tmp_path / 'optuna.journal'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert {t.user_attrs["fail_reason"] for t in study.trials} == {
        "the job exited with status 2"}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("spirals")
    children = [r for r in client.search_runs([exp.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert {(c.info.status, c.data.tags["nnx.trial_state"]) for c in children} == {
        ("FAILED", "failed")}
    assert all("training diverged at epoch 1" in c.data.tags["error"] for c in children)
