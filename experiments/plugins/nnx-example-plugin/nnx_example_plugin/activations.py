"""Mish, an activation registered as ``mish`` in the ``nnx.activations`` group."""

from __future__ import annotations

import numpy as np
from nnx.activations import Activation, stable_sigmoid


class Mish(Activation):
    """y = x tanh(softplus(x)), softplus(x) = log(1 + exp(x)). Misra (2019), arXiv:1908.08681.

    dy/dx = t + x (1 - t**2) sigmoid(x),  t = tanh(softplus(x)), computed from the cached x, t.
    Smooth and non-monotonic like SiLU; logaddexp keeps softplus finite for large x.
    """

    def forward(self, x):
        self._x = x
        self._t = np.tanh(np.logaddexp(0, x)).astype(x.dtype, copy=False)
        return x * self._t

    def backward(self, grad):
        x, t = self._x, self._t
        return grad * (t + x * (1.0 - t**2) * stable_sigmoid(x))
