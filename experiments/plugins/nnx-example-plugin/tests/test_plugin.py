"""Tests of the example plugin: nnx's conformance kit on every component, then reference values.

Run with the plugin installed (``pip install -e .``) or on ``PYTHONPATH`` with its dist-info
(``pip install --no-deps --target DIR .``): the registry must find it through its metadata.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from nnx.network import mlp
from nnx.registry import registry
from nnx.testing import check_component, check_loss_gradient, check_module_gradients

from nnx_example_plugin.activations import Mish
from nnx_example_plugin.data import Checkerboard
from nnx_example_plugin.layers import RMSNorm
from nnx_example_plugin.losses import LogCosh
from nnx_example_plugin.optimizers import Lion

COMPONENTS = [
    ("activations", "mish", Mish),
    ("layers", "rms_norm", RMSNorm),
    ("losses", "log_cosh", LogCosh),
    ("optimizers", "lion", Lion),
    ("datasets", "checkerboard", Checkerboard),
]


# -- what nnx sees -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "name", "cls"), COMPONENTS)
def test_registered_through_entry_points(kind, name, cls):
    entry = registry(kind).entry(name)
    assert (entry.distribution, entry.version) == ("nnx-example-plugin", "0.1.0")
    assert registry(kind).get(name) is cls
    assert registry(kind).get(f"nnx-example-plugin:{name}") is cls  # the dist:name form


@pytest.mark.parametrize(("kind", "name", "cls"), COMPONENTS)
def test_conformance_kit_by_name(kind, name, cls):
    check_component(kind, name)


@pytest.mark.parametrize(("kind", "name", "cls"), COMPONENTS)
def test_conformance_kit_by_class(kind, name, cls):
    check_component(kind, cls)


# -- mish --------------------------------------------------------------------------------------
def _mish(v: float) -> float:
    return v * math.tanh(math.log1p(math.exp(v)))


def test_mish_matches_its_formula():
    x = np.array([[-20.0, -3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 3.0, 20.0]])
    y = Mish().forward(x)
    np.testing.assert_allclose(y, [[_mish(v) for v in x[0]]], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(Mish().forward(np.array([[1.0]])), [[0.8650983882673103]],
                               rtol=1e-15)


def test_mish_is_finite_and_exact_far_out_in_float32():
    x = np.array([[-1e4, -100.0, 100.0, 1e4]], dtype=np.float32)
    act = Mish()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = act.forward(x)
        g = act.backward(np.ones_like(y))
    assert y.dtype == g.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.0, 100.0, 1e4]], atol=1e-30)
    np.testing.assert_allclose(g, [[0.0, 0.0, 1.0, 1.0]], atol=1e-30)


def test_mish_gradient_near_its_minimum():
    # the minimum of mish lies near x = -1.19: the gradient changes sign there
    x = np.linspace(-3, 3, 24).reshape(4, 6)
    check_module_gradients(Mish(), x)


# -- rms_norm ----------------------------------------------------------------------------------
def test_rms_norm_by_hand():
    layer = RMSNorm(eps=0.0 + 1e-12)
    layer.build((2,), np.random.default_rng(0), np.float64)
    # rows [3, 4] and [1, -1]: rms 3.5355... = 5/sqrt(2) and 1
    y = layer.forward(np.array([[3.0, 4.0], [1.0, -1.0]]))
    np.testing.assert_allclose(y, [[3 * 2**0.5 / 5, 4 * 2**0.5 / 5], [1.0, -1.0]], rtol=1e-10)
    assert layer.decay == {"g": False, "b": False}  # scales and shifts are not decayed


def test_rms_norm_on_3d_samples_in_a_network():
    from nnx.network import Network

    net = Network(["rms_norm", "flatten", {"name": "dense", "units": 3}], in_shape=(2, 5),
                  rng=np.random.default_rng(0))
    assert net.named_params()["0.g"].shape == (5,)
    check_module_gradients(net, np.random.default_rng(1).normal(size=(4, 2, 5)))


@pytest.mark.parametrize("eps", [0, -1.0, "1e-6"])
def test_rms_norm_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="^eps must"):
        RMSNorm(eps=eps)


# -- log_cosh ----------------------------------------------------------------------------------
def test_log_cosh_by_hand():
    pred = np.array([[0.0, 1.0], [-2.0, 1000.0]])
    target = np.zeros_like(pred)
    loss = LogCosh()
    # cosh(1000) overflows; log cosh(1000) = 1000 - log 2 to double precision
    expected = (0.0 + math.log(math.cosh(1.0)) + math.log(math.cosh(2.0)) + 1000 - math.log(2)) / 4
    assert loss.forward(pred, target) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(loss.backward(), np.tanh(pred) / 4, rtol=1e-15)


def test_log_cosh_scale():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    d = pred - target
    loss = LogCosh(scale=0.5)
    assert loss.forward(pred, target) == pytest.approx(np.mean(0.25 * np.log(np.cosh(d / 0.5))))
    check_loss_gradient(loss, pred, target)
    small = np.full((1, 1), 1e-4)  # quadratic near 0 for every scale: d**2 / 2
    assert LogCosh(scale=3.0).forward(small, np.zeros((1, 1))) == pytest.approx(0.5e-8, rel=1e-6)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_log_cosh_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale must be"):
        LogCosh(scale=scale)


def test_log_cosh_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="does not match"):
        LogCosh().forward(np.zeros((3, 2)), np.zeros((3, 1)))


# -- lion --------------------------------------------------------------------------------------
def test_lion_two_steps_by_hand():
    opt = Lion(lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.5)
    p = np.array([1.0, 1.0, 1.0])
    same = p
    # step 1, m = 0: c = 0.1 g -> sign [1, -1, 0]; p = p (1 - 0.1 * 0.5) - 0.1 sign(c); m = 0.01 g
    opt.step({"p": p}, {"p": np.array([0.5, -2.0, 0.0])})
    np.testing.assert_allclose(p, [0.85, 1.05, 0.95], rtol=1e-15)
    np.testing.assert_allclose(opt.state["p"]["m"], [0.005, -0.02, 0.0], rtol=1e-15)
    # step 2, g = [-1, -1, 1]: c = 0.9 m + 0.1 g = [-0.0955, -0.118, 0.1] -> [-1, -1, 1]
    opt.step({"p": p}, {"p": np.array([-1.0, -1.0, 1.0])})
    np.testing.assert_allclose(p, [0.85 * 0.95 + 0.1, 1.05 * 0.95 + 0.1, 0.95 * 0.95 - 0.1],
                               rtol=1e-15)
    np.testing.assert_allclose(opt.state["p"]["m"], [0.99 * 0.005 - 0.01, 0.99 * -0.02 - 0.01, 0.01],
                               rtol=1e-15)
    assert p is same


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"), ({"beta1": 1.0}, "beta1"),
    ({"beta2": -0.1}, "beta2"), ({"beta1": "0.9"}, "beta1"), ({"weight_decay": -1}, "weight_decay"),
])
def test_lion_rejects_bad_hyper_parameters(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key} must"):
        Lion(**kwargs)


# -- checkerboard ------------------------------------------------------------------------------
def test_checkerboard_labels_follow_the_board():
    ds = Checkerboard(n_samples=2000, n_test=0, tiles=2).load(np.random.default_rng(0))
    x, y = ds.x_train, ds.y_train
    # tiles=2 is XOR of the signs: class 1 in the 2nd and 4th quadrants
    np.testing.assert_array_equal(y, ((x[:, 0] >= 0) != (x[:, 1] >= 0)).astype(np.int64))
    assert ds.x_test is None and ds.n_classes == 2 and y.dtype == np.int64
    assert 0.45 < y.mean() < 0.55
    assert np.abs(x).max() <= 1.0


def test_checkerboard_is_seeded_and_keeps_dtype():
    source = Checkerboard(n_samples=50, n_test=20, tiles=5, noise=0.05)
    a = source.load(np.random.default_rng(3), dtype=np.float32)
    b = source.load(np.random.default_rng(3), dtype=np.float32)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (50, 2) and a.x_test.shape == (20, 2)
    assert a.x_train.dtype == a.x_test.dtype == np.float32


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"n_samples": 0}, "n_samples"), ({"n_test": -1}, "n_test"), ({"tiles": 1}, "tiles"),
    ({"tiles": 2.5}, "tiles"), ({"noise": -0.1}, "noise"), ({"noise": float("nan")}, "noise"),
])
def test_checkerboard_rejects_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key} must"):
        Checkerboard(**kwargs)


# -- the four together -------------------------------------------------------------------------
def test_the_four_components_train_a_network_together():
    rng = np.random.default_rng(0)
    ds = Checkerboard(n_samples=400, n_test=0, tiles=2).load(rng)
    net = mlp(2, [16], 1, activation="mish", output_activation="sigmoid", rng=rng)
    assert net.specs()[1]["name"] == "nnx-example-plugin:mish"  # rebuilt by qualified name
    loss, opt = LogCosh(), Lion(lr=0.01)
    target = ds.y_train.reshape(-1, 1).astype(np.float64)
    first = loss.forward(net.forward(ds.x_train), target)
    for _ in range(300):
        loss.forward(net.forward(ds.x_train), target)
        net.backward(loss.backward())
        opt.step(net.params, net.grads)
    pred = net.forward(ds.x_train)
    assert loss.forward(pred, target) < first / 3
    assert np.mean((pred[:, 0] > 0.5) == ds.y_train) > 0.95
