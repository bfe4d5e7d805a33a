"""Every registered component, checked against finite differences and independent formulas.

The conformance checks are generated from the registry at collection time, so a component
declared in pyproject.toml (or by an installed plugin) is covered with no edit here.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

import nnx
from nnx.registry import KINDS as KIND_TABLE
from nnx.registry import build, registry
from nnx.testing import check_component

# Datasets are left out: the kit's check loads each one (Fashion-MNIST needs its files).
KINDS = [k.name for k in KIND_TABLE if k.name != "datasets"]
ALL = [(kind, name) for kind in KINDS for name in registry(kind).names()]
ACTIVATIONS = registry("activations").names()


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_conformance(kind, name):
    check_component(kind, name)


def test_every_kind_has_components():
    # Guards the parametrization above: an empty group would silently generate no test.
    for kind in KINDS:
        assert registry(kind).names(), kind


@contextmanager
def strict_numerics():
    """Any RuntimeWarning or floating-point overflow / invalid / division is an error.

    Underflow is left alone: exp(-1e4) is 0 in every float format, and rounding it to 0 is
    the correct answer, not an instability.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            yield


# -- activations --------------------------------------------------------------------------
def act(name, **kwargs):
    return build("activations", name, **kwargs)


def apply(fn, x):
    """An element-wise reference built from the math module, one Python float at a time."""
    return np.array([[fn(float(v)) for v in row] for row in np.atleast_2d(x)])


X = np.array([[-3.0, -1.5, -0.4, -1e-3], [1e-3, 0.3, 1.0, 2.5]])


def test_sigmoid_values_against_formula():
    s = act("sigmoid")
    x = np.array([[0.0, math.log(3.0), -math.log(3.0), 1.0, -2.0]])
    y = s.forward(x)
    # sigmoid(0) = 1/2; sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4; sigmoid(-ln 3) = 1/4.
    np.testing.assert_allclose(y[0, :3], [0.5, 0.75, 0.25], rtol=1e-15)
    np.testing.assert_allclose(y, apply(lambda v: 1.0 / (1.0 + math.exp(-v)), x), rtol=1e-15)
    # dy/dx = y (1 - y): 1/4 at 0, 3/16 at +-ln 3.
    np.testing.assert_allclose(s.backward(np.ones_like(x))[0, :3], [0.25, 0.1875, 0.1875], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_huge_inputs(dtype):
    x = np.array([[-1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4]], dtype)
    s = act("sigmoid")
    with strict_numerics():
        y = s.forward(x)
        g = s.backward(np.ones_like(x))
    assert y.dtype == dtype and np.isfinite(y).all() and np.isfinite(g).all()
    assert y[0, 0] == 0.0 and y[0, -1] == 1.0 and y[0, 3] == 0.5
    assert ((y >= 0) & (y <= 1)).all()
    assert np.all(np.diff(y[0]) >= 0)  # monotone
    # sigmoid(-100) = e^-100 / (1 + e^-100): far from underflow in float64, so it must be exact.
    if dtype == np.float64:
        np.testing.assert_allclose(y[0, 2], math.exp(-100) / (1 + math.exp(-100)), rtol=1e-14)


def test_softmax_rows_sum_to_one_and_stable():
    sm = act("softmax")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)) * 3
    y = sm.forward(x)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    ref = np.array([[math.exp(v) / math.fsum(math.exp(u) for u in row) for v in row] for row in x])
    np.testing.assert_allclose(y, ref, rtol=1e-13)
    big = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 1e4 - math.log(2.0)]])
    with strict_numerics():
        out = act("softmax").forward(big)
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[1], [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    np.testing.assert_allclose(out[2], [0.0, 0.0, 1.0])
    # Shift invariance: adding 1e4 to every logit changes nothing.
    np.testing.assert_allclose(act("softmax").forward(x + 1e4), y, rtol=1e-9, atol=1e-15)


def test_softmax_backward_is_the_full_jacobian_product():
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    sm = act("softmax")
    y = sm.forward(x)
    got = sm.backward(g)
    for r in range(len(x)):
        # J_ij = dy_i/dx_j = y_i (delta_ij - y_j); the vector-Jacobian product is g @ J.
        J = np.array([[y[r, i] * ((i == j) - y[r, j]) for j in range(5)] for i in range(5)])
        np.testing.assert_allclose(got[r], g[r] @ J, rtol=1e-12, atol=1e-15)


REFERENCES = {
    "identity": lambda v: v,
    "tanh": math.tanh,
    "relu": lambda v: v if v > 0 else 0.0,
    "leaky_relu": lambda v: v if v > 0 else 0.01 * v,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1.0,
    # GELU, tanh approximation (Hendrycks & Gimpel 2016, PyTorch approximate="tanh").
    "gelu": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    "softplus": lambda v: math.log(1.0 + math.exp(v)),
    "silu": lambda v: v / (1.0 + math.exp(-v)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_activation_values_against_formula(name):
    y = act(name).forward(X.copy())
    np.testing.assert_allclose(y, apply(REFERENCES[name], X), rtol=1e-12, atol=1e-15)


def test_gelu_is_close_to_exact_gelu():
    # The tanh form approximates x * Phi(x) to a few 1e-4: it must be GELU, not another curve.
    x = np.linspace(-5, 5, 41).reshape(1, -1)
    exact = apply(lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))), x)
    np.testing.assert_allclose(act("gelu").forward(x), exact, atol=1e-3)


def test_elu_and_leaky_relu_parameters():
    x = np.array([[-2.0, 3.0]])
    np.testing.assert_allclose(act("elu", alpha=0.5).forward(x), [[0.5 * (math.exp(-2) - 1), 3.0]])
    np.testing.assert_allclose(act("leaky_relu", alpha=0.2).forward(x), [[-0.4, 3.0]])
    with pytest.raises(ValueError, match="alpha"):
        act("elu", alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        act("leaky_relu", alpha=-0.1)


def test_softplus_and_silu_at_extremes():
    x = np.array([[-1e4, -50.0, 50.0, 1e4]])
    with strict_numerics():
        sp = act("softplus").forward(x)
        si = act("silu").forward(x)
    # softplus(x) = x + log(1 + e^-x) -> x for large x, e^x for very negative x.
    np.testing.assert_allclose(sp, [[0.0, math.exp(-50.0), 50.0, 1e4]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(si, [[-0.0, -50.0 * math.exp(-50.0), 50.0, 1e4]], rtol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_float32_in_float32_out(name):
    x = (np.random.default_rng(2).normal(size=(3, 4)) * 2).astype(np.float32)
    a = act(name)
    a.build(4, np.random.default_rng(0), np.float32)
    y = a.forward(x)
    assert y.dtype == np.float32
    assert a.backward(np.ones_like(y)).dtype == np.float32


# -- losses -------------------------------------------------------------------------------
def loss(name, **kwargs):
    return build("losses", name, **kwargs)


def test_softmax_cross_entropy_labels_equal_one_hot():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    one_hot = np.eye(4)[labels]
    a, b = loss("softmax_cross_entropy"), loss("softmax_cross_entropy")
    va, vb = a.forward(z, labels), b.forward(z, one_hot)
    np.testing.assert_allclose(va, vb, rtol=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-14, atol=1e-17)
    # Independent: L = mean_i (log sum_c exp z_ic - z_i,label).
    ref = math.fsum(math.log(math.fsum(math.exp(v) for v in row)) - row[c]
                    for row, c in zip(z, labels)) / len(z)
    np.testing.assert_allclose(va, ref, rtol=1e-13)
    # dL/dz = (softmax(z) - onehot) / n, softmax from the math module.
    soft = np.array([[math.exp(v) / math.fsum(math.exp(u) for u in row) for v in row] for row in z])
    np.testing.assert_allclose(a.backward(), (soft - one_hot) / len(z), rtol=1e-12, atol=1e-16)
    # backward can be called twice (the cached probabilities are not overwritten).
    np.testing.assert_allclose(a.backward(), (soft - one_hot) / len(z), rtol=1e-12, atol=1e-16)


def test_softmax_cross_entropy_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [1e4, 1e4, 0.0]])
    labels = np.array([0, 1, 2])
    sce = loss("softmax_cross_entropy")
    with strict_numerics():
        value = sce.forward(z, labels)
        grad = sce.backward()
    # Row losses: 0, 1e4, 1e4 + log 2 (logsumexp of [1e4, 1e4, 0] is 1e4 + log 2).
    np.testing.assert_allclose(value, (0.0 + 1e4 + 1e4 + math.log(2.0)) / 3, rtol=1e-14)
    expected = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-15)


def test_softmax_cross_entropy_rejects_bad_labels():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        loss("softmax_cross_entropy").forward(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        loss("softmax_cross_entropy").forward(z, np.array([0, 1]))


def test_label_smoothing_by_hand_and_against_finite_differences():
    # Two classes, z = [0, log 3]: p = [1/4, 3/4]; label 1, e = 0.2: t' = [0.1, 0.9].
    z, label = np.array([[0.0, math.log(3.0)]]), np.array([1])
    sce = loss("softmax_cross_entropy", label_smoothing=0.2)
    value = sce.forward(z, label)
    np.testing.assert_allclose(value, -(0.1 * math.log(0.25) + 0.9 * math.log(0.75)), rtol=1e-14)
    np.testing.assert_allclose(sce.backward(), [[0.15, -0.15]], rtol=1e-12)
    # Labels and one-hot rows give the same; the gradient is that of the value.
    rng = np.random.default_rng(5)
    z, labels = rng.normal(size=(6, 5)) * 3, rng.integers(0, 5, 6)
    a, b = loss("softmax_cross_entropy", label_smoothing=0.1), loss(
        "softmax_cross_entropy", label_smoothing=0.1)
    np.testing.assert_allclose(a.forward(z, labels), b.forward(z, np.eye(5)[labels]), rtol=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-13, atol=1e-17)
    from nnx.testing import numerical_gradient

    numeric = numerical_gradient(lambda: a.forward(z, labels), z)
    a.forward(z, labels)
    np.testing.assert_allclose(a.backward(), numeric, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\], got 1.5"):
        loss("softmax_cross_entropy", label_smoothing=1.5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_agrees_with_torch(smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    z, labels = rng.normal(size=(7, 4)) * 2, rng.integers(0, 4, 7)
    sce = loss("softmax_cross_entropy", label_smoothing=smoothing)
    value, grad = sce.forward(z, labels), sce.backward()
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(labels), label_smoothing=smoothing)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_bce_with_logits_equals_bce_of_sigmoid():
    rng = np.random.default_rng(4)
    z = rng.uniform(-4, 4, size=(6, 2))
    t = (rng.random((6, 2)) > 0.5).astype(float)
    p = 1.0 / (1.0 + np.exp(-z))
    fused, plain = loss("binary_cross_entropy_with_logits"), loss("binary_cross_entropy")
    np.testing.assert_allclose(fused.forward(z, t), plain.forward(p, t), rtol=1e-12)
    # Chain rule: dL/dz = dL/dp * p (1 - p).
    np.testing.assert_allclose(fused.backward(), plain.backward() * p * (1 - p), rtol=1e-10)
    ref = -math.fsum(tv * math.log(pv) + (1 - tv) * math.log(1 - pv)
                     for tv, pv in zip(t.ravel(), p.ravel())) / t.size
    np.testing.assert_allclose(fused.forward(z, t), ref, rtol=1e-12)


def test_bce_with_logits_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 1e4, -1e4]])
    t = np.array([[1.0, 0.0, 0.0, 1.0]])
    fused = loss("binary_cross_entropy_with_logits")
    with strict_numerics():
        value = fused.forward(z, t)
        grad = fused.backward()
    # Right with certainty costs 0; wrong with logit 1e4 costs 1e4. Mean of [0, 0, 1e4, 1e4].
    assert value == pytest.approx(5e3, rel=1e-14)
    np.testing.assert_allclose(grad, [[0.0, 0.0, 0.25, -0.25]], atol=1e-300)


PRED = np.array([[1.0, 2.0], [3.0, 4.0]])
TARGET = np.array([[0.0, 2.0], [5.0, 1.0]])  # d = pred - target = [[1, 0], [-2, 3]]


def test_regression_losses_by_hand():
    d = PRED - TARGET
    # sse: a sum, 1 + 0 + 4 + 9 = 14; gradient 2 d.
    sse = loss("sse")
    assert sse.forward(PRED, TARGET) == 14.0
    np.testing.assert_array_equal(sse.backward(), 2 * d)
    # mse: a mean, 14 / 4; gradient 2 d / 4.
    mse = loss("mse")
    assert mse.forward(PRED, TARGET) == 3.5
    np.testing.assert_array_equal(mse.backward(), d / 2)
    # mae: (1 + 0 + 2 + 3) / 4; gradient sign(d) / 4.
    mae = loss("mae")
    assert mae.forward(PRED, TARGET) == 1.5
    np.testing.assert_array_equal(mae.backward(), [[0.25, 0.0], [-0.25, 0.25]])
    # huber, delta 1: 0.5*1, 0, 1*(2 - 0.5), 1*(3 - 0.5) -> 4.5 / 4; gradient clip(d, -1, 1) / 4.
    hub = loss("huber")
    assert hub.forward(PRED, TARGET) == 1.125
    np.testing.assert_array_equal(hub.backward(), [[0.25, 0.0], [-0.25, 0.25]])


def test_huber_quadratic_inside_linear_outside():
    hub = loss("huber", delta=2.0)
    d = np.array([[1.5, -1.0, 2.0, -3.0, 10.0]])
    per = [0.5 * 1.5**2, 0.5 * 1.0, 0.5 * 4.0, 2.0 * (3.0 - 1.0), 2.0 * (10.0 - 1.0)]
    assert hub.forward(d, np.zeros_like(d)) == pytest.approx(sum(per) / 5, rel=1e-15)
    np.testing.assert_allclose(hub.backward(), [[1.5, -1.0, 2.0, -2.0, 2.0]] / np.float64(5))
    # The two pieces meet at |d| = delta (0.5 delta^2 = delta (delta - delta/2) = 2): no jump.
    below = hub.forward(np.array([[2.0 - 1e-9]]), np.zeros((1, 1)))
    above = hub.forward(np.array([[2.0 + 1e-9]]), np.zeros((1, 1)))
    assert below == pytest.approx(2.0 - 2e-9, abs=1e-12)
    assert above == pytest.approx(2.0 + 2e-9, abs=1e-12)
    with pytest.raises(ValueError, match="delta"):
        loss("huber", delta=0.0)


@pytest.mark.parametrize("name", ["sse", "mse", "mae", "huber", "binary_cross_entropy",
                                  "binary_cross_entropy_with_logits"])
def test_loss_shape_mismatch_names_both_shapes(name):
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(3, 2\)"):
        loss(name).forward(np.full((3, 2), 0.5), np.zeros((3, 1)))


# -- dropout ------------------------------------------------------------------------------
def dropout(rate, seed=0, features=100):
    layer = build("layers", "dropout", rate=rate)
    layer.build(features, np.random.default_rng(seed), np.float64)
    return layer


def test_dropout_eval_is_identity():
    x = np.random.default_rng(5).normal(size=(20, 100))
    d = dropout(0.5).eval()
    np.testing.assert_array_equal(d.forward(x), x)
    g = np.random.default_rng(6).normal(size=x.shape)
    np.testing.assert_array_equal(d.backward(g), g)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
def test_dropout_train_mask(rate):
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 1.5, size=(200, 100))  # no zeros of its own
    d = dropout(rate)
    y = d.forward(x)
    dropped = y == 0
    # 20 000 Bernoulli draws: the fraction's standard deviation is under 0.0035.
    assert abs(dropped.mean() - rate) < 0.02
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-15)
    g = rng.normal(size=x.shape)
    np.testing.assert_allclose(d.backward(g), np.where(dropped, 0.0, g / (1 - rate)), rtol=1e-15)


def test_dropout_same_seed_same_mask():
    x = np.ones((10, 50))
    a, b, c = dropout(0.5, seed=11), dropout(0.5, seed=11), dropout(0.5, seed=12)
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, c.forward(x))
    assert not np.array_equal(ya, a.forward(x))  # a fresh mask each step


def test_dropout_rate_zero_is_identity_in_training():
    x = np.random.default_rng(8).normal(size=(4, 100))
    np.testing.assert_array_equal(dropout(0.0).forward(x), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_out_of_range(rate):
    with pytest.raises(ValueError, match="rate") as info:
        build("layers", "dropout", rate=rate)
    assert str(rate) in str(info.value)


# -- float32 through a whole network ------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_float32_network(activation):
    net = nnx.mlp(5, [8, 6], 3, activation=activation, output_activation="softmax", dropout=0.2,
                  rng=np.random.default_rng(0), dtype=np.float32)
    assert net.flat_params.dtype == np.float32
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    out = net.forward(x)
    assert out.dtype == np.float32
    sce = loss("softmax_cross_entropy")
    sce.forward(out, np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0]])
    g = sce.backward()
    assert g.dtype == np.float32
    net.backward(g)
    assert net.flat_grads.dtype == np.float32 and np.isfinite(net.flat_grads).all()
    assert net.predict(x).dtype == np.float32
    # float64 data into a float32 network is cast, not promoted.
    assert net.predict(x.astype(np.float64)).dtype == np.float32


# -- initializers -------------------------------------------------------------------------
def init(name, shape, seed=0, dtype=np.float64, **kwargs):
    return build("initializers", name, **kwargs)(shape, np.random.default_rng(seed), dtype)


def test_glorot_uniform_bound():
    fan_in, fan_out = 300, 200
    w = init("glorot_uniform", (fan_in, fan_out))
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # the bound is reached, not a narrower range
    assert abs(w.mean()) < 0.01 * bound
    # U[-a, a] has variance a^2 / 3 = 2 / (fan_in + fan_out).
    assert w.var() == pytest.approx(2 / (fan_in + fan_out), rel=0.05)


def test_he_uniform_bound():
    w = init("he_uniform", (250, 400))
    bound = math.sqrt(6 / 250)
    assert bound * 0.99 < np.abs(w).max() <= bound


@pytest.mark.parametrize("name,std", [
    ("he_normal", lambda fi, fo: math.sqrt(2 / fi)),
    ("glorot_normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("normal", lambda fi, fo: 0.01),
])
def test_normal_initializer_std(name, std):
    fan_in, fan_out = 400, 500
    w = init(name, (fan_in, fan_out), seed=3)
    assert w.std() == pytest.approx(std(fan_in, fan_out), rel=0.05)
    assert abs(w.mean()) < 0.05 * std(fan_in, fan_out)


def test_uniform01_and_zeros():
    u = init("uniform01", (300, 300))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.01)
    # The tutorial's draw: the initializer is rng.random(shape), value for value.
    np.testing.assert_array_equal(u, np.random.default_rng(0).random((300, 300)))
    z = init("zeros", (4, 3), dtype=np.float32)
    assert z.dtype == np.float32 and not z.any()


def test_uniform01_float32_stays_below_one():
    # Seed 23565 draws 0.99999997244 at index 476 in float64: cast to float32 it would be 1.0.
    u = init("uniform01", (20, 50), seed=23565, dtype=np.float32)
    assert u.max() < 1.0
