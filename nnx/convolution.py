"""Convolutions: ``conv1d`` on (n, c, l) and ``conv2d`` on (n, c, h, w), as im2col and one product.

A convolution with weight W of shape (out_c, in_c, *kernel), stride s and zero padding p is

    y[n, o, i] = b[o] + sum_{c, k} W[o, c, k] * xp[n, c, s*i + k]      (xp: x padded by p)

for every output position i and kernel offset k (tuples in 2-D). im2col gathers, for every
sample and output position, the in_c * prod(kernel) inputs that the sum reads into one column,

    cols[n, (c, k), i] = xp[n, c, s*i + k]            shape (n, K, P), K = in_c * prod(kernel),

so that the convolution is one (batched) matrix product, y[n] = W2 @ cols[n] + b with
W2 = W reshaped to (out_c, K). Backward is the same product transposed, with g = dL/dy:

    dL/dW2 = sum_n g[n] @ cols[n].T,   dL/db = sum of g over n and positions,
    dL/dcols[n] = W2.T @ g[n],         dL/dxp[n, c, s*i + k] += dL/dcols[n, (c, k), i]  (col2im)

col2im sums, for each kernel offset k, a strided slab of dL/dcols into dL/dxp: one vectorised
add per offset (9 for a 3x3 kernel), never a Python loop over positions or samples.

Every layer of this file, ``pooling.py`` and ``normalization.py`` declares ``example``: keyword
arguments and a sample shape that build a small instance, for checks run over the registry.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnx.initializers import get as get_initializer
from nnx.module import Module, reuse


def as_tuple(name: str, value, spatial: int, low: int) -> tuple[int, ...]:
    """``value`` (an int or ``spatial`` ints, each >= ``low``) as a tuple of ``spatial`` ints."""
    # Any sequence (a list from YAML, Hydra's ListConfig), or one value for every axis.
    items = (value,) * spatial if isinstance(value, (int, np.integer, str)) or not hasattr(
        value, "__len__") else tuple(value)
    ok = len(items) == spatial and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low for v in items)
    if not ok:
        raise ValueError(f"{name} must be an integer >= {low} or {spatial} of them, got {value!r}")
    return tuple(int(v) for v in items)


def as_config(value):
    """A constructor argument as config() gives it back: an int, or a list of ints."""
    return value if isinstance(value, (int, np.integer)) else [int(v) for v in value]


def sample_shape(name: str, in_shape, spatial: int) -> tuple[int, ...]:
    """``in_shape`` as (channels, *spatial sizes), or a ValueError that names the layer."""
    dims = ("length",) if spatial == 1 else ("height", "width")
    try:
        in_shape = tuple(int(v) for v in in_shape)
    except TypeError:
        in_shape = (in_shape,)
    if len(in_shape) != 1 + spatial:
        raise ValueError(f"{name}: expects a {1 + spatial}-D sample shape "
                         f"(channels, {', '.join(dims)}), got {in_shape}")
    return in_shape


def window_slices(kernel, stride, out) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """For each kernel offset k: (k, the slices of the input that offset reads at every output
    position, ``s*i + k`` for i < out): what col2im adds each offset's share into."""
    return [(k, (slice(None), slice(None)) + tuple(
                slice(ki, ki + si * (oi - 1) + 1, si) for ki, si, oi in zip(k, stride, out)))
            for k in itertools.product(*(range(ki) for ki in kernel))]


def same_shifts(kernel, padding, size) -> list:
    """For a stride-1 convolution whose output has the input's size ("same" padding,
    2 * padding = kernel - 1): per kernel offset k, (shift, lo, hi, cuts), for col2im.

    Offset k reads x at position i + k - p: in the flattened spatial index (h * w) a shift by
    ``shift`` = sum_a (k_a - p_a) * (step of axis a). col2im is then one contiguous add per
    offset over runs of h * w values, instead of n * c * h runs of w: short rows are what makes
    the strided form slow (measured: about 18 -> 13 ms for the benchmark's second convolution;
    im2col's one strided copy was not helped, so it stays strided). Output positions outside
    [lo, hi) read the zero padding. A shift along an inner axis would wrap the end of a row into
    the next: ``cuts`` lists, per inner axis a, (a, the positions along a that read across the
    edge), whose slab col2im zeroes before the add (in the strided form they read the zero
    padding). Zeroing that slab (1/w of the values) rather than multiplying every value by a
    0/1 vector, and starting dx as a copy of the centre offset rather than zeros: measured,
    col2im of the second convolution 13.4 -> 12.2 ms.
    """
    d, total = len(size), int(np.prod(size))
    steps = [int(np.prod(size[a + 1:])) for a in range(d)]
    out = []
    for k in itertools.product(*(range(ki) for ki in kernel)):
        shift = sum((ka - pa) * st for ka, pa, st in zip(k, padding, steps))
        cuts = []
        for a in range(1, d):  # the first spatial axis cannot wrap: it is the outermost
            read = np.arange(size[a]) + k[a] - padding[a]
            edge = np.flatnonzero((read < 0) | (read >= size[a]))
            if edge.size:
                cuts.append((a, edge))
        out.append((shift, max(0, -shift), min(total, total - shift), cuts))
    return out


def check_input(name: str, x: np.ndarray, in_shape: tuple[int, ...]) -> None:
    """A batch must be (n, *in_shape): the sample shape the layer was built for."""
    if x.ndim != 1 + len(in_shape) or x.shape[1:] != in_shape:
        raise ValueError(f"{name}: expects input of shape (n, {', '.join(map(str, in_shape))}), "
                         f"got {x.shape}")


class _Conv(Module):
    """The convolution of the module docstring over ``spatial`` dimensions (1 or 2)."""

    spatial = 2
    name = "conv2d"

    def __init__(self, channels: int, kernel, stride=1, padding=0, bias: bool = True,
                 initializer: str = "he_uniform", bias_initializer: str = "zeros") -> None:
        super().__init__()
        if not (isinstance(channels, (int, np.integer)) and not isinstance(channels, bool)
                and channels > 0):
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        d = self.spatial
        self.channels = int(channels)
        self.kernel = as_tuple("kernel", kernel, d, 1)
        self.stride = as_tuple("stride", stride, d, 1)
        self.padding = as_tuple("padding", padding, d, 0)
        self.bias = bool(bias)
        self.initializer, self.bias_initializer = initializer, bias_initializer
        self._config = {"channels": self.channels, "kernel": as_config(kernel),
                        "stride": as_config(stride), "padding": as_config(padding), "bias": self.bias, "initializer": initializer,
                        "bias_initializer": bias_initializer}
        # As Dense.propagate: the network turns it off for a first layer (nobody needs
        # dL/d(input data)), which skips col2im and the larger of the backward products.
        self.propagate = True
        self._xp = self._cols = self._dcols = self._dW = None

    def build(self, in_shape, rng, dtype):
        in_c, *size = sample_shape(self.name, in_shape, self.spatial)
        padded = tuple(n + 2 * p for n, p in zip(size, self.padding))
        if any(k > n for k, n in zip(self.kernel, padded)):
            raise ValueError(f"{self.name}: kernel {self.kernel} is larger than its padded input "
                             f"{padded} (sample shape {tuple(in_shape)}, padding {self.padding})")
        out = tuple((n - k) // s + 1 for n, k, s in zip(padded, self.kernel, self.stride))
        self._in_shape, self._padded, self._out = (in_c, *size), padded, out
        self._slices = window_slices(self.kernel, self.stride, out)
        self._shifts = same_shifts(self.kernel, self.padding, tuple(size)) if (
            set(self.stride) == {1} and out == tuple(size)) else None
        shape = (self.channels, in_c, *self.kernel)
        self.params["W"] = get_initializer(self.initializer)(shape, rng, dtype)
        self.grads["W"] = np.zeros_like(self.params["W"])
        self.decay["W"] = True
        if self.bias:
            self.params["b"] = get_initializer(self.bias_initializer)(
                (1, self.channels), rng, dtype)[0]
            self.grads["b"] = np.zeros_like(self.params["b"])
            self.decay["b"] = False
        return (self.channels, *out)

    def _padded_input(self, x: np.ndarray) -> np.ndarray:
        """x with its zero border. The padded array is kept between steps (its border stays
        zero: only the interior is ever written), so a step copies x once and allocates nothing."""
        if not any(self.padding):
            return x
        shape = x.shape[:2] + self._padded
        if self._xp is None or self._xp.shape != shape or self._xp.dtype != x.dtype:
            self._xp = np.zeros(shape, x.dtype)
        inner = tuple(slice(p, p + n) for p, n in zip(self.padding, x.shape[2:]))
        self._xp[(slice(None), slice(None)) + inner] = x
        return self._xp

    def _im2col(self, x: np.ndarray) -> np.ndarray:
        """cols (n, K, P) of the module docstring, in a buffer kept between steps."""
        d, n = self.spatial, x.shape[0]
        axes = tuple(range(2, 2 + d))
        windows = sliding_window_view(self._padded_input(x), self.kernel, axis=axes)
        windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s)
                                                             for s in self.stride)]
        # (n, c, *out, *kernel) -> (n, c, *kernel, *out): one copy through the strided view is
        # the whole im2col (measured: about twice as fast as one copy per kernel offset).
        cols = self._cols = reuse(self._cols, (n, self._in_shape[0], *self.kernel, *self._out),
                                  x.dtype)
        np.copyto(cols, windows.transpose(0, 1, *range(2 + d, 2 + 2 * d), *axes))
        return cols.reshape(n, -1, int(np.prod(self._out)))

    def _col2im(self, dcols: np.ndarray) -> np.ndarray:
        """dL/dx from dL/dcols (n, K, P): for each kernel offset, one strided add."""
        n = dcols.shape[0]
        if self._shifts is not None:  # a stride-1 "same" convolution: see same_shifts
            c, size = self._in_shape[0], self._in_shape[1:]
            grid = dcols.reshape(n, c, len(self._shifts), *size)  # per offset, (n, c, *out)
            for i, (_, _, _, cuts) in enumerate(self._shifts):
                for axis, edge in cuts:  # in place: dcols is this layer's own scratch
                    grid[(slice(None), slice(None), i) + (slice(None),) * axis + (edge,)] = 0
            flat = dcols.reshape(n, c, len(self._shifts), -1)
            # The centre offset (shift 0, nothing cut) covers every position: copied, not added
            # to zeros (one pass fewer over dx).
            centre = len(self._shifts) // 2
            dx = flat[:, :, centre].copy()
            for i, (shift, lo, hi, _) in enumerate(self._shifts):
                if i != centre:
                    dx[:, :, lo + shift:hi + shift] += flat[:, :, i, lo:hi]
            return dx.reshape((n,) + self._in_shape)
        dcols = dcols.reshape(self._cols.shape)  # (n, c, *kernel, *out)
        dxp = np.zeros((n, self._in_shape[0]) + self._padded, dcols.dtype)
        for k, where in self._slices:
            dxp[where] += dcols[(slice(None), slice(None)) + k]
        if not any(self.padding):
            return dxp
        return dxp[(slice(None), slice(None)) + tuple(
            slice(p, p + n) for p, n in zip(self.padding, self._in_shape[1:]))]

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        cols, W = self._im2col(x), self.params["W"]
        # (out_c, K) @ (n, K, P) -> (n, out_c, P): already (n, c, *out), so no transpose after.
        out = np.matmul(W.reshape(W.shape[0], -1), cols)
        if self.bias:
            out += self.params["b"][:, None]
        return out.reshape(x.shape[0], W.shape[0], *self._out)

    def backward(self, grad):
        W = self.params["W"]
        n, out_c = grad.shape[:2]
        W2 = W.reshape(out_c, -1)
        g = np.ascontiguousarray(grad).reshape(n, out_c, -1)  # (n, out_c, P)
        cols = self._cols.reshape(n, W2.shape[1], -1)  # (n, K, P)
        # dL/dW2 = sum_n g[n] @ cols[n].T, computed transposed: one batched product
        # cols[n] @ g[n].T into scratch (K, out_c) per sample, then the sum over samples.
        # Measured, that orientation is faster in OpenBLAS (second convolution: about 15 ->
        # 12 ms), and transposing the (K, out_c) sum is nothing.
        self._dW = reuse(self._dW, (n, W2.shape[1], out_c), W.dtype)
        np.matmul(cols, g.transpose(0, 2, 1), out=self._dW)
        self.grads["W"][...] = self._dW.sum(axis=0).T.reshape(W.shape)
        if self.bias:
            self.grads["b"][...] = g.sum(axis=(0, 2))
        if not self.propagate:
            return None
        dcols = self._dcols = reuse(self._dcols, cols.shape, W.dtype)
        np.matmul(W2.T, g, out=dcols)
        return self._col2im(dcols)


class Conv1D(_Conv):
    """1-D convolution, (n, in_c, length) -> (n, channels, out_length), by im2col and a product.

    See the module docstring. out_length = (length + 2 * padding - kernel) // stride + 1.
    W: (channels, in_c, kernel), b: (channels,); He-uniform weights by default (ReLU nets)."""

    spatial = 1
    name = "conv1d"
    example: ClassVar[dict] = {"kwargs": {"channels": 3, "kernel": 3, "stride": 2, "padding": 1},
               "in_shape": (2, 7)}


class Conv2D(_Conv):
    """2-D convolution, (n, in_c, h, w) -> (n, channels, out_h, out_w), by im2col and a product.

    See the module docstring. out_h = (h + 2 * padding - kernel_h) // stride_h + 1, and so w.
    W: (channels, in_c, kernel_h, kernel_w), b: (channels,); He-uniform weights by default."""

    spatial = 2
    name = "conv2d"
    example: ClassVar[dict] = {"kwargs": {"channels": 3, "kernel": 3, "stride": 2, "padding": 1},
               "in_shape": (2, 5, 6)}
