"""The kit's check of dataset sources: shapes (and the declared sample shape), dtypes, finite
values, labels, and randomness drawn from the generator given. Part of ``nnx.testing`` (import
from there)."""

from __future__ import annotations

import numpy as np

from nnx.testing_gradients import assert_finite
from nnx.testing_registry import ComponentUnavailable, component_label, default_instance

DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def check_dataset(name, seed: int = 0, **kwargs) -> None:
    """A dataset source built from defaults (and ``kwargs``, e.g. ``data_dir``): shapes, dtypes
    (float32 and float64), finite x, labels in [0, n_classes), same seed -> same arrays,
    other seed -> other arrays.

    A source that is deterministic by nature (fixed files, a standard split) declares
    ``random = False`` and must then give the same arrays for every seed. Missing files
    (``FileNotFoundError``, e.g. ``nnx.data.DatasetNotFound``) raise ``ComponentUnavailable``.
    """
    from nnx.data import Dataset  # the container every source returns

    source = default_instance("datasets", name, **kwargs)
    label = f"dataset {component_label('datasets', name)!r}"

    def load(seed, dtype):
        try:
            ds = source.load(np.random.default_rng(seed), dtype=dtype)
        except FileNotFoundError as error:
            raise ComponentUnavailable(f"{label}: its files are missing: {error}") from error
        if not isinstance(ds, Dataset):
            raise AssertionError(  # noqa: TRY004 - every failure of the kit is an AssertionError
                f"{label}: load() must return an nnx.data.Dataset, got {type(ds).__name__}")
        _check_dataset_arrays(ds, np.dtype(dtype), label)
        return ds

    a = load(seed, np.float32)
    load(seed, np.float64)
    if not _same_arrays(a, load(seed, np.float32)):
        raise AssertionError(f"{label}: seed {seed} gave two different datasets: it must draw "
                             "only from the generator given to load")
    random = getattr(source, "random", True)
    same = _same_arrays(a, load(seed + 1, np.float32))
    if random and same:
        raise AssertionError(f"{label}: seeds {seed} and {seed + 1} gave the same arrays: a "
                             "source must draw from the generator given to load (one "
                             "deterministic by nature declares random = False)")
    if not random and not same:
        raise AssertionError(f"{label}: declares random = False, but seeds {seed} and "
                             f"{seed + 1} gave different arrays")


def _check_dataset_arrays(ds, dtype: np.dtype, label: str) -> None:
    where = f"{label} (load with dtype={dtype.name})"
    shape = getattr(ds, "sample_shape", None)
    if not (isinstance(shape, tuple) and shape and all(isinstance(d, int) and d > 0 for d in shape)
            and int(np.prod(shape)) == int(np.prod(ds.x_train.shape[1:]))):
        raise AssertionError(f"{where}: sample_shape must be a tuple of positive ints whose "
                             f"product is the features of x_train {ds.x_train.shape}, got "
                             f"{shape!r}")
    if ds.task not in ("classification", "regression"):
        raise AssertionError(f"{where}: task must be classification or regression, "
                             f"got {ds.task!r}")
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x is None and y is None and split == "test":
            continue
        if not isinstance(x, np.ndarray) or x.ndim < 2 or len(x) == 0:
            raise AssertionError(f"{where}: x_{split} must be a non-empty (n, features) array, "
                                 f"got shape {np.shape(x)}")
        if x.dtype != dtype:
            raise AssertionError(f"{where}: x_{split} is {x.dtype}, not {dtype.name}")
        if x.shape[1:] != ds.x_train.shape[1:]:
            raise AssertionError(f"{where}: x_{split} has samples of shape {x.shape[1:]}, "
                                 f"x_train {ds.x_train.shape[1:]}")
        assert_finite(x, f"{where}: x_{split}")
        y = np.asarray(y)
        if len(y) != len(x):
            raise AssertionError(f"{where}: x_{split} has {len(x)} rows, y_{split} {len(y)}")
        if ds.task == "regression":
            if y.ndim != 2 or y.dtype.kind != "f":
                raise AssertionError(f"{where}: regression y_{split} must be float (n, k), got "
                                     f"{y.dtype} {y.shape}")
            assert_finite(y, f"{where}: y_{split}")
            continue
        if y.ndim != 1 or y.dtype != np.int64:
            raise AssertionError(f"{where}: y_{split} must be int64 labels (n,), got {y.dtype} "
                                 f"{y.shape}")
        bad = np.flatnonzero((y < 0) | (y >= ds.n_classes))
        if bad.size:
            raise AssertionError(f"{where}: y_{split} has label {y[bad[0]]} at {bad[0]}, outside "
                                 f"[0, {ds.n_classes})")


def _same_arrays(a, b) -> bool:
    for key in DATASET_ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        if (x is None) != (y is None) or x is not None and not np.array_equal(x, y):
            return False
    return True
