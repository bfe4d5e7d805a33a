"""Which way a metric improves: one rule (``nnx.metrics.higher_is_better``) for early stopping,
the sweep's direction and the comparison table."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from nnx import metrics as M
from nnx.sweep_callback import _direction
from nnx.trainer import EarlyStopping

BIGGER_IS_BETTER = ["accuracy", "val_accuracy", "test_accuracy", "r2", "val_r2", "test_r2"]
SMALLER_IS_BETTER = ["loss", "val_loss", "test_loss", "rmse", "val_rmse", "test_rmse",
                     "objective", "epoch_seconds", "grad_norm"]


@pytest.mark.parametrize("name", BIGGER_IS_BETTER)
def test_accuracy_and_r2_of_every_split_are_maximized(name):
    assert M.higher_is_better(name) and M.direction(name) == "maximize"


@pytest.mark.parametrize("name", SMALLER_IS_BETTER)
def test_losses_rmse_and_everything_else_are_minimized(name):
    assert not M.higher_is_better(name) and M.direction(name) == "minimize"


def test_a_sweeps_direction_decides_for_objective_only():
    assert M.higher_is_better("objective", "maximize")
    assert M.higher_is_better("objective", "MAXIMIZE")
    assert not M.higher_is_better("objective", "minimize")
    assert not M.higher_is_better("objective", None)  # no direction recorded: minimized
    # the objective's direction says nothing about the other metrics
    assert not M.higher_is_better("val_loss", "maximize")
    assert M.higher_is_better("val_accuracy", "minimize")


@pytest.mark.parametrize("name", BIGGER_IS_BETTER + SMALLER_IS_BETTER)
def test_early_stopping_and_the_sweep_follow_the_rule(name):
    assert EarlyStopping(name).sign == (-1.0 if M.higher_is_better(name) else 1.0)
    config = OmegaConf.create({"hydra": {"sweeper": {}}, "objective": name})
    assert _direction(config) == M.direction(name)


def test_a_sweeper_direction_wins_over_the_objectives_name():
    config = OmegaConf.create({"hydra": {"sweeper": {"direction": ["MAXIMIZE", "minimize"]}},
                               "objective": "val_loss"})
    assert _direction(config) == "maximize"


# -- where each metric is stored: sections of MLflow's UI -------------------------------------
@pytest.mark.parametrize(("name", "key"), [
    ("loss", "train/loss"), ("accuracy", "train/accuracy"), ("lr", "train/lr"),
    ("rmse", "train/rmse"), ("r2", "train/r2"),
    ("val_loss", "val/loss"), ("val_accuracy", "val/accuracy"), ("val_r2", "val/r2"),
    ("test_loss", "test/loss"), ("test_accuracy", "test/accuracy"),
    ("grad_norm", "diagnostics/grad_norm"), ("layer0.grad_norm", "diagnostics/layer0.grad_norm"),
    ("layer12.weight_norm", "diagnostics/layer12.weight_norm"),
    ("layer2.update_ratio", "diagnostics/layer2.update_ratio"),
    ("epoch_seconds", "time/epoch_seconds"), ("samples_per_second", "time/samples_per_second"),
    ("train_seconds", "time/train_seconds"), ("wall_seconds", "time/wall_seconds"),
    ("objective", "objective"), ("score", "score"),  # a plugin callback's metric: as it is
])
def test_each_metric_has_its_section_and_comes_back_by_its_name(name, key):
    assert M.stored_key(name) == key
    assert M.user_name(key) == name
    assert M.user_name(name) == name  # a store older than the sections: flat names already
    assert M.stored_keys(name) == ((key, name) if key != name else (name,))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_epoch_metric_is_stored_in_a_section_and_round_trips(task):
    names = M.epoch_metrics(task, validation=True) + ["layer0.weight_norm", "layer3.grad_norm"]
    keys = [M.stored_key(n) for n in names]
    assert all(k.split("/")[0] in {"train", "val", "time", "diagnostics"} for k in keys), keys
    assert len(set(keys)) == len(keys)
    assert [M.user_name(k) for k in keys] == names


def test_a_runs_metrics_read_back_from_either_key_scheme():
    new = {"train/loss": 0.5, "val/loss": 0.7, "objective": 0.7, "system/cpu": 3.0}
    old = {"loss": 0.5, "val_loss": 0.7, "objective": 0.7}
    assert M.user_metrics(new) == {"loss": 0.5, "val_loss": 0.7, "objective": 0.7,
                                   "system/cpu": 3.0}
    assert M.user_metrics(old) == old
    assert M.user_metrics({"val_loss": 1.0, "val/loss": 2.0}) == {"val_loss": 2.0}  # new wins


def test_values_measured_once_per_run():
    assert all(M.once_per_run(n) for n in ("objective", "test_loss", "test_accuracy",
                                           "train_seconds", "wall_seconds"))
    assert not any(M.once_per_run(n) for n in ("loss", "val_loss", "lr", "epoch_seconds",
                                               "grad_norm"))
