"""IDX files written by the tests themselves: a small Fashion-MNIST that needs no download.

``small_fashion`` writes the four files under their real names, so the real parser and loader
read them exactly as they read the dataset; ``conftest.py`` makes a session-wide copy of a few
hundred images for the presets, and ``test_data.py`` writes its own tiny ones.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from nnx.datasets import FASHION_MNIST_FILES

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: 0, 0, type code, ndim, big-endian sizes, big-endian data."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """``array`` as an IDX file at ``path``, gzip-compressed when the name ends in ``.gz``."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def small_fashion(directory: Path, n_train=6, n_test=4, gz=True, seed=7) -> dict[str, np.ndarray]:
    """Write four Fashion-MNIST-shaped IDX files (28x28 uint8 images, labels 0..9) into
    ``directory``; returns the arrays, keyed x_train, y_train, x_test, y_test."""
    g = np.random.default_rng(seed)
    arrays = {"x_train": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": g.integers(0, 10, n_train).astype(np.uint8),
              "x_test": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": g.integers(0, 10, n_test).astype(np.uint8)}
    directory.mkdir(parents=True, exist_ok=True)
    for key, base in FASHION_MNIST_FILES.items():
        write_idx(directory / (base + (".gz" if gz else "")), arrays[key])
    return arrays
