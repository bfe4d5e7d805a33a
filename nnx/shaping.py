"""Layers that only change the shape of a sample: Flatten and Reshape.

Neither copies: forward returns a view of its input and backward a view of its gradient,
which is allowed because a module never writes into what it is given (see module.py).
"""

from __future__ import annotations

import math

import numpy as np

from nnx.module import Module, as_shape


class Flatten(Module):
    """(n, d1, d2, ...) -> (n, d1 * d2 * ...); dL/dx is dL/dy reshaped back to (n, d1, d2, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self._config = {}
        self.name = "flatten"

    def build(self, in_shape, rng, dtype):
        self.in_shape = as_shape(in_shape)
        return (math.prod(self.in_shape),)

    def forward(self, x):
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape(len(grad), *self.in_shape)


class Reshape(Module):
    """(n, *in_shape) -> (n, *shape), the same elements in the same (C) order.

    ``shape`` is the per-sample output shape; one entry may be -1 (inferred), as in NumPy:
    ``{name: reshape, shape: [1, 28, 28]}`` turns 784 features back into an image.
    """

    def __init__(self, shape: list | tuple = (-1,)) -> None:
        super().__init__()
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be a list of integers, got {shape!r}") from None
        if not shape or sum(d == -1 for d in shape) > 1 or any(d < 1 and d != -1 for d in shape):
            raise ValueError(f"shape must be positive integers with at most one -1, got {shape!r}")
        self.shape = shape
        self._config = {"shape": list(shape)}
        self.name = "reshape"

    def build(self, in_shape, rng, dtype):
        self.in_shape = as_shape(in_shape)
        size, known = math.prod(self.in_shape), math.prod(d for d in self.shape if d != -1)
        if -1 in self.shape and size % known == 0:
            out = tuple(size // known if d == -1 else d for d in self.shape)
        else:
            out = self.shape
        if math.prod(out) != size:
            raise ValueError(f"{self.name}: cannot reshape a sample of shape {self.in_shape} "
                             f"({size} values) to {self.shape}")
        self.out_shape = as_shape(out)
        return self.out_shape

    def forward(self, x):
        return x.reshape(len(x), *self.out_shape)

    def backward(self, grad):
        return grad.reshape(len(grad), *self.in_shape)
