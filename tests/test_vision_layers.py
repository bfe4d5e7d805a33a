"""Convolution, pooling and normalisation layers (issue 14), tested one layer at a time.

Each layer is built with a sample shape (the module contract of issue 13: ``build(in_shape,
rng, dtype) -> out_shape``) and called directly, not through a Network. Gradients are checked
with float64 central differences and random upstream gradients (relative error <= 1e-6);
where PyTorch is installed, forward and backward agree with ``torch.nn`` to 1e-10 in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnx.convolution import Conv1D, Conv2D
from nnx.initializers import GlorotUniform, HeUniform, fans
from nnx.normalization import BatchNorm, LayerNorm
from nnx.pooling import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from nnx.registry import build, registry
from nnx.testing import numerical_gradient  # central differences (h = 1e-6)

NEW = {"conv1d": Conv1D, "conv2d": Conv2D, "max_pool1d": MaxPool1D, "max_pool2d": MaxPool2D,
       "avg_pool1d": AvgPool1D, "avg_pool2d": AvgPool2D, "global_avg_pool": GlobalAvgPool,
       "batch_norm": BatchNorm, "layer_norm": LayerNorm}


# -- reusable checks (kept here until the kit in nnx/testing.py speaks shapes) -----------------
def built(cls, in_shape, seed=0, dtype=np.float64, **kwargs):
    layer = cls(**kwargs)
    out_shape = layer.build(in_shape, np.random.default_rng(seed), dtype)
    return layer, out_shape


def distinct(shape, rng):
    """Values at least 0.01 apart (a random order of a grid): no max-pool window has a tie or
    a near-tie that a finite-difference step of 1e-6 could cross."""
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.01 - size * 0.005 + rng.uniform(0, 1e-3, size)).reshape(shape)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale else 0.0


def check_gradients(layer, x, seed=0, tol=1e-6):
    """dL/dx and dL/dparams of L = sum(w * layer(x)), w random, against central differences."""
    w = np.random.default_rng(seed).normal(size=layer.forward(x).shape)

    def loss():
        return float(np.sum(w * layer.forward(x)))

    loss()
    dx = layer.backward(w.copy())
    grads = {k: g.copy() for k, g in layer.grads.items()}
    err = relative_error(dx, numerical_gradient(loss, x))
    assert err <= tol, f"{layer.name}: dL/dx relative error {err:.2e}"
    for key, p in layer.params.items():
        err = relative_error(grads[key], numerical_gradient(loss, p))
        assert err <= tol, f"{layer.name}: dL/d{key} relative error {err:.2e}"


# -- the cases: (class, kwargs, sample shape) ---------------------------------------------------
CASES = [
    (Conv2D, {"channels": 3, "kernel": 3}, (2, 5, 6)),
    (Conv2D, {"channels": 3, "kernel": 3, "padding": 1}, (2, 5, 6)),  # "same": the shift path
    (Conv2D, {"channels": 2, "kernel": (3, 5), "padding": (1, 2)}, (1, 4, 6)),
    (Conv1D, {"channels": 2, "kernel": 5, "padding": 2}, (2, 6)),
    (Conv2D, {"channels": 2, "kernel": 3, "stride": 2, "padding": 1}, (2, 5, 6)),
    (Conv2D, {"channels": 2, "kernel": (2, 3), "stride": (2, 1), "padding": (1, 0)}, (3, 6, 5)),
    (Conv2D, {"channels": 2, "kernel": 4, "bias": False}, (1, 4, 4)),  # kernel = the whole input
    (Conv2D, {"channels": 2, "kernel": 1, "stride": 3, "padding": 2}, (2, 4, 5)),  # stride > kernel
    (Conv1D, {"channels": 3, "kernel": 3}, (2, 7)),
    (Conv1D, {"channels": 2, "kernel": 4, "stride": 3, "padding": 2}, (3, 9)),
    (MaxPool2D, {"size": 2}, (2, 4, 6)),
    (MaxPool2D, {"size": 2}, (2, 5, 5)),  # the last row and column fit no window
    (MaxPool2D, {"size": 3, "stride": 1}, (2, 5, 4)),  # overlapping windows
    (MaxPool2D, {"size": (2, 3), "stride": (1, 2)}, (1, 4, 7)),
    (MaxPool1D, {"size": 2}, (3, 7)),
    (MaxPool1D, {"size": 3, "stride": 2}, (2, 8)),
    (AvgPool2D, {"size": 2}, (2, 4, 6)),
    (AvgPool2D, {"size": 3, "stride": 1}, (2, 5, 4)),
    (AvgPool2D, {"size": 2}, (1, 5, 5)),
    (AvgPool1D, {"size": 3, "stride": 2}, (2, 8)),
    (AvgPool1D, {"size": 2}, (2, 5)),
    (GlobalAvgPool, {}, (3, 4, 5)),
    (GlobalAvgPool, {}, (2, 7)),
    (BatchNorm, {}, (4,)),
    (BatchNorm, {"momentum": 0.3}, (3, 2, 2)),
    (BatchNorm, {}, (2, 5)),
    (LayerNorm, {}, (6,)),
    (LayerNorm, {"eps": 1e-3}, (2, 3, 4)),
]
IDS = [f"{cls.name}-{'-'.join(map(str, shape))}-{i}" for i, (cls, _, shape) in enumerate(CASES)]


def randomise_params(layer, rng):
    for p in layer.params.values():  # not ones and zeros: a scale of 1 hides a missing factor
        p[...] = rng.normal(size=p.shape)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,kwargs,shape", CASES, ids=IDS)
def test_gradients_match_central_differences(cls, kwargs, shape, training):
    rng = np.random.default_rng(1)
    layer, _ = built(cls, shape, **kwargs)
    randomise_params(layer, rng)
    if "running_mean" in layer.buffers:
        layer.buffers["running_mean"][...] = rng.normal(size=layer.buffers["running_mean"].shape)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.buffers["running_var"].shape)
    layer.train(training)
    check_gradients(layer, distinct((3, *shape), rng))


@pytest.mark.parametrize("cls,kwargs,shape", CASES, ids=IDS)
def test_shapes_dtypes_and_returned_arrays(cls, kwargs, shape):
    rng = np.random.default_rng(2)
    layer, out_shape = built(cls, shape, dtype=np.float32, **kwargs)
    x = distinct((4, *shape), rng).astype(np.float32)
    x_before = x.copy()
    y = layer.forward(x)
    assert y.shape == (4, *out_shape) and y.dtype == np.float32
    g = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(g)
    assert dx.shape == x.shape and dx.dtype == np.float32
    # What a layer returns is the caller's: a second forward and backward leave it alone,
    # and the inputs are never written into.
    y1, dx1 = y.copy(), dx.copy()
    layer.forward(distinct((4, *shape), rng).astype(np.float32))
    layer.backward(rng.normal(size=y.shape).astype(np.float32))
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(dx, dx1)
    np.testing.assert_array_equal(x, x_before)


# -- values worked out by hand -------------------------------------------------------------
def test_conv2d_by_hand():
    # One 2x2 kernel [[1, 2], [3, 4]] over [[0, 1, 2], [3, 4, 5], [6, 7, 8]], bias 10:
    # top-left window 0*1 + 1*2 + 3*3 + 4*4 = 27, then 37, 57, 67 (+ 10 each).
    layer, out_shape = built(Conv2D, (1, 3, 3), channels=1, kernel=2)
    layer.params["W"][...] = np.array([[[[1, 2], [3, 4]]]])
    layer.params["b"][...] = 10
    y = layer.forward(np.arange(9.0).reshape(1, 1, 3, 3))
    assert out_shape == (1, 2, 2)
    np.testing.assert_array_equal(y, [[[[37, 47], [67, 77]]]])


def test_max_pool_gives_a_tie_one_gradient_the_first_in_the_window():
    # After a ReLU whole windows are 0: the gradient goes to one position (the first, as in
    # PyTorch), not to each tied one (which would multiply it).
    layer, _ = built(MaxPool2D, (1, 2, 4), size=2)
    x = np.array([[[[0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 3.0, 2.0]]]])
    np.testing.assert_array_equal(layer.forward(x), [[[[0.0, 3.0]]]])
    dx = layer.backward(np.array([[[[5.0, 7.0]]]]))
    np.testing.assert_array_equal(dx, [[[[5.0, 0, 0, 7.0], [0, 0, 0, 0]]]])


def test_batch_norm_running_statistics_and_eval():
    layer, _ = built(BatchNorm, (2,), momentum=0.25)
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]])
    y = layer.forward(x)
    # batch mean (3, 12), biased var (8/3, 8), unbiased (4, 12).
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 3) / np.sqrt(8 / 3 + 1e-5), rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.75, 3.0], rtol=1e-15)
    np.testing.assert_allclose(layer.buffers["running_var"], [0.75 + 1.0, 0.75 + 3.0],
                               rtol=1e-15)
    layer.eval()
    z = layer.forward(np.array([[0.75, 3.0]]))  # a batch of one is fine in eval mode
    np.testing.assert_allclose(z, [[0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.75, 3.0], rtol=1e-15)


def test_decay_flags_and_buffers():
    conv, _ = built(Conv2D, (1, 4, 4), channels=2, kernel=3)
    assert conv.decay == {"W": True, "b": False} and conv.buffers == {}
    bn, _ = built(BatchNorm, (3, 4, 4))
    assert bn.decay == {"scale": False, "shift": False}
    assert sorted(bn.buffers) == ["running_mean", "running_var"]
    assert set(bn.buffers).isdisjoint(bn.params)  # never seen by the optimizer
    ln, _ = built(LayerNorm, (3, 4))
    assert ln.decay == {"scale": False, "shift": False} and ln.params["scale"].shape == (3, 4)


def test_fans_of_dense_and_convolution_weights():
    assert fans((784, 256)) == (784, 256)  # Dense (in, out)
    assert fans((1, 10)) == (1, 10)  # a Dense bias
    assert fans((64, 32, 3, 3)) == (32 * 9, 64 * 9)  # (out_c, in_c, kh, kw)
    assert fans((8, 3, 5)) == (15, 40)  # conv1d
    # Dense draws are unchanged: He-uniform of (in, out) is U(+-sqrt(6 / in)).
    limit = np.sqrt(6.0 / 784)
    np.testing.assert_array_equal(HeUniform()((784, 256), np.random.default_rng(0)),
                                  np.random.default_rng(0).uniform(-limit, limit, (784, 256)))
    conv, _ = built(Conv2D, (32, 14, 14), channels=64, kernel=3)
    limit = np.sqrt(6.0 / (32 * 9))
    np.testing.assert_array_equal(
        conv.params["W"], np.random.default_rng(0).uniform(-limit, limit, (64, 32, 3, 3)))
    W = GlorotUniform()((16, 4, 3, 3), np.random.default_rng(0))
    assert np.abs(W).max() <= np.sqrt(6.0 / (4 * 9 + 16 * 9))


def test_registered_and_built_from_keywords():
    names = set(registry("layers").names())
    assert set(NEW) <= names
    for name, cls in NEW.items():
        layer = build("layers", name, **cls.example["kwargs"])
        assert type(layer) is cls
        out = layer.build(cls.example["in_shape"], np.random.default_rng(0), np.float64)
        assert isinstance(out, tuple)
        x = np.random.default_rng(0).normal(size=(3, *cls.example["in_shape"]))
        assert layer.forward(x).shape == (3, *out)
        assert type(layer)(**layer.config()).config() == layer.config()  # config rebuilds it


def test_kernel_given_as_a_list_as_yaml_gives_it():
    layer = Conv2D(channels=2, kernel=[3, 5], stride=[1, 2], padding=1)
    assert layer.kernel == (3, 5) and layer.stride == (1, 2) and layer.padding == (1, 1)
    assert layer.config()["kernel"] == [3, 5]
    assert Conv2D(**layer.config()).kernel == (3, 5)
    assert MaxPool2D(size=[2, 3]).config() == {"size": [2, 3], "stride": None}


def test_output_shapes_through_the_benchmark_cnn():
    shape = (1, 28, 28)
    for cls, kwargs in [(Conv2D, {"channels": 32, "kernel": 3, "padding": 1}), (MaxPool2D, {"size": 2}),
                        (Conv2D, {"channels": 64, "kernel": 3, "padding": 1}), (MaxPool2D, {"size": 2})]:
        _, shape = built(cls, shape, **kwargs)
    assert shape == (64, 7, 7)


# -- bad input: a ValueError naming the argument and the shapes ----------------------------------
@pytest.mark.parametrize("cls,kwargs,shape,match", [
    (Conv2D, {"channels": 2, "kernel": 5}, (1, 4, 4), (r"conv2d: kernel \(5, 5\) is larger than "
                                                    r"its padded input \(4, 4\)")),
    (Conv2D, {"channels": 2, "kernel": 5, "padding": 1}, (1, 2, 8), r"padded input \(4, 10\)"),
    (Conv1D, {"channels": 2, "kernel": 6}, (1, 5), r"conv1d: kernel \(6,\) is larger"),
    (Conv2D, {"channels": 2, "kernel": 3}, (784,), (r"conv2d: expects a 3-D sample shape "
                                                 r"\(channels, height, width\), got \(784,\)")),
    (Conv1D, {"channels": 2, "kernel": 3}, (1, 8, 8), r"conv1d: expects a 2-D sample shape"),
    (MaxPool2D, {"size": 3}, (4, 2, 8), (r"max_pool2d: pool size \(3, 3\) does not fit the "
                                         r"sample shape \(4, 2, 8\)")),
    (AvgPool1D, {"size": 9}, (4, 8), r"avg_pool1d: pool size \(9,\) does not fit"),
    (MaxPool2D, {"size": 2}, (4, 8), r"max_pool2d: expects a 3-D sample shape"),
    (GlobalAvgPool, {}, (16,), r"global_avg_pool: expects a sample shape \(channels, \*spatial\)"),
])
def test_bad_shapes_at_build(cls, kwargs, shape, match):
    layer = cls(**kwargs)
    with pytest.raises(ValueError, match=match):
        layer.build(shape, np.random.default_rng(0), np.float64)


@pytest.mark.parametrize("cls,kwargs,match", [
    (Conv2D, {"channels": 0, "kernel": 3}, r"channels must be a positive integer, got 0"),
    (Conv2D, {"channels": -4, "kernel": 3}, r"channels must be a positive integer, got -4"),
    (Conv2D, {"channels": 2, "kernel": 3, "stride": 0}, r"stride must be an integer >= 1 .*got 0"),
    (Conv1D, {"channels": 2, "kernel": 0}, r"kernel must be an integer >= 1 .*got 0"),
    (Conv2D, {"channels": 2, "kernel": (3, 3, 3)}, r"kernel must be .* or 2 of them"),
    (Conv2D, {"channels": 2, "kernel": 3, "padding": -1}, r"padding must be an integer >= 0"),
    (MaxPool2D, {"size": 2, "stride": 0}, r"stride must be an integer >= 1 .*got 0"),
    (AvgPool1D, {"size": 0}, r"size must be an integer >= 1"),
    (BatchNorm, {"momentum": 1.5}, r"momentum must be in \[0.0, 1.0\], got 1.5"),
    (BatchNorm, {"eps": 0}, r"eps must be in \(0.0, inf\], got 0"),
    (LayerNorm, {"eps": -1}, r"eps must be in \(0.0"),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_wrong_input_at_forward_and_a_batch_of_one_in_training():
    conv, _ = built(Conv2D, (1, 6, 6), channels=2, kernel=3)
    with pytest.raises(ValueError, match=r"conv2d: expects input of shape \(n, 1, 6, 6\), "
                                         r"got \(2, 6, 6\)"):
        conv.forward(np.zeros((2, 6, 6)))
    bn, _ = built(BatchNorm, (3,))
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value per "
                                         r"channel .* got a batch of shape \(1, 3\)"):
        bn.forward(np.zeros((1, 3)))
    bn.eval()
    assert bn.forward(np.zeros((1, 3))).shape == (1, 3)


# -- against PyTorch, float64 ----------------------------------------------------------------------
def torch_check(layer, x, torch_forward, torch_params, rng):
    """Forward and backward of ``layer`` against ``torch_forward(x_t, *params_t)``: 1e-10."""
    torch = pytest.importorskip("torch")
    y = layer.forward(x)
    g = rng.normal(size=y.shape)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    pt = [torch.tensor(layer.params[k], requires_grad=True) for k in torch_params]
    yt = torch_forward(xt, *pt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    for key, p in zip(torch_params, pt):
        np.testing.assert_allclose(layer.grads[key], p.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls,kwargs,shape", [
    (Conv2D, {"channels": 4, "kernel": 3}, (3, 8, 8)),
    (Conv2D, {"channels": 4, "kernel": 3, "padding": 1}, (2, 7, 9)),
    (Conv2D, {"channels": 3, "kernel": (5, 3), "padding": (2, 1)}, (2, 6, 5)),
    (Conv2D, {"channels": 5, "kernel": (3, 2), "stride": (2, 3), "padding": (1, 2)}, (3, 9, 8)),
    (Conv2D, {"channels": 2, "kernel": 5, "stride": 2, "bias": False}, (1, 11, 12)),
    (Conv1D, {"channels": 4, "kernel": 3}, (3, 10)),
    (Conv1D, {"channels": 3, "kernel": 5, "padding": 2}, (2, 9)),
    (Conv1D, {"channels": 3, "kernel": 4, "stride": 3, "padding": 2}, (2, 13)),
])
def test_convolutions_agree_with_torch(cls, kwargs, shape):
    torch = pytest.importorskip("torch")
    conv = torch.nn.functional.conv2d if cls is Conv2D else torch.nn.functional.conv1d
    rng = np.random.default_rng(3)
    layer, _ = built(cls, shape, **kwargs)
    randomise_params(layer, rng)
    keys = ["W", "b"] if layer.bias else ["W"]
    torch_check(layer, rng.normal(size=(4, *shape)),
                lambda x, W, b=None: conv(x, W, b, stride=layer.stride, padding=layer.padding),
                keys, rng)


@pytest.mark.parametrize("cls,kwargs,shape", [
    (MaxPool2D, {"size": 2}, (3, 8, 8)),
    (MaxPool2D, {"size": 3, "stride": 2}, (2, 9, 8)),
    (MaxPool1D, {"size": 2}, (3, 9)),
    (AvgPool2D, {"size": 2}, (3, 7, 8)),
    (AvgPool2D, {"size": (3, 2), "stride": 1}, (2, 6, 5)),
    (AvgPool1D, {"size": 3, "stride": 2}, (3, 10)),
    (GlobalAvgPool, {}, (3, 5, 6)),
])
def test_pools_agree_with_torch(cls, kwargs, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    layer, _ = built(cls, shape, **kwargs)
    if cls is GlobalAvgPool:
        def ref(x):
            return x.mean(dim=tuple(range(2, x.ndim)))
    else:
        fn = {MaxPool2D: F.max_pool2d, MaxPool1D: F.max_pool1d, AvgPool2D: F.avg_pool2d,
              AvgPool1D: F.avg_pool1d}[cls]

        def ref(x):
            return fn(x, layer.size, layer.stride)
    # ReLU'd input: windows with ties, where both route the gradient to the first maximum.
    x = np.maximum(rng.normal(size=(4, *shape)), 0)
    torch_check(layer, x, ref, [], rng)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 5), (2, 7)])
def test_batch_norm_agrees_with_torch_in_both_modes(shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    layer, _ = built(BatchNorm, shape, momentum=0.2, eps=1e-4)
    randomise_params(layer, rng)
    rm, rv = torch.zeros(shape[0], dtype=torch.float64), torch.ones(shape[0], dtype=torch.float64)
    for _ in range(2):  # two training steps move the running statistics
        torch_check(layer, rng.normal(size=(6, *shape)) * 3 + 1,
                    lambda x, s, b: F.batch_norm(x, rm, rv, s, b, training=True, momentum=0.2,
                                                 eps=1e-4), ["scale", "shift"], rng)
    np.testing.assert_allclose(layer.buffers["running_mean"], rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], rv.numpy(), rtol=1e-12)
    layer.eval()
    torch_check(layer, rng.normal(size=(6, *shape)),
                lambda x, s, b: F.batch_norm(x, rm, rv, s, b, training=False, eps=1e-4),
                ["scale", "shift"], rng)


@pytest.mark.parametrize("shape", [(6,), (3, 4, 5)])
def test_layer_norm_agrees_with_torch(shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    layer, _ = built(LayerNorm, shape, eps=1e-3)
    randomise_params(layer, rng)
    torch_check(layer, rng.normal(size=(4, *shape)),
                lambda x, s, b: F.layer_norm(x, shape, s, b, eps=1e-3), ["scale", "shift"], rng)


def test_same_convolution_shortcut_matches_the_strided_form():
    # A stride-1 "same" convolution takes the flat-shift im2col/col2im (same_shifts); with the
    # shortcut switched off, the general strided form must give the same numbers.
    rng = np.random.default_rng(8)
    x, g = rng.normal(size=(3, 2, 6, 5)), rng.normal(size=(3, 4, 6, 5))
    results = []
    for shortcut in (True, False):
        layer, _ = built(Conv2D, (2, 6, 5), channels=4, kernel=(3, 5), padding=(1, 2))
        assert layer._shifts is not None
        if not shortcut:
            layer._shifts = None
        results.append((layer.forward(x), layer.backward(g), layer.grads["W"].copy()))
    for fast, general in zip(*results):
        np.testing.assert_allclose(fast, general, rtol=1e-13, atol=1e-13)


@pytest.mark.slow
def test_cnn_benchmark_runs_and_reports(tmp_path):
    # The benchmark script end to end on a couple of steps: its report's shape, never timings.
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "experiments" / "benchmarks" / "cnn_bench.py"
    done = subprocess.run([sys.executable, str(script), "--rounds", "1", "--steps", "1",
                           "--skip-torch", "--skip-memory", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "cnn_bench.json").read_text())
    assert set(result["summary"]["median_step_s"]["cpu"]) == {"nnx", "floor"}
    assert result["parameters"] == 320 + 18496 + 401536 + 1290
    assert "im2col (padding + strided copy)" in result["breakdown"]["rows"]
    assert "| nnx / floor |" in (tmp_path / "cnn_bench.md").read_text()
