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
