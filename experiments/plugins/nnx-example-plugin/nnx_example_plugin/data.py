"""Checkerboard, a dataset registered as ``checkerboard`` in the ``nnx.datasets`` group."""

from __future__ import annotations

import numbers

import numpy as np
from nnx.data import Dataset
from nnx.datasets import DatasetSource


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Checkerboard(DatasetSource):
    """Points uniform in [-1, 1]^2, labelled by the colour of their square on a tiles x tiles board.

    label = (floor(tiles (x0 + 1) / 2) + floor(tiles (x1 + 1) / 2)) mod 2, then N(0, noise^2)
    jitter on x (a jittered point keeps its square's colour). Two classes, int64 labels; the
    train and test splits are drawn independently from the ``rng`` given to ``load``; n_test=0
    means no test split. A board of 2 tiles is XOR; every extra tile asks for more units.
    """

    name = "checkerboard"

    def __init__(self, n_samples: int = 800, n_test: int = 400, tiles: int = 4,
                 noise: float = 0.0) -> None:
        self.n_samples = _int("n_samples", n_samples, 1)
        self.n_test = _int("n_test", n_test, 0)
        self.tiles = _int("tiles", tiles, 2)
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise >= 0:
            raise ValueError(f"noise must be a number >= 0, got {noise!r}")
        self.noise = float(noise)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points (n, 2) in float64 and their int64 labels."""
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        cells = np.floor((x + 1.0) * (self.tiles / 2.0)).astype(np.int64)
        cells = np.minimum(cells, self.tiles - 1)  # x = 1.0 exactly belongs to the last square
        y = cells.sum(axis=1) % 2
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape)
        return x, y

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"dtype must be a floating-point type, got {dtype}")
        x, y = self.sample(self.n_samples, rng)
        x_test = y_test = None
        if self.n_test:
            x_test, y_test = self.sample(self.n_test, rng)
            x_test = x_test.astype(dtype)
        return Dataset(self.name, x.astype(dtype), y, x_test, y_test, "classification", 2)
