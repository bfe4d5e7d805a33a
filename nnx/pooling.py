"""Pooling: max and average over windows (1-D and 2-D), and the global average.

A window of ``size`` moved by ``stride`` (default: ``size``, windows that do not overlap) over
the spatial axes of (n, c, *spatial); an input row or column that no whole window covers is
dropped (PyTorch's floor mode). Output size: (n_in - size) // stride + 1 per axis.

    max:  y[n, c, i] = max_k x[n, c, s*i + k];  dL/dx gets g at the first maximum of each window
          (row-major order, as PyTorch), 0 elsewhere
    avg:  y[n, c, i] = mean_k x[n, c, s*i + k]; dL/dx[n, c, s*i + k] += g[n, c, i] / prod(size)

Both run one vectorised operation per window offset k (4 for 2x2), never a loop over positions.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nnx.convolution import as_tuple, check_input, sample_shape, window_slices
from nnx.module import Module, reuse


class _Pool(Module):
    """Shared by the window pools: arguments, shapes, the slices of each window offset."""

    spatial = 2
    name = "pool2d"

    def __init__(self, size, stride=None) -> None:
        super().__init__()
        self.size = as_tuple("size", size, self.spatial, 1)
        self.stride = self.size if stride is None else as_tuple("stride", stride, self.spatial, 1)
        self._config = {"size": size, "stride": stride}
        self.buffers: dict[str, np.ndarray] = {}
        self.decay: dict[str, bool] = {}

    def build(self, in_shape, rng, dtype):
        c, *dims = sample_shape(self.name, in_shape, self.spatial)
        if any(k > n for k, n in zip(self.size, dims)):
            raise ValueError(f"{self.name}: pool size {self.size} does not fit the sample shape "
                             f"{tuple(in_shape)}")
        self._out = tuple((n - k) // s + 1 for n, k, s in zip(dims, self.size, self.stride))
        self._in_shape = (c, *dims)
        self._slices = window_slices(self.size, self.stride, self._out)
        # Windows that do not overlap write disjoint parts of dL/dx: backward can then assign
        # each offset's share instead of adding it to a zeroed array (one pass fewer).
        self._disjoint = all(s >= k for s, k in zip(self.stride, self.size))
        return (c, *self._out)


class _MaxPool(_Pool):
    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        (_, first), *rest = self._slices
        y = x[first].copy()
        for _, where in rest:
            np.maximum(y, x[where], out=y)
        # Kept for backward, as Tanh keeps its output: never written into after this.
        self._x, self._y = x, y
        return y

    def backward(self, grad):
        x, y = self._x, self._y
        dx = (np.empty if self._disjoint else np.zeros)(x.shape, grad.dtype)
        if self._disjoint and self._out != x.shape[2:]:
            dx[...] = 0  # positions that no window covers (floor mode) get no gradient
        # Route g to the first offset whose input equals the maximum: ``left`` marks windows
        # not yet served, so a tie (all zeros after a ReLU) passes g on once, not once per tie.
        left = self._left = reuse(getattr(self, "_left", None), y.shape, np.bool_)
        left[...] = True
        hit = self._hit = reuse(getattr(self, "_hit", None), y.shape, np.bool_)
        for _, where in self._slices:
            np.equal(x[where], y, out=hit)
            hit &= left
            left ^= hit
            if self._disjoint:
                np.multiply(grad, hit, out=dx[where])
            else:
                dx[where] += grad * hit
        return dx


class _AvgPool(_Pool):
    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        (_, first), *rest = self._slices
        y = x[first].copy()
        for _, where in rest:
            y += x[where]
        y *= 1.0 / np.prod(self.size)
        return y

    def backward(self, grad):
        share = grad * (1.0 / np.prod(self.size))
        shape = (grad.shape[0],) + self._in_shape
        dx = (np.empty if self._disjoint and self._out == shape[2:] else np.zeros)(
            shape, grad.dtype)
        for _, where in self._slices:
            if self._disjoint:
                dx[where] = share
            else:
                dx[where] += share
        return dx


class MaxPool1D(_MaxPool):
    """Max over windows of ``size`` on (n, c, length), moved by ``stride`` (default size)."""

    spatial = 1
    name = "max_pool1d"
    example: ClassVar[dict] = {"kwargs": {"size": 2}, "in_shape": (2, 7)}


class MaxPool2D(_MaxPool):
    """Max over size x size windows on (n, c, h, w), moved by ``stride`` (default size)."""

    spatial = 2
    name = "max_pool2d"
    example: ClassVar[dict] = {"kwargs": {"size": 2}, "in_shape": (2, 5, 4)}


class AvgPool1D(_AvgPool):
    """Mean over windows of ``size`` on (n, c, length), moved by ``stride`` (default size)."""

    spatial = 1
    name = "avg_pool1d"
    example: ClassVar[dict] = {"kwargs": {"size": 3, "stride": 2}, "in_shape": (2, 7)}


class AvgPool2D(_AvgPool):
    """Mean over size x size windows on (n, c, h, w), moved by ``stride`` (default size)."""

    spatial = 2
    name = "avg_pool2d"
    example: ClassVar[dict] = {"kwargs": {"size": 2}, "in_shape": (2, 5, 4)}


class GlobalAvgPool(Module):
    """y[n, c] = mean of x[n, c] over every spatial position, on (n, c, *spatial) -> (n, c).

    dL/dx[n, c, ...] = g[n, c] / P, P = the number of spatial positions.
    """

    name = "global_avg_pool"
    example: ClassVar[dict] = {"kwargs": {}, "in_shape": (3, 4, 5)}

    def __init__(self) -> None:
        super().__init__()
        self._config = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.decay: dict[str, bool] = {}

    def build(self, in_shape, rng, dtype):
        in_shape = tuple(int(v) for v in in_shape)
        if len(in_shape) < 2:
            raise ValueError(f"{self.name}: expects a sample shape (channels, *spatial) with at "
                             f"least one spatial axis, got {in_shape}")
        self._in_shape = in_shape
        return in_shape[:1]

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        return x.mean(axis=tuple(range(2, x.ndim)))

    def backward(self, grad):
        dx = np.empty((grad.shape[0],) + self._in_shape, grad.dtype)
        dx[...] = (grad / np.prod(self._in_shape[1:])).reshape(grad.shape + (1,) * (dx.ndim - 2))
        return dx
