"""On resume every config difference from the checkpoint is applied and recorded, or refused
before training (nnx.resume_check); every schedule resumes bit-identically or refuses the new
length; a loss that explodes while staying finite stops the run (nnx.divergence)."""

from __future__ import annotations

import pytest
from test_resume import BASE, assert_identical, train

import nnx.run  # noqa: F401 - registers generated config nodes
from nnx import checkpoint, experiment
from nnx.config import ConfigError
from nnx.registry import registry
from nnx.run import compose
from nnx.trainer import STOP, Callback, NonFiniteError, TrainingInterrupted


def stopped_after(tmp, overrides: list[str], epoch: int) -> None:
    """Train as ``overrides`` say, stopped (as by SIGTERM) after ``epoch`` epochs."""

    class Signal(Callback):
        def on_epoch_end(self, trainer, e, logs):
            if e == epoch - 1:
                STOP.request("stopped by SIGTERM", 143)

    cfg = compose([*BASE, *overrides])
    cfg["trainer"]["checkpoint_dir"] = str(tmp)
    trainer, ds, out_features = experiment.build(cfg)
    trainer.callbacks.append(Signal())
    try:
        with pytest.raises(TrainingInterrupted):  # the data experiment.train would give it
            trainer.fit(*experiment.fit_data(cfg, ds, trainer.loss, out_features))
    finally:
        STOP.clear()


SCHEDULES = {name: [f"schedule={name}"] for name in registry("schedules").names()}
SCHEDULES["warmup-cosine"] = ["schedule=warmup", "schedule.warmup_epochs=1",
                              "schedule.then=cosine"]
SCHEDULES["step"] = ["schedule=step", "schedule.step_size=2", "schedule.gamma=0.5"]
SCHEDULES["warmup"] = ["schedule=warmup", "schedule.warmup_epochs=2"]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_resumes_bit_identically_or_refuses_a_new_length(tmp_path, name):
    """Stopped after 3 of 6 epochs and resumed: identical to 6 straight, for every schedule.
    Trained for 3 and resumed to 6: identical to 6 straight where the schedule's first 3
    factors do not depend on the length; refused, naming trainer.epochs, where they do."""
    overrides = SCHEDULES[name]
    straight = train(tmp_path / "straight", [*overrides, "trainer.epochs=6"])
    stopped_after(tmp_path / "stopped", [*overrides, "trainer.epochs=6"], 3)
    resumed = train(tmp_path / "resumed", [*overrides, "trainer.epochs=6",
                                           f"trainer.resume={tmp_path / 'stopped'}"])
    assert_identical(straight, resumed)

    train(tmp_path / "short", [*overrides, "trainer.epochs=3"])
    schedule = experiment.build_component("schedule", compose([*BASE, *overrides])["schedule"])
    depends = any(schedule(e, 3) != schedule(e, 6) for e in range(3))
    resume = [*overrides, "trainer.epochs=6", f"trainer.resume={tmp_path / 'short'}"]
    if depends:
        with pytest.raises(ConfigError, match=r"trainer.epochs: 3 -> 6 \(checkpoint -> this "
                           r"run\) is refused: schedule .* depends on the run's length"):
            train(tmp_path / "extended", resume)
    else:
        extended = train(tmp_path / "extended", resume)
        assert_identical(straight, extended)
        assert extended["trainer"].resume_changes == [
            {"key": "trainer.epochs", "old": 3, "new": 6, "from_epoch": 4}]
    assert name not in ("cosine", "warmup-cosine") or depends
    assert name not in ("constant", "step", "exponential", "warmup") or not depends


def test_a_changed_learning_rate_is_applied_and_recorded(tmp_path, store):
    """optimizer.lr=0.1 over a run trained at 0.001: the rate used (the lr metric) is 0.1 from
    the checkpoint's epoch on, and the run's tag nnx.resume_changes says so."""
    from mlflow.tracking import MlflowClient

    train(tmp_path / "first", ["optimizer.lr=0.001", "trainer.epochs=2"])
    cfg = compose([*BASE[:-1], "optimizer.lr=0.1", "trainer.epochs=4",
                   f"trainer.resume={tmp_path / 'first'}", f"tracking.uri={store}",
                   "tracking.plots=false", "tracking.log_model=false"])
    cfg["trainer"]["checkpoint_dir"] = str(tmp_path / "second")
    result = experiment.train(cfg)
    assert [row["lr"] for row in result["trainer"].history] == [0.001, 0.001, 0.1, 0.1]
    run = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name(
        "spirals").experiment_id])[0]
    assert run.data.params["optimizer.lr"] == "0.1"
    # the resumed run's own epochs, 3 and 4, at the new rate
    assert [(m.step, m.value) for m in MlflowClient(store).get_metric_history(
        run.info.run_id, "train/lr")] == [(3, 0.1), (4, 0.1)]
    assert '"key": "optimizer.lr", "old": 0.001, "new": 0.1, "from_epoch": 3' in \
        run.data.tags["nnx.resume_changes"]
    saved = checkpoint.read(tmp_path / "second" / "last.npz")[0]["extra"]["config"]
    assert saved["optimizer"]["lr"] == 0.1 and "tracking" not in saved


@pytest.mark.parametrize(("change", "message"), [
    ("model.hidden=[32]", r"model.hidden: \[64, 64\] -> \[32\]"),
    ("model.activation=tanh", r'model.activation: "relu" -> "tanh"'),
    ("trainer.batch_size=16", r"trainer.batch_size: 32 -> 16"),
    ("seed=1", r"seed: 0 -> 1"),
    ("optimizer=sgd", r'optimizer.name: "adam" -> "sgd"'),
])
def test_a_change_that_cannot_apply_is_refused_before_training(tmp_path, change, message):
    train(tmp_path / "first", ["trainer.epochs=2"])
    with pytest.raises(ConfigError, match=r"trainer.resume: checkpoint .*last.npz does not match "
                       r"this run in settings that cannot change on resume \(checkpoint -> this "
                       r"run\): " + message):
        experiment.build(compose([*BASE, change, "trainer.epochs=4",
                                  f"trainer.resume={tmp_path / 'first'}"]))


def test_a_finite_explosion_stops_the_run_saying_how_to_turn_the_check_off(tmp_path):
    """Adam at lr=1e30 stays finite (loss ~1e29) but passes 1e4 x its first value."""
    with pytest.raises(NonFiniteError, match=r"training diverged at epoch 1, step \d+ \(at the "
                       r"end of the epoch\): the loss .* is more than trainer.divergence_factor="
                       r"10000 times its first value .*set trainer.divergence_factor=0 to turn "
                       r"this check off"):
        train(tmp_path / "lr", ["optimizer.lr=1e30", "trainer.epochs=3"])
    off = train(tmp_path / "off", ["optimizer.lr=1e30", "trainer.epochs=3",
                                   "trainer.divergence_factor=0"])
    assert off["metrics"]["loss"] > 1e20
