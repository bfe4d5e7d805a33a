"""Datasets: a checked container, preprocessing and a minibatch iterator.

Conventions: x is ``(n, features)`` floating point (or ``(n, *sample_shape)``, see
``Dataset.shaped``); classification labels are int64 ``(n,)`` in ``[0, n_classes)``;
regression targets are float ``(n, k)``.

The sources that make datasets (``DatasetSource`` and the built-ins) are in ``nnx.datasets``;
the IDX file format in ``nnx.idx``. Only NumPy and the standard library are imported here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

TASKS = ("classification", "regression")


# -- the container ---------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class Dataset:
    """A training split and an optional test split, checked when built.

    x_train, x_test: (n, features) floating point, finite; or (n, *sample_shape).
    y_train, y_test: int64 labels (n,) in [0, n_classes) for classification;
                     float targets (n, k) for regression (n_classes is then None).
    The test split is None when the source has none.
    sample_shape: what one sample is, e.g. (1, 28, 28) for an image with one channel; x is kept
                  flat (n, features) as the MLP takes it, and ``shaped()`` gives it in this
                  shape for networks built from it. Default: x's own, (features,) when flat.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    task: str = "classification"
    n_classes: int | None = None
    sample_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: task must be one of {TASKS}, "
                             f"got {self.task!r}")
        if self.task == "classification":
            if self.n_classes is None or int(self.n_classes) < 2:
                raise ValueError(f"dataset {self.name!r}: classification needs n_classes >= 2, "
                                 f"got {self.n_classes!r}")
            self.n_classes = int(self.n_classes)
        elif self.n_classes is not None:
            raise ValueError(f"dataset {self.name!r}: regression takes n_classes=None, "
                             f"got {self.n_classes!r}")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError(f"dataset {self.name!r}: give both x_test and y_test, or neither")
        self.y_train = self._check("train", self.x_train, self.y_train)
        if self.x_test is not None:
            self.y_test = self._check("test", self.x_test, self.y_test)
            if self.x_test.shape[1:] != self.x_train.shape[1:]:
                what = (f"{self.x_test.shape[1]} features but x_train has {self.x_train.shape[1]}"
                        if self.x_train.ndim == 2 else f"samples of shape {self.x_test.shape[1:]} "
                        f"but x_train has {self.x_train.shape[1:]}")
                raise ValueError(f"dataset {self.name!r}: x_test has {what}")
        self._check_sample_shape()

    def _check_sample_shape(self) -> None:
        shape = self.x_train.shape[1:] if self.sample_shape is None else self.sample_shape
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            shape = ()
        fits = bool(shape) and all(d > 0 for d in shape) and (
            self.x_train.shape[1:] == shape
            or self.x_train.ndim == 2 and math.prod(shape) == self.x_train.shape[1])
        if not fits:
            raise ValueError(f"dataset {self.name!r}: sample_shape {self.sample_shape!r} does not "
                             f"fit x_train of shape {self.x_train.shape}")
        self.sample_shape = shape

    def shaped(self) -> Dataset:
        """This dataset with x as (n, *sample_shape) (views, no copies)."""
        return self._reshaped(self.sample_shape)

    def flat(self) -> Dataset:
        """This dataset with x as (n, features) (views where possible)."""
        return self._reshaped((self.n_features,))

    def _reshaped(self, shape) -> Dataset:
        x_test = None if self.x_test is None else self.x_test.reshape(len(self.x_test), *shape)
        return dataclasses.replace(self, x_train=self.x_train.reshape(len(self.x_train), *shape),
                                   x_test=x_test)

    def _check(self, split: str, x, y) -> np.ndarray:
        """Check one split; returns y as the task wants it (int64 labels or float targets)."""
        where = f"dataset {self.name!r}"
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise ValueError(f"{where}: x_{split} must be a 2-D array (n, features) (or "
                             f"(n, *sample_shape)), got shape {np.shape(x)}")
        if x.dtype.kind != "f":
            raise ValueError(f"{where}: x_{split} must be floating point, got {x.dtype}")
        y = np.asarray(y)
        if len(x) == 0:
            raise ValueError(f"{where}: x_{split} is empty")
        if len(y) != len(x):
            raise ValueError(f"{where}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        # min and max propagate NaN and show inf, without a temporary as large as x.
        if not (np.isfinite(x.min()) and np.isfinite(x.max())):
            raise ValueError(f"{where}: x_{split} contains NaN or inf")
        if self.task == "regression":
            if y.ndim != 2 or y.dtype.kind != "f":
                raise ValueError(f"{where}: regression y_{split} must be float (n, k), "
                                 f"got {y.dtype} of shape {y.shape}")
            if not np.isfinite(y).all():
                raise ValueError(f"{where}: y_{split} contains NaN or inf")
            return y
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"{where}: classification y_{split} must be integer labels (n,), "
                             f"got {y.dtype} of shape {y.shape}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{where}: y_{split} has label {bad}; allowed labels are "
                             f"0..{self.n_classes - 1} (n_classes={self.n_classes})")
        return y.astype(np.int64, copy=False)

    @property
    def n_features(self) -> int:
        """Values per sample (the size of sample_shape)."""
        return math.prod(self.x_train.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Output units: n_classes, 1 for binary classification, k for regression."""
        if self.task == "regression":
            return self.y_train.shape[1]
        return 1 if self.n_classes == 2 else self.n_classes

    def __repr__(self) -> str:
        test = "no test" if self.x_test is None else f"test {self.x_test.shape}"
        classes = f", {self.n_classes} classes" if self.n_classes else ""
        return (f"Dataset({self.name!r}, {self.task}{classes}, train {self.x_train.shape}, "
                f"{test}, {self.x_train.dtype})")


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- preprocessing -----------------------------------------------------------------------------
def standardize(ds: Dataset) -> Dataset:
    """x' = (x - mean) / std with the TRAINING mean and std, applied to both splits.

    The test split never informs the statistics (no leakage), so its mean is not exactly 0.
    Constant features (std 0) are only centred. Returns a new Dataset; ``ds`` is unchanged.
    """
    x = ds.x_train
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    x_test = None if ds.x_test is None else (ds.x_test - mean) / std
    return dataclasses.replace(ds, x_train=(x - mean) / std, x_test=x_test)


def split(ds: Dataset, fraction: float, rng: np.random.Generator,
          stratify: bool = False) -> tuple[Dataset, Dataset]:
    """Carve a seeded validation set out of the training data: returns (train, validation).

    round(fraction * n) random training samples (at least 1, leaving at least 1) become the
    validation set, held in the second Dataset's x_train/y_train (its test split is None).
    The first keeps the other training samples, in their original order, and the test split.
    ``stratify`` (classification): each class gives its share, so that the class proportions
    of both parts are those of the training data, to within one sample per class (the shares'
    remainders are given to the classes with the largest ones, as in largest-remainder
    apportionment).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(ds.x_train)
    if n < 2:
        raise ValueError(f"dataset {ds.name!r} has {n} training sample; cannot split it")
    n_val = min(max(round(fraction * n), 1), n - 1)
    if stratify and ds.task == "classification":
        val = _stratified_pick(ds.y_train, n_val, rng)
    else:
        val = rng.permutation(n)[:n_val]
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    val, train = np.sort(val), np.flatnonzero(keep)
    kept = dataclasses.replace(ds, x_train=ds.x_train[train], y_train=ds.y_train[train])
    held = dataclasses.replace(ds, x_train=ds.x_train[val], y_train=ds.y_train[val],
                               x_test=None, y_test=None)
    return kept, held


def _stratified_pick(labels: np.ndarray, n_val: int, rng: np.random.Generator) -> np.ndarray:
    """``n_val`` indices drawn class by class, in proportion to each class's count."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n_val / len(labels))
    take = np.floor(exact).astype(np.int64)
    left = n_val - int(take.sum())
    if left:  # the largest remainders get one more; ties broken by the rng, not by order
        order = np.lexsort((rng.random(len(classes)), -(exact - take)))
        take[order[:left]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.concatenate(picked)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float64) -> np.ndarray:
    """(n,) integer labels -> (n, n_classes) with out[i, labels[i]] = 1 and zeros elsewhere."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be 1-D integers, got {labels.dtype} of shape "
                         f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"label {bad} is outside 0..{n_classes - 1} (n_classes={n_classes})")
    out = np.zeros((len(labels), n_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


# -- minibatches -------------------------------------------------------------------------------
class Batches:
    """Minibatches of (x, y); each ``for xb, yb in batches`` loop is one epoch.

    batch_size 0 (or >= n): the full batch, i.e. the original arrays, never copied. The rng
    is then not used: reordering a batch that is used whole changes only summation order.
    No rng: views x[i:i + batch_size] in order, no copies.
    With an rng: a fresh permutation per epoch; rows are gathered with ``np.take`` into two
    buffers allocated once, so the yielded arrays are REUSED and valid only until the next
    batch (copy them to keep them). The last batch holds the n % batch_size samples left,
    if any, as a shorter view of the buffers.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 0,
                 rng: np.random.Generator | None = None):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        n = len(x)
        if n == 0:
            raise ValueError("cannot make batches of 0 samples")
        batch_size = check_int("batch_size", batch_size, 0)
        self.batch_size = n if batch_size == 0 or batch_size >= n else batch_size
        self.full = self.batch_size == n
        self.rng = rng
        self.x, self.y = x, y
        if rng is not None and not self.full:
            # np.take copies a non-contiguous source whole on every call; pay that once here.
            self.x, self.y = np.ascontiguousarray(x), np.ascontiguousarray(y)
            self._xb = np.empty((self.batch_size,) + x.shape[1:], dtype=x.dtype)
            self._yb = np.empty((self.batch_size,) + y.shape[1:], dtype=y.dtype)

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        x, y, size, n = self.x, self.y, self.batch_size, len(self.x)
        if self.full:
            yield x, y
            return
        if self.rng is None:
            for start in range(0, n, size):
                yield x[start:start + size], y[start:start + size]
            return
        order = self.rng.permutation(n)
        for start in range(0, n, size):
            idx = order[start:start + size]
            m = len(idx)
            # mode="clip": the indices come from a permutation, so they are valid, and the
            # default mode="raise" would gather into a hidden temporary before filling out.
            xb = np.take(x, idx, axis=0, out=self._xb[:m], mode="clip")
            yb = np.take(y, idx, axis=0, out=self._yb[:m], mode="clip")
            yield xb, yb


# Names that lived here before the dataset sources and the IDX format got files of their own;
# plugins and scripts that import them from nnx.data keep working. Looked up on first use,
# because nnx.datasets imports this module.
MOVED_TO_DATASETS = ("DatasetSource", "DatasetNotFound", "Tutorial", "XOR", "Moons", "Circles",
                     "Spirals", "Digits", "FashionMNIST", "MNIST1D", "FASHION_MNIST_URL",
                     "FASHION_MNIST_FILES", "DEBIAN_FASHION_MNIST")
MOVED_TO_IDX = ("read_idx", "idx_header")


def __getattr__(name: str):
    if name in MOVED_TO_DATASETS:
        from nnx import datasets

        return getattr(datasets, name)
    if name in MOVED_TO_IDX:
        from nnx import idx

        return getattr(idx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
