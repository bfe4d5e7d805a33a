"""The contract every layer and activation keeps.

A module is built from the per-sample input shape (a tuple, the batch dimension excluded) and
returns its per-sample output shape: ``build((1, 28, 28), rng, dtype) -> (784,)``. Arrays
between layers are ``(n, *shape)``. ``forward`` maps a batch x (n, *in_shape) to
(n, *out_shape) and ``backward`` turns dL/d(output) into dL/d(input) (a vector-Jacobian
product), filling ``grads`` on the way. ``params`` and ``grads`` have the same keys; the
optimizer sees only those two mappings. Gradients are written *in place*
(``self.grads["W"][...] = ...``) because the network keeps every parameter and gradient in one
flat buffer (see network.py).

``buffers`` hold state that is not trained (running statistics, counters): saved with the
weights, never seen by the optimizer, updated in place (``self.buffers["mean"][...] = ...``)
because the network re-points them into a flat buffer of their own too. What they do may
depend on ``self.training`` (train: batch statistics, buffers updated; eval: buffers used).
``decay`` says, per key of ``params``, whether weight decay applies: True for weights, False
for biases and normalisation scales and shifts; a missing key means True.

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


def as_shape(shape) -> tuple[int, ...]:
    """A per-sample shape as a tuple of positive ints (an int n is the shape (n,))."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(shape)
    if not shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"a sample shape is a tuple of positive integers, got {shape!r}")
    return tuple(int(d) for d in shape)


def batch_shape(shape: tuple[int, ...]) -> str:
    """``(n, 32, 14, 14)``: how messages and the summary write a batch of samples of ``shape``."""
    return "(" + ", ".join(["n", *map(str, shape)]) + ")"


class Module:
    """Base class of layers and activations."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.decay: dict[str, bool] = {}
        self.training = True

    def build(self, in_shape: tuple[int, ...], rng: np.random.Generator,
              dtype: np.dtype) -> tuple[int, ...]:
        """Create parameters for samples of ``in_shape``; return the output sample shape.

        Modules without parameters keep the shape they are given. A shape they cannot take
        is a ValueError naming the layer and the shape (see ``Dense.build``). An int n is
        taken as the shape (n,), as callers written before shapes pass it.
        """
        return as_shape(in_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = f(x); cache whatever backward needs."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """dL/dx from dL/dy = ``grad``; also fills ``self.grads``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> Module:
        """Switch training behaviour (dropout, batch statistics) on or off."""
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def children(self) -> list[Module]:
        """The modules this one is made of (a composite block's layers); none for a leaf."""
        return []

    def eval(self) -> Module:
        return self.train(False)

    def config(self) -> dict:
        """Constructor arguments that rebuild this module (for checkpoints and model export)."""
        return dict(getattr(self, "_config", {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
