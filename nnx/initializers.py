"""Weight initializers: ``init(shape, rng, dtype)`` draws an array of ``shape``.

The scale of Glorot and He draws depends on a weight's fan-in and fan-out, which ``fans(shape)``
reads off the shape by one documented rule: a Dense weight is ``(in, out)``, a convolution's
weight ``(out_channels, in_channels, *kernel)`` (see ``fans``). Randomness comes only from the
``numpy.random.Generator`` passed in: no global state.
"""

from __future__ import annotations

import numpy as np


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``: how many inputs feed one output, and back.

    - up to 2-D, a Dense weight ``(in, out)`` (a bias ``(1, units)`` or ``(units,)``):
      fan_in = shape[0], fan_out = shape[-1];
    - 3-D and more, a convolution's weight ``(out_channels, in_channels, *kernel)``: one output
      reads in_channels x kernel area inputs, one input reaches out_channels x kernel area
      outputs, so fan_in = in_channels * prod(kernel), fan_out = out_channels * prod(kernel)
      (as in PyTorch's ``_calculate_fan_in_and_fan_out``).
    """
    if len(shape) <= 2:
        return shape[0], shape[-1]
    area = int(np.prod(shape[2:]))
    return shape[1] * area, shape[0] * area


def get(spec: str | Initializer) -> Initializer:
    """An initializer from a registered name, or ``spec`` itself when it is one already."""
    if isinstance(spec, Initializer):
        return spec
    from nnx.registry import build

    return build("initializers", spec)


class Initializer:
    """Base class: subclasses implement ``draw(fan_in, fan_out, shape, rng)``.

    ``random``: whether the draw depends on the generator (the kit checks that two seeds give
    two draws); a constant initializer (zeros) sets it to False.
    """

    random: bool = True

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float64):
        fan_in, fan_out = fans(tuple(shape))
        return np.asarray(self.draw(fan_in, fan_out, shape, rng), dtype=dtype)

    def draw(self, fan_in, fan_out, shape, rng):
        raise NotImplementedError


class Uniform01(Initializer):
    """U[0, 1): the tutorial's ``np.random.rand``."""

    def __call__(self, shape, rng, dtype=np.float64):
        # Drawn in the target dtype: a float64 draw rounded to float32 can become exactly 1.0.
        return rng.random(shape, dtype=np.dtype(dtype).type)

    def draw(self, fan_in, fan_out, shape, rng):
        return rng.random(shape)


class Normal(Initializer):
    """N(mean, std**2)."""

    def __init__(self, mean: float = 0.0, std: float = 0.01) -> None:
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.mean, self.std = mean, std

    def draw(self, fan_in, fan_out, shape, rng):
        return rng.normal(self.mean, self.std, shape)


class Zeros(Initializer):
    """All zeros (biases; never for weights of hidden layers: every unit would stay equal)."""

    random = False  # the same array for every generator

    def draw(self, fan_in, fan_out, shape, rng):
        return np.zeros(shape)


class GlorotUniform(Initializer):
    """U[-a, a], a = sqrt(6 / (fan_in + fan_out)). Glorot & Bengio (2010)."""

    def draw(self, fan_in, fan_out, shape, rng):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


class GlorotNormal(Initializer):
    """N(0, 2 / (fan_in + fan_out)). Glorot & Bengio (2010)."""

    def draw(self, fan_in, fan_out, shape, rng):
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)


class HeUniform(Initializer):
    """U[-a, a], a = sqrt(6 / fan_in). He et al. (2015), for ReLU layers."""

    def draw(self, fan_in, fan_out, shape, rng):
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, shape)


class HeNormal(Initializer):
    """N(0, 2 / fan_in). He et al. (2015), for ReLU layers."""

    def draw(self, fan_in, fan_out, shape, rng):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
