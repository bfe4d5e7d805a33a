"""The contract every layer and activation keeps.

A module maps a batch ``x`` of shape (n, in_features) to (n, out_features) in ``forward`` and,
in ``backward``, turns dL/d(output) into dL/d(input) (a vector-Jacobian product), filling
``grads`` on the way. ``params`` and ``grads`` have the same keys; the optimizer sees only
those two mappings. Gradients are written *in place* (``self.grads["W"][...] = ...``)
because the network keeps every parameter and gradient in one flat buffer (see network.py).

What ``forward`` and ``backward`` return belongs to the caller: no later call writes into it.
A module may keep a reference to its own output for backward (``Tanh`` does) only because it
never writes into it afterwards, and it never writes into the arrays it is given. Buffers kept
between steps (``reuse``) are for a module's own scratch, never for what it returns: a caller
that keeps ``dx = relu.backward(g)``, or a composite layer that calls a sub-layer twice, would
otherwise hold an array that the next call changes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# all_finite's dot product overflows on huge finite values, as it may: then min/max decide.
warnings.filterwarnings("ignore", "overflow encountered in dot", RuntimeWarning, __name__)


def reuse(buffer: np.ndarray | None, shape: tuple, dtype) -> np.ndarray:
    """``buffer`` when it already has this shape and dtype, else a new empty array.

    For a module's internal scratch (ReLU's mask), kept between steps; never for a returned
    array, which is the caller's. Only the batch size changes the shape (the last, smaller
    batch of an epoch), so a buffer is reallocated at most twice an epoch.
    """
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        return np.empty(shape, dtype)
    return buffer


def all_finite(x: np.ndarray) -> bool:
    """Whether every element of a numeric array is finite (no NaN, no inf).

    Checked every step, so it is cheap: one BLAS dot product x.x, in which NaN and inf
    propagate, instead of ``np.isfinite(x).all()`` (a boolean temporary the size of x and
    two calls). The dot product needs a contiguous array, and it can overflow on huge finite
    values (|x| > 1e154 in float64): then min and max, which never allocate, decide.
    """
    if x.dtype.kind in "biu" or x.size == 0:
        return True  # integers are always finite
    if x.flags.c_contiguous:
        flat = x.reshape(-1)
        if math.isfinite(flat.dot(flat)):  # the method: less call overhead than np.dot
            return True
    return bool(np.isfinite(x.min()) and np.isfinite(x.max()))


class Module:
    """Base class of layers and activations."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    def build(self, in_features: int, rng: np.random.Generator, dtype: np.dtype) -> int:
        """Create parameters for inputs of ``in_features``; return the output feature count.

        Modules without parameters keep the size they are given.
        """
        return in_features

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = f(x); cache whatever backward needs."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """dL/dx from dL/dy = ``grad``; also fills ``self.grads``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> Module:
        """Switch training behaviour (dropout) on or off."""
        self.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def config(self) -> dict:
        """Constructor arguments that rebuild this module (for checkpoints and model export)."""
        return dict(getattr(self, "_config", {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
