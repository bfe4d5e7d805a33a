"""Normalisation: batch norm (per channel, over the batch) and layer norm (per sample).

Both compute xhat = (x - mean) / sqrt(var + eps) and y = scale * xhat + shift, with the biased
variance; they differ in the axes that mean and var run over (m values in each mean):

    dL/dscale = sum(g * xhat),   dL/dshift = sum(g)          (over the axes the statistics skip)
    dL/dx = 1 / sqrt(var + eps) * (gs - mean(gs) - xhat * mean(gs * xhat)),   gs = g * scale

(means over the axes of the statistics). The scales and shifts take no weight decay
(``decay`` False): decay would pull them to zero, which undoes the layer's output.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from nnx.convolution import check_input
from nnx.module import Module


def _number(name: str, value, low: float, high: float, low_open: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(value) and (value > low if low_open else value >= low)
            and value <= high):
        left = "(" if low_open else "["
        raise ValueError(f"{name} must be in {left}{low}, {high}], got {value}")
    return value


class BatchNorm(Module):
    """Batch normalisation (Ioffe & Szegedy 2015) of (n, c) or (n, c, *spatial), per channel.

    Training: mean and var over the batch and every spatial position (m = n * prod(spatial)
    values per channel), and the running statistics move towards them,

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    (the unbiased variance, as in PyTorch). Eval: the running statistics in place of the batch's,
    so that a prediction depends on its own sample only, not on what else is in the batch, and a
    single sample can be classified at all. Both live in ``buffers``: state that checkpoints keep
    and that the optimizer never sees. Params: ``scale`` (ones) and ``shift`` (zeros), (c,).
    Training needs m > 1 (one value has no variance): a batch of one (n, c) is an error.
    """

    name = "batch_norm"
    example: ClassVar[dict] = {"kwargs": {}, "in_shape": (3, 2, 2)}

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = _number("momentum", momentum, 0.0, 1.0, low_open=False)
        self.eps = _number("eps", eps, 0.0, math.inf, low_open=True)
        self._config = {"momentum": self.momentum, "eps": self.eps}

    def build(self, in_shape, rng, dtype):
        in_shape = tuple(int(v) for v in in_shape)
        if len(in_shape) < 1:
            raise ValueError(f"{self.name}: expects a sample shape (channels, *spatial), got "
                             f"{in_shape}")
        c = in_shape[0]
        self._in_shape = in_shape
        self.params["scale"], self.params["shift"] = np.ones(c, dtype), np.zeros(c, dtype)
        self.grads["scale"], self.grads["shift"] = np.zeros(c, dtype), np.zeros(c, dtype)
        self.decay.update(scale=False, shift=False)
        self.buffers["running_mean"] = np.zeros(c, dtype)
        self.buffers["running_var"] = np.ones(c, dtype)
        return in_shape

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, -1) + (1,) * (x.ndim - 2)  # a (c,) vector broadcast along channels
        if self.training:
            m = x.size // x.shape[1]
            if m < 2:
                raise ValueError(f"{self.name}: training needs more than one value per channel "
                                 f"to compute a variance, got a batch of shape {x.shape}")
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(bshape)
            var = np.mean(xc * xc, axis=axes)
            mom = self.momentum
            self.buffers["running_mean"][...] = (1 - mom) * self.buffers["running_mean"] + mom * mean
            self.buffers["running_var"][...] = ((1 - mom) * self.buffers["running_var"]
                                                + mom * var * (m / (m - 1)))
        else:
            xc = x - self.buffers["running_mean"].reshape(bshape)
            var = self.buffers["running_var"]
        inv = 1.0 / np.sqrt(var + self.eps)
        xc *= inv.reshape(bshape)  # xc is this call's own array: now xhat
        self._xhat, self._inv, self._bshape, self._axes = xc, inv, bshape, axes
        self._train_stats = self.training
        return xc * self.params["scale"].reshape(bshape) + self.params["shift"].reshape(bshape)

    def backward(self, grad):
        xhat, axes, bshape = self._xhat, self._axes, self._bshape
        self.grads["shift"][...] = grad.sum(axis=axes)
        self.grads["scale"][...] = np.sum(grad * xhat, axis=axes)
        scale = (self.params["scale"] * self._inv).reshape(bshape)
        if not self._train_stats:  # fixed statistics: y is affine in x
            return grad * scale
        m = grad.size // grad.shape[1]
        dx = grad - (self.grads["shift"] / m).reshape(bshape)
        dx -= xhat * (self.grads["scale"] / m).reshape(bshape)
        dx *= scale
        return dx


class LayerNorm(Module):
    """Layer normalisation (Ba et al. 2016): each sample normalised over all of its values.

    On (n, *shape): mean and var of x[i] over its prod(shape) values, then
    y = scale * xhat + shift with ``scale`` (ones) and ``shift`` (zeros) of the sample shape, as
    ``torch.nn.LayerNorm(shape)``. The same in training and eval: no running statistics.
    """

    name = "layer_norm"
    example: ClassVar[dict] = {"kwargs": {}, "in_shape": (3, 4)}

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = _number("eps", eps, 0.0, math.inf, low_open=True)
        self._config = {"eps": self.eps}

    def build(self, in_shape, rng, dtype):
        in_shape = tuple(int(v) for v in in_shape)
        if len(in_shape) < 1 or int(np.prod(in_shape)) < 2:
            raise ValueError(f"{self.name}: needs at least two values per sample, got sample "
                             f"shape {in_shape}")
        self._in_shape = in_shape
        self.params["scale"], self.params["shift"] = np.ones(in_shape, dtype), np.zeros(
            in_shape, dtype)
        self.grads["scale"], self.grads["shift"] = np.zeros(in_shape, dtype), np.zeros(
            in_shape, dtype)
        self.decay.update(scale=False, shift=False)
        return in_shape

    def forward(self, x):
        check_input(self.name, x, self._in_shape)
        axes = tuple(range(1, x.ndim))
        xc = x - x.mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(np.mean(xc * xc, axis=axes, keepdims=True) + self.eps)
        xc *= inv  # this call's own array: now xhat
        self._xhat, self._inv, self._axes = xc, inv, axes
        return xc * self.params["scale"] + self.params["shift"]

    def backward(self, grad):
        xhat, axes = self._xhat, self._axes
        self.grads["shift"][...] = grad.sum(axis=0)
        self.grads["scale"][...] = np.sum(grad * xhat, axis=0)
        gs = grad * self.params["scale"]
        dx = gs - gs.mean(axis=axes, keepdims=True)
        dx -= xhat * np.mean(gs * xhat, axis=axes, keepdims=True)
        dx *= self._inv
        return dx
