"""Log-cosh, a loss registered as ``log_cosh`` in the ``nnx.losses`` group."""

from __future__ import annotations

import math
import numbers

import numpy as np
from nnx.losses import Loss


class LogCosh(Loss):
    """L = mean(log(cosh(d))) over all n*k entries, d = pred - target; dL/dpred = tanh(d) / (n k).

    Like Huber with a smooth corner: d**2 / 2 near 0, |d| - log 2 far from it. Computed as
    |d| + log1p(exp(-2|d|)) - log 2, because cosh overflows for |d| > 710.
    ``scale`` s measures d in units of s: L = mean(s**2 log(cosh(d / s))), the quadratic part
    stays d**2 / 2 for every s (default 1).
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        ok = isinstance(scale, numbers.Real) and not isinstance(scale, bool)
        if not (ok and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self._config = {"scale": self.scale}

    def forward(self, pred, target):
        self._check(pred, target)
        self._u = (pred - target) / self.scale
        a = np.abs(self._u)
        per = a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0)
        return float(self.scale**2 * np.mean(per))

    def backward(self):
        return (self.scale / self._u.size) * np.tanh(self._u)
