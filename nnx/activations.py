"""Activation functions: y = f(x) element-wise (softmax row-wise), with f' side by side.

Derivatives are computed from what forward cached, usually the output y
(sigmoid' = y(1-y), tanh' = 1-y**2), as scikit-learn does.
"""

from __future__ import annotations

import numpy as np

from nnx.module import Module, reuse


class Activation(Module):
    """An activation has no parameters and keeps the feature count.

    ``output_range``: the closed interval its outputs lie in, declared so that a loss that
    takes probabilities can be checked against the output activation before training.
    """

    output_range: tuple[float, float] = (-np.inf, np.inf)

    def __init__(self) -> None:
        super().__init__()
        self._config = {}


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) computed as exp(x - softplus(x)), softplus(x) = log(1 + exp(x)).

    The same function, but nothing overflows (exp(-x) does for x < -709), the tails keep
    full relative precision (sigmoid(-100) = exp(-100) exactly), and it costs three ufunc
    calls: small arrays, like the tutorial's, pay per call, not per element.
    """
    y = np.logaddexp(0, x)
    np.subtract(x, y, out=y)
    return np.exp(y, out=y)


class Identity(Activation):
    """y = x; dy/dx = 1. The output layer of regression and of fused losses on logits."""

    def forward(self, x):
        return x

    def backward(self, grad):
        return grad


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y). Stable for any finite x."""

    output_range = (0.0, 1.0)

    def forward(self, x):
        self._y = stable_sigmoid(x)
        return self._y

    def backward(self, grad):
        dx = 1.0 - self._y  # then in place: one new array instead of three
        dx *= self._y
        dx *= grad
        return dx


class Tanh(Activation):
    """y = tanh(x); dy/dx = 1 - y**2, computed from the cached output."""

    output_range = (-1.0, 1.0)

    def forward(self, x):
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad):
        return grad * (1.0 - self._y**2)


class ReLU(Activation):
    """y = max(x, 0); dy/dx = [x > 0].

    The hot activation of large networks. y and dx are fresh arrays, the caller's (a
    fresh result costs what writing into a kept buffer does: the pass over the data is the
    same); only the mask that backward needs lives in a buffer kept between steps.
    """

    output_range = (0.0, np.inf)

    _mask = None

    def forward(self, x):
        self._mask = reuse(self._mask, x.shape, np.bool_)
        np.greater(x, 0, out=self._mask)
        return np.maximum(x, 0)

    def backward(self, grad):
        # Multiplying by the boolean mask is ~6x faster than np.copyto(where=) or np.where.
        return grad * self._mask


class LeakyReLU(Activation):
    """y = x if x > 0 else alpha * x; dy/dx = 1 or alpha."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self._config = {"alpha": alpha}

    def forward(self, x):
        self._slope = np.where(x > 0, 1.0, self.alpha).astype(x.dtype)
        return x * self._slope

    def backward(self, grad):
        return grad * self._slope


class ELU(Activation):
    """y = x if x > 0 else alpha (exp(x) - 1); dy/dx = 1 or y + alpha. (Clevert et al. 2015)"""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self._config = {"alpha": alpha}

    def forward(self, x):
        self._positive = x > 0
        # expm1 of min(x, 0) never overflows and is exact near 0.
        self._y = np.where(self._positive, x, self.alpha * np.expm1(np.minimum(x, 0)))
        return self._y

    def backward(self, grad):
        return grad * np.where(self._positive, 1.0, self._y + self.alpha)


class GELU(Activation):
    """y = x Phi(x), with the tanh approximation of Hendrycks & Gimpel (2016):

    y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x**3)
    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t**2) du/dx,  t = tanh(u)
    (NumPy has no vectorised erf; this is PyTorch's ``approximate="tanh"``.)
    """

    _C = float(np.sqrt(2.0 / np.pi))  # a Python float keeps float32 inputs float32

    def forward(self, x):
        self._x = x
        self._t = np.tanh(self._C * (x + 0.044715 * x**3))
        return 0.5 * x * (1.0 + self._t)

    def backward(self, grad):
        x, t = self._x, self._t
        du = self._C * (1.0 + 3 * 0.044715 * x**2)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du)


class Softplus(Activation):
    """y = log(1 + exp(x)); dy/dx = sigmoid(x). logaddexp keeps it finite for large x."""

    output_range = (0.0, np.inf)

    def forward(self, x):
        self._x = x
        return np.logaddexp(0, x).astype(x.dtype, copy=False)

    def backward(self, grad):
        return grad * stable_sigmoid(self._x)


class SiLU(Activation):
    """y = x sigmoid(x) (swish); dy/dx = s + x s (1 - s)."""

    def forward(self, x):
        self._x = x
        self._s = stable_sigmoid(x)
        return x * self._s

    def backward(self, grad):
        s = self._s
        return grad * (s + self._x * s * (1.0 - s))


class Softmax(Activation):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x), per row.

    Its Jacobian is not diagonal; the vector-Jacobian product is y * (g - sum(g * y)).
    For classification prefer the ``softmax_cross_entropy`` loss on logits (fused, stabler).
    """

    output_range = (0.0, 1.0)

    def forward(self, x):
        z = np.exp(x - x.max(axis=1, keepdims=True))
        self._y = z / z.sum(axis=1, keepdims=True)
        return self._y

    def backward(self, grad):
        y = self._y
        return y * (grad - (grad * y).sum(axis=1, keepdims=True))
