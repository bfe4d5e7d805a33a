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
