"""Layers with parameters or train/eval behaviour: Dense and Dropout.

Shape layers (flatten, reshape) live in ``nnx.shaping``, composite blocks (sequential,
residual) in ``nnx.blocks``.
"""

from __future__ import annotations

import numpy as np

from nnx.initializers import Initializer
from nnx.module import Module, as_shape


def _initializer(spec: str | Initializer) -> Initializer:
    if isinstance(spec, Initializer):
        return spec
    from nnx.registry import build

    return build("initializers", spec)


class Dense(Module):
    """y = x @ W + b, with W of shape (in, units) and b of shape (units,).

    dL/dW = x.T @ g,  dL/db = sum(g over the batch),  dL/dx = g @ W.T
    """

    def __init__(
        self,
        units: int,
        bias: bool = True,
        initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
    ) -> None:
        super().__init__()
        if not (isinstance(units, (int, np.integer)) and units > 0):
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units, self.bias = int(units), bool(bias)
        self.initializer, self.bias_initializer = initializer, bias_initializer
        self._config = {"units": self.units, "bias": self.bias, "initializer": initializer,
                        "bias_initializer": bias_initializer}
        self.name = "dense"
        # The network turns this off for its first layer: nobody needs dL/d(input data),
        # and skipping it saves the largest matrix product of a step.
        self.propagate = True

    def build(self, in_shape, rng, dtype):
        in_shape = as_shape(in_shape)
        if len(in_shape) != 1:
            raise ValueError(f"{self.name}: expects a 1-D sample shape (features,), got "
                             f"{tuple(in_shape)}; add a flatten layer before it")
        in_features = in_shape[0]
        self.params["W"] = _initializer(self.initializer)((in_features, self.units), rng, dtype)
        self.grads["W"] = np.zeros_like(self.params["W"])
        self.decay["W"] = True
        if self.bias:
            self.params["b"] = _initializer(self.bias_initializer)((1, self.units), rng, dtype)[0]
            self.grads["b"] = np.zeros_like(self.params["b"])
            self.decay["b"] = False  # biases are not decayed (common AdamW practice)
        return (self.units,)

    def forward(self, x):
        W = self.params["W"]
        if x.ndim != 2 or x.shape[1] != W.shape[0]:
            raise ValueError(
                f"{self.name} layer expects input of shape (n, {W.shape[0]}), got {x.shape}"
            )
        self._x = x
        out = np.matmul(x, W)  # a fresh array: the caller's (see docs/plugins.md)
        if self.bias:
            out += self.params["b"]
        return out

    def backward(self, grad):
        x, W = self._x, self.params["W"]
        np.matmul(x.T, grad, out=self.grads["W"])
        if self.bias:
            grad.sum(axis=0, out=self.grads["b"])
        if not self.propagate:
            return None
        return np.matmul(grad, W.T)


class Dropout(Module):
    """Inverted dropout: in training y = x * m / (1 - rate), m ~ Bernoulli(1 - rate); in eval y = x.

    Scaling at training time keeps the expected activation equal, so eval needs no change.
    """

    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self._config = {"rate": self.rate}
        self.name = "dropout"
        self._rng = None

    def build(self, in_shape, rng, dtype):
        self._rng = rng
        return as_shape(in_shape)

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self._rng.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep.astype(x.dtype) / (1.0 - self.rate)
        return x * self._mask

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask
