"""Metrics computed from network outputs: accuracy for classification, RMSE and R^2 for regression.

Which way each metric improves is decided here too (``higher_is_better``), for early stopping,
the sweep's direction and the comparison table alike, and so is the key each metric is stored
under (``stored_key``, ``user_name``: ``val_loss`` is ``val/loss`` in MLflow).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np


def labels_from_outputs(outputs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per row: argmax for several outputs, ``output > threshold`` for one."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > threshold).astype(np.int64)
    return outputs.argmax(axis=1)


def labels_from_targets(targets: np.ndarray) -> np.ndarray:
    """True class per row from integer labels, one-hot rows, or a single 0/1 column."""
    if targets.ndim == 1:
        return targets.astype(np.int64, copy=False)
    if targets.shape[1] == 1:
        return (targets[:, 0] > 0.5).astype(np.int64)
    return targets.argmax(axis=1)


def accuracy(outputs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of rows whose predicted class equals the true class."""
    return float(np.mean(labels_from_outputs(outputs, threshold) == labels_from_targets(targets)))


def rmse(outputs: np.ndarray, targets: np.ndarray) -> float:
    """sqrt(mean((outputs - targets)**2))."""
    return float(np.sqrt(np.mean((outputs - targets.reshape(outputs.shape)) ** 2)))


def r2(outputs: np.ndarray, targets: np.ndarray) -> float:
    """1 - SS_res / SS_tot, pooled over output columns (1.0 is a perfect fit)."""
    targets = targets.reshape(outputs.shape)
    ss_res = float(np.sum((targets - outputs) ** 2))
    ss_tot = float(np.sum((targets - targets.mean(axis=0)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def higher_is_better(name: str, objective_direction: str | None = None) -> bool:
    """Whether larger values of the metric called ``name`` are better.

    Accuracy and R^2 of any split (``accuracy``, ``val_accuracy``, ``test_r2``: a name that
    contains ``accuracy`` or ends in ``r2``) are maximized; everything else (losses, RMSE,
    ``objective`` by default) is minimized. ``objective_direction`` ("maximize" or "minimize",
    as a sweep records it) decides for ``objective``, which is whatever metric the sweep
    optimized, and only for it.
    """
    if name == "objective" and objective_direction:
        return objective_direction.lower().startswith("max")
    return "accuracy" in name or name.endswith("r2")


def direction(name: str) -> str:
    """``"maximize"`` or ``"minimize"`` (Optuna's words) for the metric called ``name``."""
    return "maximize" if higher_is_better(name) else "minimize"


# What ``Trainer.evaluate`` measures on a whole set, per task (prefixed val_ or test_).
EVALUATED = {"classification": ("loss", "accuracy"), "regression": ("loss", "rmse", "r2")}
# What every training epoch reports, besides the per-layer weight statistics.
TRAINING = ("loss", "lr", "epoch_seconds", "samples_per_second", "grad_norm")


def epoch_metrics(task: str, validation: bool) -> list[str]:
    """The metrics a run of ``task`` reports every epoch, known before it trains: training
    metrics (with accuracy for classification) and, with a validation set, ``val_*``. Test
    metrics are measured once at the end and are not among them."""
    names = list(TRAINING) + (["accuracy"] if task == "classification" else [])
    if validation:
        names += [f"val_{m}" for m in EVALUATED[task]]
    return names


def objective_source(name: str) -> str:
    """Which set a metric is measured on: ``"val"``, ``"test"`` or ``"train"``."""
    return "val" if name.startswith("val_") else "test" if name.startswith("test_") else "train"


# -- where a metric is stored -----------------------------------------------------------------
# MLflow's UI groups a run's metrics into sections by the prefix before "/". In memory (the
# trainer's logs and history, the objective, early stopping's monitor, Optuna's pruning) a
# metric keeps the name users write (``val_loss``); in the store it gets its section
# (``val/loss``). One table of records, read both ways; every other rule derives from it.
@dataclasses.dataclass(frozen=True)
class Section:
    """Metrics of one section: the user's names that start with ``prefix`` (the prefix
    dropped in the stored key: ``val_loss`` -> ``val/loss``), or, with no prefix, those that
    ``holds`` (``grad_norm`` -> ``diagnostics/grad_norm``)."""

    name: str
    prefix: str = ""
    holds: Callable[[str], bool] = lambda name: False

    def takes(self, name: str) -> bool:
        return name.startswith(self.prefix) if self.prefix else self.holds(name)


SECTIONS = (
    Section("val", prefix="val_"),
    Section("test", prefix="test_"),
    Section("time", holds=lambda n: n.endswith("_seconds") or n == "samples_per_second"),
    Section("diagnostics", holds=lambda n: n == "grad_norm" or re.fullmatch(r"layer\d+\..+", n)
            is not None),
    Section("train", holds=lambda n: n in ("loss", "accuracy", "rmse", "r2", "lr")),
)
SECTION_NAMES = {section.name: section for section in SECTIONS}
# The metric that holds the run's objective (the value of the metric ``objective`` names), and
# the param that holds that name: stored apart, so the two no longer share the key "objective".
OBJECTIVE = "objective"
OBJECTIVE_PARAM = "objective_name"


def stored_key(name: str) -> str:
    """The key under which the metric ``name`` is stored: ``loss`` -> ``train/loss``,
    ``val_accuracy`` -> ``val/accuracy``, ``layer0.grad_norm`` -> ``diagnostics/layer0.grad_norm``,
    ``epoch_seconds`` -> ``time/epoch_seconds``; ``objective`` and names of no section (a
    plugin callback's) are stored as they are."""
    for section in SECTIONS:
        if section.takes(name):
            return f"{section.name}/{name[len(section.prefix):]}"
    return name


def user_name(key: str) -> str:
    """The name users write for the stored ``key``: the inverse of ``stored_key``. A key of a
    store written before the sections (``val_loss``) is already one."""
    section, slash, rest = key.partition("/")
    if slash and section in SECTION_NAMES:
        return SECTION_NAMES[section].prefix + rest
    return key


def user_metrics(stored: dict[str, float]) -> dict[str, float]:
    """A run's stored metrics under the users' names, from either key scheme (a key with its
    section wins over the flat key of an older store, should a run have both)."""
    out = {key: value for key, value in stored.items() if "/" not in key}
    out.update({user_name(key): value for key, value in stored.items() if "/" in key})
    return out


def stored_keys(name: str) -> tuple[str, ...]:
    """The keys the metric ``name`` may be stored under, newest scheme first: ``val_loss`` ->
    ``("val/loss", "val_loss")``; what reads a store tries them in turn."""
    key = stored_key(name)
    return (key,) if key == name else (key, name)


def once_per_run(name: str) -> bool:
    """Whether ``name`` is measured once per run (logged at step 0, a value and not a curve):
    the objective, the test metrics and the run's total times."""
    return name == OBJECTIVE or name.startswith("test_") or name in ("train_seconds",
                                                                      "wall_seconds")
