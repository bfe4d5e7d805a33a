"""The built-in dataset sources: tiny fixed sets, generated 2-D sets, scikit-learn's digits,
Fashion-MNIST (found on disk or downloaded) and MNIST-1D (generated locally).

Every source is a small class registered under the entry-point group ``nnx.datasets``. Its
keyword arguments are its config (``conf/dataset/<name>.yaml``) and ``load(rng, dtype)``
returns an ``nnx.data.Dataset``; all randomness comes from the ``rng`` given to ``load``.

Only NumPy and the standard library are imported here. scikit-learn (digits) and mnist1d are
imported inside the sources that use them, so ``import nnx`` stays cheap.
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from nnx.data import Dataset, check_int
from nnx.idx import idx_header, read_idx


# -- argument checks shared by the sources ---------------------------------------------------
def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    return dt


def _check_nonnegative(name: str, value) -> float:
    if not value >= 0:  # written this way so that NaN fails too
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class DatasetSource:
    """Base class of the dataset sources: arguments in ``__init__``, data from ``load``.

    Subclasses check their arguments in ``__init__``, so a bad config fails before any work,
    and draw every random number from the generator given to ``load``. ``random``: whether
    the data depend on that generator (another seed, other arrays); a source deterministic
    by nature (fixed files, a standard split) sets it to False. The conformance kit checks
    both. A source whose size its arguments decide may define ``estimated_bytes(dtype)``, the
    memory ``load`` will take, so that a size beyond the machine's memory is refused before
    loading.
    """

    name = "dataset"
    random: bool = True

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        """The dataset, with x in ``dtype``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


# -- tiny fixed sets ---------------------------------------------------------------------------
class Tutorial(DatasetSource):
    """The 4 samples of the classic 11-line tutorial; the test split repeats them (it has no other).

    x = [[0,0,1], [0,1,1], [1,0,1], [1,1,1]] (the constant third column acts as a bias input),
    y = [0, 1, 1, 0]: XOR of the first two columns.
    https://iamtrask.github.io/2015/07/12/basic-python-network/
    """

    name = "tutorial"
    random = False

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=_float_dtype(dtype))
        y = np.array([0, 1, 1, 0], dtype=np.int64)
        return Dataset(self.name, x, y, x.copy(), y.copy(), "classification", 2)


class XOR(DatasetSource):
    """XOR of two bits: the corners of {0,1}^2, repeated to n_samples and jittered by noise."""

    name = "xor"

    def __init__(self, n_samples: int = 4, noise: float = 0.0):
        self.n_samples = check_int("n_samples", n_samples, 4)
        self.noise = _check_nonnegative("noise", noise)

    @property
    def random(self) -> bool:
        return self.noise > 0  # without noise: the corners, whatever the seed

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        """Training: corner i % 4 for sample i, plus N(0, noise^2); test: the 4 clean corners."""
        corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        labels = np.array([0, 1, 1, 0], dtype=np.int64)
        pick = np.arange(self.n_samples) % 4
        x = corners[pick]
        if self.noise:
            x += self.noise * rng.standard_normal(x.shape)
        dt = _float_dtype(dtype)
        return Dataset(self.name, x.astype(dt), labels[pick], corners.astype(dt), labels.copy(),
                       "classification", 2)


# -- generated 2-D sets ------------------------------------------------------------------------
def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """n labels, as equal in count as n allows, in random order."""
    return rng.permutation(np.arange(n, dtype=np.int64) % n_classes)


class _Generated(DatasetSource):
    """Shared by the 2-D toy sets: train and test drawn independently from the same rng."""

    n_classes = 2

    def __init__(self, n_samples: int, n_test: int, noise: float):
        self.n_samples = check_int("n_samples", n_samples, 1)
        self.n_test = check_int("n_test", n_test, 0)  # 0: no test split
        self.noise = _check_nonnegative("noise", noise)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points (n, 2) float64 and their int64 labels."""
        raise NotImplementedError

    def estimated_bytes(self, dtype=np.float64) -> int:
        """Memory ``load`` takes at its peak, known before it draws anything: per point, a few
        (2,) float64 temporaries (angles, jitter, the cast copy) and an int64 label."""
        return (self.n_samples + self.n_test) * (6 * 2 * 8 + 8)

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        dt = _float_dtype(dtype)
        x, y = self.sample(self.n_samples, rng)
        x_test = y_test = None
        if self.n_test:
            x_test, y_test = self.sample(self.n_test, rng)
            x_test = x_test.astype(dt)
        return Dataset(self.name, x.astype(dt), y, x_test, y_test, "classification",
                       self.n_classes)

    def _jitter(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return x + self.noise * rng.standard_normal(x.shape)


class Moons(_Generated):
    """Two interleaving half circles, as scikit-learn's make_moons, with N(0, noise^2) jitter."""

    name = "moons"

    def __init__(self, n_samples: int = 400, n_test: int = 200, noise: float = 0.1):
        super().__init__(n_samples, n_test, noise)

    def sample(self, n, rng):
        # class 0: (cos t, sin t); class 1: (1 - cos t, 1/2 - sin t); t ~ U(0, pi)
        y = _balanced_labels(n, 2, rng)
        t = rng.uniform(0.0, np.pi, n)
        upper = np.stack([np.cos(t), np.sin(t)], axis=1)
        lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
        return self._jitter(np.where(y[:, None] == 0, upper, lower), rng), y


class Circles(_Generated):
    """A circle of radius factor inside the unit circle, with N(0, noise^2) jitter."""

    name = "circles"

    def __init__(self, n_samples: int = 400, n_test: int = 200, noise: float = 0.05,
                 factor: float = 0.5):
        super().__init__(n_samples, n_test, noise)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor = float(factor)

    def sample(self, n, rng):
        # class 0 on the unit circle, class 1 on radius factor; angle t ~ U(0, 2 pi)
        y = _balanced_labels(n, 2, rng)
        t = rng.uniform(0.0, 2 * np.pi, n)
        radius = np.where(y == 0, 1.0, self.factor)[:, None]
        return self._jitter(radius * np.stack([np.cos(t), np.sin(t)], axis=1), rng), y


class Spirals(_Generated):
    """n_classes interleaved spiral arms of `turns` turns each, with N(0, noise^2) jitter."""

    name = "spirals"

    def __init__(self, n_samples: int = 600, n_test: int = 300, noise: float = 0.05,
                 n_classes: int = 3, turns: float = 1.0):
        super().__init__(n_samples, n_test, noise)
        self.n_classes = check_int("n_classes", n_classes, 2)
        if not turns > 0:
            raise ValueError(f"turns must be > 0, got {turns}")
        self.turns = float(turns)

    def sample(self, n, rng):
        # arm k: radius r ~ U(0, 1), angle 2 pi (turns * r + k / n_classes)
        y = _balanced_labels(n, self.n_classes, rng)
        r = rng.uniform(0.0, 1.0, n)
        angle = 2 * np.pi * (self.turns * r + y / self.n_classes)
        x = r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return self._jitter(x, rng), y


# -- scikit-learn's digits ---------------------------------------------------------------------
class Digits(DatasetSource):
    """scikit-learn's 8x8 digits: 1797 images, 64 features in [0, 1], a seeded train/test split."""

    name = "digits"

    def __init__(self, test_fraction: float = 0.2):
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = float(test_fraction)

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        """ceil(test_fraction * 1797) random images (360 by default) form the test split."""
        from sklearn.datasets import load_digits  # slow to import; ships the data, no download

        x, y = load_digits(return_X_y=True)
        x = x.astype(_float_dtype(dtype))
        x /= 16.0  # pixel values are counts 0..16
        order = rng.permutation(len(y))
        n_test = math.ceil(self.test_fraction * len(y))  # rounds as train_test_split does
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        return Dataset(self.name, x[train], y[train].astype(np.int64), x[test],
                       y[test].astype(np.int64), "classification", 10, sample_shape=(1, 8, 8))


# -- Fashion-MNIST -----------------------------------------------------------------------------
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFound(FileNotFoundError):
    """The files of a dataset are nowhere to be found and could not be downloaded."""


class FashionMNIST(DatasetSource):
    """Zalando's Fashion-MNIST: 60000 train / 10000 test 28x28 images, 10 classes, x in [0, 1].

    Looks for the four IDX files (``.gz`` or not) in ``data_dir`` alone when it is given, else
    in ``$NNX_DATA_DIR``, ``$NNX_DATA_DIR/fashion_mnist``, ``~/.cache/nnx/fashion_mnist`` and
    ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist), in that order.
    When they are missing and ``download`` is on, fetches them from ``url`` into ``data_dir``,
    ``$NNX_DATA_DIR`` or ``~/.cache/nnx/fashion_mnist``. ``limit_train``: keep only the first
    N training images (0 keeps all). https://github.com/zalandoresearch/fashion-mnist
    """

    name = "fashion_mnist"
    random = False  # the files as they are

    def __init__(self, download: bool = True, url: str = FASHION_MNIST_URL,
                 limit_train: int = 0, data_dir: str = ""):
        self.download = bool(download)
        if not isinstance(url, str) or not url:
            raise ValueError(f"url must be a non-empty string, got {url!r}")
        self.url = url
        self.limit_train = check_int("limit_train", limit_train, 0)
        self.data_dir = str(data_dir or "")

    def search_dirs(self) -> list[Path]:
        """Where the files are looked for, in order."""
        if self.data_dir:
            return [Path(self.data_dir).expanduser()]
        env = os.environ.get("NNX_DATA_DIR")
        dirs = [Path(env), Path(env) / "fashion_mnist"] if env else []
        return dirs + [Path.home() / ".cache" / "nnx" / "fashion_mnist", DEBIAN_FASHION_MNIST]

    def download_dir(self) -> Path:
        env = os.environ.get("NNX_DATA_DIR")
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        return Path(env) if env else Path.home() / ".cache" / "nnx" / "fashion_mnist"

    @staticmethod
    def files_in(directory: Path) -> dict[str, Path] | None:
        """The four files in ``directory`` (gzip preferred), or None unless all are there."""
        found = {}
        for key, base in FASHION_MNIST_FILES.items():
            candidates = [directory / (base + ".gz"), directory / base]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                return None
            found[key] = path
        return found

    def find(self) -> dict[str, Path] | None:
        for directory in self.search_dirs():
            files = self.files_in(directory)
            if files:
                return files
        return None

    def missing_message(self, cause: str = "") -> str:
        names = ", ".join(f"{b}.gz" for b in FASHION_MNIST_FILES.values())
        where = ", ".join(str(d) for d in self.search_dirs())
        text = (f"Fashion-MNIST not found: looked for {names} (or without .gz) in {where}. "
                "Get it in one of three ways: (1) `apt-get install dataset-fashion-mnist` "
                f"(Debian/Ubuntu; installs to {DEBIAN_FASHION_MNIST}); (2) put the four files "
                "in $NNX_DATA_DIR; (3) allow the download (dataset.download=true), which fetches "
                f"them from {self.url}.")
        return f"{text} {cause}" if cause else text

    def fetch(self) -> dict[str, Path]:
        """Download the missing files; each is checked, then moved into place in one step."""
        target = self.download_dir()
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetNotFound(self.missing_message(f"Cannot create {target}: {exc}")) from exc
        for base in FASHION_MNIST_FILES.values():
            name = base + ".gz"
            if (target / name).is_file():
                continue
            url = self.url.rstrip("/") + "/" + name
            # Written under a temporary name and renamed with os.replace (atomic), so an
            # interrupted or bad download never leaves a file that looks complete.
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=10) as resp:
                    shutil.copyfileobj(resp, out)
                try:
                    read_idx(tmp)
                except ValueError as exc:
                    raise ValueError(f"downloaded {url} is not a valid IDX file: {exc}") from exc
                os.replace(tmp, target / name)
            except (urllib.error.URLError, OSError) as exc:  # HTTP errors, timeouts, refusals
                raise DatasetNotFound(self.missing_message(
                    f"The download of {url} failed: {exc}.")) from exc
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return self.files_in(target)

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        """The files are used as they are (the rng is not needed); x is (n, 784) in [0, 1]."""
        dt = _float_dtype(dtype)
        files = self.find()
        if files is None:
            if not self.download:
                raise DatasetNotFound(self.missing_message("Downloading is off (download=false)."))
            files = self.fetch()
        x_train, y_train = self._read_pair(files["x_train"], files["y_train"], dt)
        x_test, y_test = self._read_pair(files["x_test"], files["y_test"], dt)
        if self.limit_train:  # copies, so that the rest of the training set is freed
            x_train, y_train = x_train[: self.limit_train].copy(), y_train[: self.limit_train]
        return Dataset(self.name, x_train, y_train, x_test, y_test, "classification", 10,
                       sample_shape=(1, 28, 28))

    @staticmethod
    def _read_pair(images_path: Path, labels_path: Path,
                   dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (n, rows, cols) as ``dtype`` (n, rows * cols) in [0, 1]; int64 labels."""
        shape, file_dtype = idx_header(images_path)
        if len(shape) != 3 or file_dtype != np.uint8:
            raise ValueError(f"{images_path}: expected uint8 images (n, rows, cols), "
                             f"got {file_dtype} of shape {shape}")
        images = read_idx(images_path, dtype)  # converted while streaming: no uint8 copy
        labels = read_idx(labels_path, np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"{labels_path}: expected {len(images)} labels, "
                             f"got shape {labels.shape}")
        images /= 255.0  # in place: the same values as dividing the uint8 pixels in dtype
        return images.reshape(len(images), -1), labels


# -- MNIST-1D ----------------------------------------------------------------------------------
class MNIST1D(DatasetSource):
    """MNIST-1D generated locally: 4000 train / 1000 test signals of 40 points, 10 classes.

    Greydanus & Kobak 2024, https://github.com/greydanus/mnist1d. With seed=None this is the
    standard split (the package's own seed, 42); another seed draws a different dataset. The
    rng given to ``load`` is not used: seeding from it would change the standard split.
    """

    name = "mnist1d"
    random = False  # its own seed argument picks the draw, not the rng given to load

    def __init__(self, seed: int | None = None):
        self.seed = None if seed is None else check_int("seed", seed, 0)

    def load(self, rng: np.random.Generator, dtype=np.float64) -> Dataset:
        dt = _float_dtype(dtype)
        x, y, x_test, y_test = _mnist1d_arrays(self.seed)
        return Dataset(self.name, x.astype(dt), y.astype(np.int64), x_test.astype(dt),
                       y_test.astype(np.int64), "classification", 10, sample_shape=(1, 40))


@functools.lru_cache(maxsize=2)
def _mnist1d_arrays(seed: int | None) -> tuple[np.ndarray, ...]:
    """The generated arrays, cached: generation takes seconds and a sweep loads it often."""
    # make_dataset (not get_dataset) builds the data in memory: it neither downloads nor
    # writes a pickle into the current directory. Its import pulls in scipy.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if seed is not None:
        args.seed = seed
    # make_dataset seeds NumPy's and Python's global generators; restore them afterwards so
    # loading this dataset does not change anyone else's random numbers.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = tuple(np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test"))
    for a in arrays:
        a.setflags(write=False)  # shared by every load; load hands out copies
    return arrays
