"""Datasets, IDX files, downloads, preprocessing and minibatches (nnx.data, nnx.datasets,
nnx.idx)."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import threading
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from idx_files import idx_bytes, small_fashion, write_idx

from nnx import datasets
from nnx.data import Batches, Dataset, one_hot, split, standardize
from nnx.datasets import (
    MNIST1D,
    XOR,
    Circles,
    DatasetNotFound,
    DatasetSource,
    Digits,
    FashionMNIST,
    Moons,
    Spirals,
    Tutorial,
)
from nnx.idx import read_idx

GENERATED = [Moons, Circles, Spirals, functools.partial(XOR, n_samples=40, noise=0.1)]
GENERATED_IDS = ["moons", "circles", "spirals", "xor"]


def rng(seed=0):
    return np.random.default_rng(seed)


# -- helper: a local web server ---------------------------------------------------------------
@pytest.fixture
def serve(monkeypatch):
    """serve(directory) -> URL of an HTTP server on 127.0.0.1 serving that directory."""
    monkeypatch.setenv("no_proxy", "*")  # a proxy in the environment must not see 127.0.0.1
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(directory: Path) -> str:
        handler = functools.partial(Quiet, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- Dataset checks ---------------------------------------------------------------------------
def test_dataset_outputs_and_features():
    x = np.zeros((5, 3))
    assert Dataset("b", x, np.array([0, 1, 0, 1, 1]), n_classes=2).n_outputs == 1
    multi = Dataset("m", x, np.array([0, 1, 2, 3, 4]), n_classes=5)
    assert (multi.n_outputs, multi.n_features, multi.y_train.dtype) == (5, 3, np.int64)
    reg = Dataset("r", x, np.zeros((5, 2)), task="regression")
    assert reg.n_outputs == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dataset_rejects_non_finite_naming_dataset_and_array(bad):
    x = np.zeros((4, 2))
    x_test = np.zeros((2, 2))
    x_test[1, 0] = bad
    with pytest.raises(ValueError, match=r"'demo'.*x_test.*NaN or inf"):
        Dataset("demo", x, np.zeros(4, int), x_test, np.zeros(2, int), n_classes=2)


def test_dataset_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"y_train has label 3; allowed labels are 0\.\.2"):
        Dataset("demo", np.zeros((3, 2)), np.array([0, 3, 1]), n_classes=3)
    with pytest.raises(ValueError, match="label -1"):
        Dataset("demo", np.zeros((3, 2)), np.array([0, -1, 1]), n_classes=3)


@pytest.mark.parametrize("x, y, match", [
    (np.zeros(4), np.zeros(4, int), "2-D"),
    (np.zeros((4, 2)), np.zeros(3, int), "4 rows but y_train has 3"),
    (np.zeros((0, 2)), np.zeros(0, int), "empty"),
    (np.zeros((4, 2), int), np.zeros(4, int), "floating"),
    (np.zeros((4, 2)), np.zeros(4), "integer labels"),
])
def test_dataset_rejects_bad_shapes(x, y, match):
    with pytest.raises(ValueError, match=match):
        Dataset("demo", x, y, n_classes=2)


# -- generated datasets -----------------------------------------------------------------------
@pytest.mark.parametrize("source", GENERATED, ids=GENERATED_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generated_shapes_dtypes_labels(source, dtype):
    src = source()
    ds = src.load(rng(), dtype=dtype)
    n_test = getattr(src, "n_test", 4)
    assert ds.x_train.shape == (src.n_samples, 2) and ds.x_test.shape == (n_test, 2)
    assert ds.x_train.dtype == dtype and ds.x_test.dtype == dtype
    assert ds.y_train.dtype == np.int64 and ds.y_train.shape == (src.n_samples,)
    counts = np.bincount(ds.y_train, minlength=ds.n_classes)
    assert len(counts) == ds.n_classes and counts.max() - counts.min() <= 1  # balanced


@pytest.mark.parametrize("source", GENERATED, ids=GENERATED_IDS)
def test_generated_deterministic_per_seed(source):
    a, b, c = (source().load(rng(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize("source", [Moons, Circles, Spirals, XOR], ids=GENERATED_IDS)
def test_noise_changes_the_data(source):
    quiet = source(n_samples=40, noise=0.0).load(rng())
    noisy = source(n_samples=40, noise=0.3).load(rng())
    assert not np.allclose(quiet.x_train, noisy.x_train)
    assert np.abs(noisy.x_train - quiet.x_train).std() > 0.1


def test_generated_train_and_test_are_independent_draws():
    ds = Moons(n_samples=50, n_test=50).load(rng())
    assert not np.allclose(ds.x_train, ds.x_test)


def test_noiseless_geometry():
    moons = Moons(noise=0.0).load(rng())
    upper = moons.x_train[moons.y_train == 0]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)  # class 0 lies on the unit circle
    circles = Circles(noise=0.0, factor=0.3).load(rng())
    radius = np.hypot(*circles.x_train.T)
    np.testing.assert_allclose(radius, np.where(circles.y_train == 0, 1.0, 0.3))
    spirals = Spirals(noise=0.0).load(rng())
    assert np.hypot(*spirals.x_train.T).max() <= 1.0


def test_spirals_n_classes():
    ds = Spirals(n_samples=100, n_classes=5).load(rng())
    assert ds.n_classes == ds.n_outputs == 5
    assert set(ds.y_train) == set(range(5))


@pytest.mark.parametrize("make, name", [
    (lambda: Moons(noise=-0.1), "noise"),
    (lambda: Circles(noise=float("nan")), "noise"),
    (lambda: Moons(n_samples=0), "n_samples"),
    (lambda: Moons(n_test=-1), "n_test"),
    (lambda: Circles(factor=1.5), "factor"),
    (lambda: Spirals(n_classes=1), "n_classes"),
    (lambda: Spirals(turns=0), "turns"),
    (lambda: XOR(n_samples=3), "n_samples"),
    (lambda: XOR(noise=-1), "noise"),
    (lambda: Digits(test_fraction=1.0), "test_fraction"),
    (lambda: FashionMNIST(limit_train=-5), "limit_train"),
    (lambda: FashionMNIST(url=""), "url"),
    (lambda: MNIST1D(seed=-1), "seed"),
])
def test_invalid_parameters_name_the_parameter(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_integer_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be a floating-point type"):
        Moons().load(rng(), dtype=np.int32)


def test_tutorial_exact_values():
    ds = Tutorial().load(rng())
    np.testing.assert_array_equal(ds.x_train, [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1, 0])
    np.testing.assert_array_equal(ds.x_test, ds.x_train)  # the tutorial has no held-out data
    assert (ds.task, ds.n_classes, ds.n_outputs) == ("classification", 2, 1)
    assert Tutorial().load(rng(), np.float32).x_train.dtype == np.float32


def test_xor_default_is_the_four_corners():
    ds = XOR().load(rng())
    np.testing.assert_array_equal(ds.x_train, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1, 0])
    noisy = XOR(n_samples=400, noise=0.1).load(rng())
    np.testing.assert_array_equal(noisy.x_test, ds.x_train)  # test stays the clean corners
    np.testing.assert_array_equal(noisy.y_train, np.tile([0, 1, 1, 0], 100))


def test_every_registered_dataset_is_a_source():
    found = {ep.name: ep for ep in entry_points(group="nnx.datasets")}
    if not found:
        pytest.skip("nnx is not installed (pip install -e .), so no entry points to check")
    for name in ("tutorial", "xor", "moons", "circles", "spirals", "digits", "fashion_mnist",
                 "mnist1d"):
        cls = found[name].load()
        assert issubclass(cls, DatasetSource) and cls.name == name
        assert cls.__doc__ and cls()  # builds from its defaults


def test_names_that_moved_out_of_nnx_data_are_still_importable_from_it():
    """Plugins and scripts written before the sources and the IDX format left nnx.data."""
    from nnx import data, idx
    from nnx.data import DatasetNotFound as old_not_found
    from nnx.data import DatasetSource as old_base

    assert old_base is DatasetSource and old_not_found is DatasetNotFound
    for name in data.MOVED_TO_DATASETS:
        assert getattr(data, name) is getattr(datasets, name), name
    for name in data.MOVED_TO_IDX:
        assert getattr(data, name) is getattr(idx, name), name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = data.nope


# -- digits -------------------------------------------------------------------------------------
def test_digits_split_is_deterministic():
    a = Digits().load(rng(3), np.float32)
    b = Digits().load(rng(3), np.float32)
    c = Digits().load(rng(4), np.float32)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.x_train.dtype == np.float32 and a.n_classes == 10
    assert 0.0 == a.x_train.min() and a.x_train.max() == 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)
    # every image lands in exactly one split, with its own label: the two splits together are
    # the whole set, row for row (pixels are whole numbers 0..16, scaled by 1/16)
    from sklearn.datasets import load_digits

    whole = load_digits()
    ours = np.rint(np.column_stack([np.vstack([a.x_train, a.x_test]) * 16,
                                    np.concatenate([a.y_train, a.y_test])])).astype(np.int64)
    theirs = np.column_stack([whole.data, whole.target]).astype(np.int64)
    np.testing.assert_array_equal(ours[np.lexsort(ours.T[::-1])],
                                  theirs[np.lexsort(theirs.T[::-1])])


# -- IDX files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_read_idx_round_trip(tmp_path, suffix, dtype):
    array = (rng().standard_normal((3, 4, 5)) * 50).astype(dtype)
    back = read_idx(write_idx(tmp_path / f"a.idx{suffix}", array))
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_read_idx_one_dimension(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l", labels)), labels)


@pytest.mark.parametrize("damage, match", [
    (lambda raw: raw[:-1], "truncated"),
    (lambda raw: raw[:10], "truncated"),
    (lambda raw: raw + b"\x00", "left over"),
    (lambda raw: b"\x01" + raw[1:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x42" + raw[3:], "unknown IDX type code 0x42"),
    (lambda raw: b"", "not an IDX file"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_damaged_files_name_the_file(tmp_path, damage, match, compress):
    raw = damage(idx_bytes(np.zeros((2, 3, 3), np.uint8)))
    path = tmp_path / "broken-file.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError, match=rf"broken-file\.idx.*{match}"):
        read_idx(path)


def test_read_idx_truncated_gzip_names_the_file(tmp_path):
    packed = gzip.compress(idx_bytes(rng().integers(0, 256, (20, 28, 28), dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz.*gzip"):
        read_idx(path)


# -- Fashion-MNIST ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_fashion():
    return FashionMNIST(download=False).load(rng(), np.float32)


@pytest.mark.needs_fashion_mnist
def test_fashion_mnist_real_files(real_fashion):
    ds = real_fashion
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_small_files_round_trip(tmp_path, gz):
    arrays = small_fashion(tmp_path, gz=gz)
    ds = FashionMNIST(download=False, data_dir=str(tmp_path)).load(rng(), np.float64)
    np.testing.assert_allclose(ds.x_train, arrays["x_train"].reshape(6, 784) / 255)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    limited = FashionMNIST(download=False, data_dir=str(tmp_path), limit_train=3).load(rng())
    assert limited.x_train.shape == (3, 784) and limited.x_test.shape == (4, 784)


def test_fashion_mnist_looks_in_nnx_data_dir_first(tmp_path, monkeypatch):
    small_fashion(tmp_path / "fashion_mnist", n_train=5)
    monkeypatch.setenv("NNX_DATA_DIR", str(tmp_path))
    source = FashionMNIST(download=False)
    assert source.search_dirs()[:2] == [tmp_path, tmp_path / "fashion_mnist"]
    assert source.search_dirs()[-1] == datasets.DEBIAN_FASHION_MNIST
    assert source.download_dir() == tmp_path
    assert source.load(rng()).x_train.shape == (5, 784)


def assert_three_ways(message: str, url: str):
    assert "apt-get install dataset-fashion-mnist" in message
    assert "$NNX_DATA_DIR" in message
    assert url in message
    assert "\n" not in message  # one paragraph


def test_fashion_mnist_missing_with_download_off(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        FashionMNIST(download=False, data_dir=str(tmp_path)).load(rng())
    assert isinstance(info.value, FileNotFoundError)
    assert_three_ways(str(info.value), datasets.FASHION_MNIST_URL)
    assert "download=false" in str(info.value)


def test_fashion_mnist_download(tmp_path, serve):
    served = tmp_path / "server"
    arrays = small_fashion(served)
    target = tmp_path / "cache"
    ds = FashionMNIST(url=serve(served), data_dir=str(target)).load(rng(), np.float32)
    np.testing.assert_allclose(ds.x_train, arrays["x_train"].reshape(6, 784) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    # Exactly the four files under their final names, byte for byte, and no temporary left.
    names = sorted(b + ".gz" for b in datasets.FASHION_MNIST_FILES.values())
    assert sorted(os.listdir(target)) == names
    for name in names:
        assert (target / name).read_bytes() == (served / name).read_bytes()


def test_fashion_mnist_download_404_gives_the_missing_message(tmp_path, serve):
    url = serve(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFound, match="404") as info:
        FashionMNIST(url=url, data_dir=str(tmp_path / "cache")).load(rng())
    assert_three_ways(str(info.value), url)
    assert os.listdir(tmp_path / "cache") == []  # nothing half-written left behind


def test_fashion_mnist_bad_download_never_gets_the_final_name(tmp_path, serve):
    served = tmp_path / "server"
    small_fashion(served)
    first = served / "train-images-idx3-ubyte.gz"
    first.write_bytes(first.read_bytes()[:100])  # cut short in transit
    target = tmp_path / "cache"
    with pytest.raises(ValueError, match="not a valid IDX file"):
        FashionMNIST(url=serve(served), data_dir=str(target)).load(rng())
    assert os.listdir(target) == []


# -- MNIST-1D -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    """Generated once, from an empty working directory, with the cache cleared first."""
    pytest.importorskip("mnist1d")
    workdir = tmp_path_factory.mktemp("mnist1d_cwd")
    datasets._mnist1d_arrays.cache_clear()  # make sure this load really generates
    before = np.random.get_state()[1].copy()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        ds = MNIST1D().load(rng(), np.float32)
    return ds, before, np.random.get_state()[1].copy(), os.listdir(workdir)


def test_mnist1d_standard_split(mnist1d):
    ds, *_ = mnist1d
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == np.float32 and ds.n_classes == 10
    assert set(ds.y_train) == set(range(10))
    # the package's standard dataset (its seed 42): stored first labels and values
    np.testing.assert_array_equal(ds.y_train[:10], [2, 6, 4, 5, 6, 6, 6, 0, 3, 1])
    np.testing.assert_array_equal(ds.y_test[:10], [2, 6, 3, 9, 4, 3, 1, 9, 5, 2])
    np.testing.assert_allclose(ds.x_train[0, :4], [-0.33200567, -0.47191037, -0.77869708,
                                                   -1.00974083], rtol=1e-5)


def test_mnist1d_is_local_deterministic_and_leaves_global_state(mnist1d):
    ds, before, after, written = mnist1d
    assert written == []  # no pickle dropped into the working directory
    np.testing.assert_array_equal(before, after)  # NumPy's global generator is restored
    again = MNIST1D().load(rng(99), np.float32)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    again.x_train[0, 0] = 123.0  # loads hand out copies: the cached data stay intact
    assert MNIST1D().load(rng(), np.float32).x_train[0, 0] != 123.0


# -- preprocessing ------------------------------------------------------------------------------
def test_standardize_uses_training_statistics_only():
    g = rng()
    x = g.normal(3.0, 2.0, (200, 3)).astype(np.float32)
    x[:, 2] = 5.0  # a constant feature
    x_test = g.normal(4.0, 2.0, (100, 3)).astype(np.float32)
    ds = Dataset("s", x, np.zeros(200, int), x_test, np.zeros(100, int), n_classes=2)
    out = standardize(ds)
    assert out.x_train.dtype == np.float32 and out is not ds
    np.testing.assert_allclose(out.x_train[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.x_train[:, :2].std(0), 1, rtol=1e-5)
    np.testing.assert_array_equal(out.x_train[:, 2], 0)  # centred, not divided by zero
    mean, std = x[:, :2].mean(0), x[:, :2].std(0)
    np.testing.assert_allclose(out.x_test[:, :2], (x_test[:, :2] - mean) / std, rtol=1e-5)
    assert abs(out.x_test[:, 0].mean()) > 0.2  # the test split is not forced to mean 0
    assert ds.x_train[0, 2] == 5.0  # the input is left alone


def test_split_is_a_seeded_partition():
    x = np.arange(100, dtype=float).reshape(50, 2)
    ds = Dataset("p", x, np.arange(50) % 3, x[:5], np.zeros(5, int), n_classes=3)
    train, val = split(ds, 0.2, rng(5))
    assert len(train.x_train) == 40 and len(val.x_train) == 10
    ids = np.concatenate([train.x_train[:, 0], val.x_train[:, 0]]) // 2
    np.testing.assert_array_equal(np.sort(ids), np.arange(50))
    np.testing.assert_array_equal(train.y_train, (train.x_train[:, 0] // 2) % 3)
    assert train.x_test is ds.x_test and val.x_test is None
    again, _ = split(ds, 0.2, rng(5))
    other, _ = split(ds, 0.2, rng(6))
    np.testing.assert_array_equal(again.x_train, train.x_train)
    assert not np.array_equal(other.x_train, train.x_train)
    with pytest.raises(ValueError, match="fraction"):
        split(ds, 1.0, rng())


def test_stratified_split_keeps_the_class_proportions():
    """90 / 30 / 6 samples of three classes, 20% held out: 126 * 0.2 = 25.2, rounded to 25;
    the exact shares 17.86, 5.95 and 1.19 are floored to 17, 5, 1 and the 2 left go to the
    largest remainders: 18 / 6 / 1, each drawn within its class; the same seed, the same
    split."""
    y = np.repeat([0, 1, 2], [90, 30, 6])
    x = np.arange(len(y), dtype=float).reshape(-1, 1)
    ds = Dataset("s", x, y, n_classes=3)
    train, val = split(ds, 0.2, rng(3), stratify=True)
    assert np.bincount(val.y_train, minlength=3).tolist() == [18, 6, 1]
    assert np.bincount(train.y_train, minlength=3).tolist() == [72, 24, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate([train.x_train, val.x_train])[:, 0]),
                                  x[:, 0])
    again, _ = split(ds, 0.2, rng(3), stratify=True)
    np.testing.assert_array_equal(again.x_train, train.x_train)


def test_one_hot():
    out = one_hot(np.array([2, 0, 1, 2]), 3, np.float32)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match=r"label 3 is outside 0\.\.2"):
        one_hot(np.array([0, 3]), 3)


# -- minibatches --------------------------------------------------------------------------------
def ids_xy(n=50, width=3):
    x = np.repeat(np.arange(n, dtype=np.float64)[:, None], width, axis=1)
    return x, np.arange(n)


def test_batches_shuffled_cover_every_sample_once():
    x, y = ids_xy()
    batches = Batches(x, y, 7, rng(1))
    assert len(batches) == 8
    for _ in range(2):
        seen, sizes = [], []
        for xb, yb in batches:
            np.testing.assert_array_equal(xb[:, 0], yb)  # rows stay paired with their labels
            seen.extend(yb.tolist())
            sizes.append(len(yb))
        assert sorted(seen) == list(range(50))
        assert sizes == [7] * 7 + [1]  # the last, partial batch too


def test_batches_shuffle_is_deterministic_and_changes_per_epoch():
    x, y = ids_xy()

    def epochs(seed):
        batches = Batches(x, y, 10, rng(seed))
        return [np.concatenate([yb.copy() for _, yb in batches]) for _ in range(2)]

    first, second = epochs(3)
    np.testing.assert_array_equal(first, epochs(3)[0])
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, epochs(4)[0])
    assert not np.array_equal(first, np.arange(50))


def test_batches_reuse_their_buffers():
    x, y = ids_xy()
    it = iter(Batches(x, y, 10, rng()))
    a, _ = next(it)
    b, _ = next(it)
    assert np.shares_memory(a, b) and not np.shares_memory(a, x)


def test_batches_full_batch_and_unshuffled_do_not_copy():
    x, y = ids_xy()
    for size in (0, 50, 80):
        (xb, yb), = list(Batches(x, y, size))
        assert xb is x and yb is y
    (xb, yb), = list(Batches(x, y, 0, rng()))  # full batch: order is irrelevant
    assert xb is x
    views = list(Batches(x, y, 16))
    assert [len(v[1]) for v in views] == [16, 16, 16, 2]
    assert all(np.shares_memory(xb, x) for xb, _ in views)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in views]), y)


def test_batches_two_dimensional_targets_and_bad_arguments():
    x, _ = ids_xy(20)
    y = one_hot(np.arange(20) % 4, 4)
    for xb, yb in Batches(x, y, 6, rng()):
        np.testing.assert_array_equal(yb.argmax(1), xb[:, 0].astype(int) % 4)
    with pytest.raises(ValueError, match="batch_size"):
        Batches(x, y, -1)
    with pytest.raises(ValueError, match="20 rows but y has 19"):
        Batches(x, y[:19], 4)


def test_batches_property_sizes_and_cover_for_any_size():
    """For any n and batch size: ceil(n / b) batches, all of b but the last (n % b, when not
    0), every sample once per epoch, shuffled or not."""
    generator = rng(16)
    for _ in range(40):
        n, b = int(generator.integers(1, 60)), int(generator.integers(1, 70))
        x, y = ids_xy(n, 2)
        for shuffle in (None, rng(int(generator.integers(0, 99)))):
            batches = Batches(x, y, b, shuffle)
            sizes = [len(yb) for _, yb in batches]
            full, rest = divmod(n, min(b, n))
            assert sizes == [min(b, n)] * full + ([rest] if rest else []), (n, b)
            assert len(batches) == len(sizes)
            seen = np.concatenate([yb.copy() for _, yb in batches])
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))


def test_split_property_any_fraction_is_a_partition_of_the_training_set():
    generator = rng(17)
    for _ in range(40):
        n = int(generator.integers(2, 80))
        fraction = float(generator.uniform(0.01, 0.99))
        x = np.repeat(np.arange(n, dtype=float)[:, None], 2, axis=1)
        ds = Dataset("p", x, np.arange(n), np.zeros((3, 2)), np.zeros(3, int), n_classes=n)
        train, val = split(ds, fraction, rng(int(generator.integers(0, 99))))
        kept, held = train.y_train, val.y_train
        assert len(held) == min(max(round(fraction * n), 1), n - 1), (n, fraction)
        assert not set(kept) & set(held)
        np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(n))
        assert list(kept) == sorted(kept) and list(held) == sorted(held)  # original order
        np.testing.assert_array_equal(train.x_train[:, 0], kept)  # rows stay with labels
        np.testing.assert_array_equal(val.x_train[:, 1], held)
