"""Training-time data augmentation as layers: ``random_flip``, ``random_shift``, ``random_erasing``.

Augmentation shows the network a slightly different copy of each training image every epoch
(mirrored, moved by a pixel or two) that keeps its label. The network cannot memorise the exact
pixels, and it learns that a shirt moved two pixels to the left is still a shirt: the
invariances a convolutional network should have anyway. It is the standard way past the
overfitting of a small CNN on Fashion-MNIST, whose images are centred and upright, so that a
small shift or a left-right mirror is still a plausible image.

As layers (Keras' ``RandomFlip``/``RandomTranslation``), placed first in ``model.layers``:

    training:  y = T(x), a fresh random T per sample and step, drawn from the rng given to build
    eval:      y = x itself (no copy): predict and evaluate see the images as they are

All three transforms are linear (erasing to a value other than 0: affine, the same Jacobian),
so backward applies the transposed transform with the same draws: a flip is its own transpose;
a shift's transpose is the shift back (the adjoint), with zeros where a pixel had fallen off
the edge; erasing multiplies by a 0/1 mask, its own transpose. Arrays are (n, channels,
*spatial): (n, c, h, w) images or (n, c, length) signals.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnx.convolution import check_input
from nnx.module import Module, as_shape, batch_shape


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _probability(name: str, p) -> float:
    """p as a float in [0, 1], or a ValueError naming the layer."""
    if not (isinstance(p, numbers.Real) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
        raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


class _Augmentation(Module):
    """Shared by the augmentation layers: the sample-shape check and the generator they draw
    from (the one given to build, so that a network's seed repeats the draws)."""

    name = "augmentation"
    # As Dense.propagate: placed first (where augmentation goes), the network switches it off,
    # and backward skips the transposed transform nobody needs (dL/d(input data)).
    propagate = True

    def __init__(self) -> None:
        super().__init__()
        self._rng = None

    def build(self, in_shape, rng, dtype):
        in_shape = as_shape(in_shape)
        if len(in_shape) < 2:
            raise ValueError(f"{self.name}: expects input (n, channels, *spatial) of rank >= 3, "
                             f"got sample shape {in_shape}, that is input "
                             f"{batch_shape(in_shape)}")
        self._rng, self._in_shape = rng, in_shape
        return in_shape


class RandomFlip(_Augmentation):
    """Each sample mirrored along a spatial axis with probability p (training only).

    y[n] = flip(x[n], axis) where u[n] < p, else x[n]; u[n] ~ Uniform[0, 1) per sample and step.
    axis: an axis of the batch array (n, c, *spatial), a spatial one; -1 (the default) is the
    width of (n, c, h, w) images (a left-right mirror) and the length of (n, c, l) signals.
    Backward: the same flips applied to the gradient (a flip is linear and its own inverse).
    """

    name = "random_flip"
    example: ClassVar[dict] = {"kwargs": {}, "in_shape": (2, 5, 6)}

    def __init__(self, axis: int = -1, p: float = 0.5) -> None:
        super().__init__()
        if not _is_int(axis) or axis in (0, 1):
            raise ValueError(f"{self.name}: axis must be a spatial axis of (n, channels, "
                             f"*spatial) (2 or more, or negative: -1 is the last), got {axis!r}")
        self.axis, self.p = int(axis), _probability(self.name, p)
        self._config = {"axis": self.axis, "p": self.p}
        self._flipped = None

    def build(self, in_shape, rng, dtype):
        out = super().build(in_shape, rng, dtype)
        ndim = 1 + len(out)
        if not -ndim <= self.axis < ndim or (self.axis % ndim) < 2:
            spatial = ", ".join(f"{a} or {a - ndim}" for a in range(2, ndim))
            raise ValueError(f"{self.name}: axis {self.axis} is not a spatial axis of input "
                             f"{batch_shape(out)}; its spatial axes are {spatial}")
        self._axis = self.axis % ndim
        return out

    def _apply(self, a: np.ndarray) -> np.ndarray:
        """a with the drawn samples flipped, as a fresh array."""
        out = a.copy()
        rows = self._flipped
        out[rows] = np.flip(a[rows], self._axis)
        return out

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        if not self.training or self.p == 0.0:
            self._flipped = None
            return x
        self._flipped = self._rng.random(x.shape[0]) < self.p
        return self._apply(x)

    def backward(self, grad):
        if grad is None or not self.propagate:
            return None
        return grad if self._flipped is None else self._apply(grad)


class RandomShift(_Augmentation):
    """Each sample translated by whole pixels, zeros shifted in (training only).

    y[n, c, i] = x[n, c, i - s[n]] (0 where i - s[n] falls outside), s[n] a vector of integers
    drawn uniformly in [-max_shift, max_shift] per spatial axis, per sample and step: a positive
    shift moves the content down / right. Computed as pad-and-crop, vectorised: the batch is
    padded once by max_shift, then every sample's crop is gathered in one fancy index into the
    sliding windows of the padded batch (no loop over samples).
    Backward (the adjoint): dL/dx[n, c, j] = g[n, c, j + s[n]], the shift back by -s[n].
    """

    name = "random_shift"
    example: ClassVar[dict] = {"kwargs": {"max_shift": 1}, "in_shape": (2, 5, 6)}

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__()
        if not _is_int(max_shift) or max_shift < 0:
            raise ValueError(f"{self.name}: max_shift must be an integer >= 0, got "
                             f"{max_shift!r}")
        self.max_shift = int(max_shift)
        self._config = {"max_shift": self.max_shift}
        self._shifts = self._padded = None

    def _shift(self, a: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """a[n] translated by shifts[n] (n, spatial): y[n, c, i] = a[n, c, i - shifts[n]]."""
        m, size = self.max_shift, a.shape[2:]
        # The padded batch is scratch kept between calls: its zero border is never written.
        shape = a.shape[:2] + tuple(k + 2 * m for k in size)
        if self._padded is None or self._padded.shape != shape or self._padded.dtype != a.dtype:
            self._padded = np.zeros(shape, a.dtype)
        padded = self._padded
        padded[(slice(None), slice(None)) + tuple(slice(m, m + k) for k in size)] = a
        # windows[n, c, *o, *i] = padded[n, c, *(o + i)]; the crop of sample n starts at
        # o = m - s[n]. The per-sample indices around the channel slice put n first, then c,
        # then the window's own axes: (n, c, *spatial), a fresh array.
        windows = sliding_window_view(padded, size, axis=tuple(range(2, a.ndim)))
        starts = (m - shifts).T
        return windows[(np.arange(a.shape[0]), slice(None), *starts)]

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        if not self.training or self.max_shift == 0:
            self._shifts = None
            return x
        m = self.max_shift
        self._shifts = self._rng.integers(-m, m + 1, size=(x.shape[0], x.ndim - 2))
        return self._shift(x, self._shifts)

    def backward(self, grad):
        if grad is None or not self.propagate:
            return None
        return grad if self._shifts is None else self._shift(grad, -self._shifts)


def _pair(name: str, label: str, value, low: float, high: float) -> tuple[float, float]:
    """Two numbers lo <= hi within [low, high] (a list from YAML), or a ValueError naming them."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not low <= lo <= hi <= high:  # also refuses nan
        raise ValueError(f"{name}: {label} must be two numbers lo <= hi in [{low:g}, {high:g}], "
                         f"got {value!r}")
    return lo, hi


class RandomErasing(_Augmentation):
    """Each image has a random rectangle set to ``value`` with probability p (training only).

    Random erasing (Zhong et al. 2020; torchvision's ``RandomErasing``): the network cannot rely
    on any one part of the image (a collar, a sole) being visible. Per image and step: an area of
    U(scale) times the image's, an aspect ratio h/w of exp(U(log ratio)), so a box of
    round(sqrt(area * ratio)) x round(sqrt(area / ratio)) pixels (cut to the image where it
    would not fit: torchvision draws again instead), placed uniformly where it fits, over
    every channel. On (n, c, h, w) images only.

        y = x * keep + value * (1 - keep),   keep[n, i, j] = 0 inside sample n's box, else 1
        dL/dx = g * keep     (the erased pixels have no say in the loss)

    The boxes are a comparison of row and column numbers with each sample's bounds, broadcast
    over the batch: no loop over samples.
    """

    name = "random_erasing"
    example: ClassVar[dict] = {"kwargs": {"p": 1.0}, "in_shape": (2, 6, 5)}

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3),
                 value: float = 0.0) -> None:
        super().__init__()
        self.p = _probability(self.name, p)
        self.scale = _pair(self.name, "scale (fractions of the image's area)", scale, 0.0, 1.0)
        self.ratio = _pair(self.name, "ratio (box height / width)", ratio, 1e-3, 1e3)
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and np.isfinite(value)):
            raise ValueError(f"{self.name}: value must be a finite number, got {value!r}")
        self.value = float(value)
        self._config = {"p": self.p, "scale": list(self.scale), "ratio": list(self.ratio),
                        "value": self.value}
        self._keep = None

    def build(self, in_shape, rng, dtype):
        out = super().build(in_shape, rng, dtype)
        if len(out) != 3:
            raise ValueError(f"{self.name}: expects images (n, channels, height, width), got "
                             f"sample shape {out}, that is input {batch_shape(out)}")
        return out

    def _draw_keep(self, n: int, dtype) -> np.ndarray:
        """keep (n, 1, h, w): 0 inside each erased sample's box, 1 elsewhere."""
        h, w = self._in_shape[1:]
        rng = self._rng
        erased = rng.random(n) < self.p
        area = rng.uniform(*self.scale, n) * h * w
        ratio = np.exp(rng.uniform(*np.log(self.ratio), n))
        box_h = np.clip(np.rint(np.sqrt(area * ratio)), 0, h).astype(np.intp)
        box_w = np.clip(np.rint(np.sqrt(area / ratio)), 0, w).astype(np.intp)
        top = rng.integers(0, h - box_h + 1)   # one draw per sample, in [0, h - box_h]
        left = rng.integers(0, w - box_w + 1)
        rows, cols = np.arange(h), np.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])    # (n, h)
        in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # (n, w)
        inside = in_rows[:, :, None] & in_cols[:, None, :] & erased[:, None, None]
        return (~inside).astype(dtype)[:, None]

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        if not self.training or self.p == 0.0:
            self._keep = None
            return x
        self._keep = self._draw_keep(x.shape[0], x.dtype)
        y = x * self._keep
        if self.value:
            y += self.value * (1.0 - self._keep)
        return y

    def backward(self, grad):
        if grad is None or not self.propagate:
            return None
        return grad if self._keep is None else grad * self._keep
