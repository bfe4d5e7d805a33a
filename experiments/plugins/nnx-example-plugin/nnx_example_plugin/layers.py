"""RMSNorm, a layer with parameters registered as ``rms_norm`` in the ``nnx.layers`` group.

A complete parameterised layer under nnx's module contract: built from the per-sample input
shape, parameters created in ``build`` with their decay flags, gradients written in place,
a bad argument reported as a ValueError that names it.
"""

from __future__ import annotations

import numpy as np
from nnx.module import Module


class RMSNorm(Module):
    """Root-mean-square normalisation over the last axis (Zhang & Sennrich 2019):

        r = sqrt(mean(x**2 over the last axis) + eps),  x_hat = x / r,  y = g * x_hat + b

    g (scale) and b (shift) have the size of the last axis, start at 1 and 0, and are not
    weight-decayed (decaying a scale towards 0 would fight the normalisation). Any sample
    shape (features,), (channels, length), ...: every position is normalised on its own.
    Backward, with d = dL/dx_hat = dL/dy * g:

        dL/dx = (d - x_hat * mean(d * x_hat over the last axis)) / r
        dL/dg = sum(dL/dy * x_hat),  dL/db = sum(dL/dy)   (over every axis but the last)
    """

    def __init__(self, eps: float = 1e-6, shift: bool = True) -> None:
        super().__init__()
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        self.eps, self.shift = float(eps), bool(shift)
        self._config = {"eps": self.eps, "shift": self.shift}  # what rebuilds it
        self.name = "rms_norm"

    def build(self, in_shape, rng, dtype):
        features = in_shape[-1]
        self.params["g"] = np.ones(features, dtype)
        self.grads["g"] = np.zeros(features, dtype)
        self.decay["g"] = False
        if self.shift:
            self.params["b"] = np.zeros(features, dtype)
            self.grads["b"] = np.zeros(features, dtype)
            self.decay["b"] = False
        return tuple(in_shape)  # the shape is kept

    def forward(self, x):
        self._r = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)
        self._x_hat = x / self._r
        y = self._x_hat * self.params["g"]  # a fresh array: the caller's
        if self.shift:
            y += self.params["b"]
        return y

    def backward(self, grad):
        x_hat, axes = self._x_hat, tuple(range(grad.ndim - 1))
        # In place into the network's flat buffer (out=), never a rebinding of grads["g"].
        np.sum(grad * x_hat, axis=axes, out=self.grads["g"])
        if self.shift:
            np.sum(grad, axis=axes, out=self.grads["b"])
        d = grad * self.params["g"]
        return (d - x_hat * np.mean(d * x_hat, axis=-1, keepdims=True)) / self._r
