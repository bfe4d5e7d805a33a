"""Metrics computed from network outputs: accuracy for classification, RMSE and R^2 for regression.

Which way each metric improves is decided here too (``higher_is_better``), for early stopping,
the sweep's direction and the comparison table alike.
"""

from __future__ import annotations

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
