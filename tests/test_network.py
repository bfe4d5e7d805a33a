"""The sequential network: whole-network gradients, the flat buffers, input checks, training."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.registry import build, registry
from nnx.testing import (
    assert_close,
    check_module_gradients,
    check_outputs_owned,
    numerical_gradient,
)

HIDDEN = registry("activations").names()


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", HIDDEN)
def test_whole_network_gradients(activation, bias):
    net = nnx.mlp(3, [5, 4], 3, activation=activation, output_activation="softmax", bias=bias,
                  rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(6, 3))
    check_module_gradients(net, x)
    assert net.n_params == (3 * 5 + 5 * 4 + 4 * 3) + bias * (5 + 4 + 3)


def test_network_and_loss_gradient_together():
    # dL/dflat for L = softmax_cross_entropy(net(x), labels), against differences of L itself.
    net = nnx.mlp(4, [6], 3, activation="tanh", rng=np.random.default_rng(2))
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    loss = build("losses", "softmax_cross_entropy")
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    analytic = net.flat_grads.copy()
    numeric = numerical_gradient(lambda: loss.forward(net.forward(x), y), net.flat_params)
    assert_close(analytic, numeric, "mlp + softmax_cross_entropy")


def test_params_and_grads_are_views_into_flat_buffers():
    net = nnx.mlp(3, [4, 5], 2, rng=np.random.default_rng(0))
    dense = [layer for layer in net.layers if layer.params]
    assert len(dense) == 3
    for layer in dense:
        for key in ("W", "b"):
            assert np.shares_memory(layer.params[key], net.flat_params)
            assert np.shares_memory(layer.grads[key], net.flat_grads)
            assert layer.params[key].shape == layer.grads[key].shape
    # The views tile the buffer, in layer order, without overlap.
    tiled = np.concatenate([p.ravel() for layer in dense for p in layer.params.values()])
    np.testing.assert_array_equal(tiled, net.flat_params)
    assert tiled.size == net.n_params == (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)
    assert net.params["flat"] is net.flat_params and net.grads["flat"] is net.flat_grads


def test_optimizer_step_on_the_network_moves_layer_arrays():
    net = nnx.mlp(3, [4], 2, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(5, 3))
    mse = build("losses", "mse")
    mse.forward(net.forward(x), np.zeros((5, 2)))
    net.backward(mse.backward())
    W, b = net.layers[0].params["W"], net.layers[0].params["b"]
    before_W, before_b = W.copy(), b.copy()
    gW, gb = net.layers[0].grads["W"].copy(), net.layers[0].grads["b"].copy()
    assert np.abs(gW).sum() > 0
    build("optimizers", "sgd", lr=0.5).step(net.params, net.grads)
    assert net.layers[0].params["W"] is W  # the same array, changed in place
    np.testing.assert_allclose(W, before_W - 0.5 * gW, rtol=1e-15)
    np.testing.assert_allclose(b, before_b - 0.5 * gb, rtol=1e-15)


def test_backward_fills_layer_grads_as_in_a_dense_by_hand():
    # One Dense layer without activation: y = x W + b, L = sum(g * y)
    # dL/dW = x.T g, dL/db = sum over rows of g.
    net = nnx.Network([{"name": "dense", "units": 2}], 3, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    out = net.forward(x)
    np.testing.assert_allclose(out, x @ net.layers[0].params["W"] + net.layers[0].params["b"])
    assert net.backward(g) is None  # the first layer does not compute dL/d(data)
    np.testing.assert_allclose(net.layers[0].grads["W"], x.T @ g, rtol=1e-14)
    np.testing.assert_allclose(net.layers[0].grads["b"], g.sum(axis=0), rtol=1e-14)


def test_predict_returns_a_fresh_array():
    net = nnx.mlp(3, [4], 2, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    p1 = net.predict(x1)
    kept = p1.copy()
    net.forward(x2)
    p2 = net.predict(x2)
    np.testing.assert_array_equal(p1, kept)  # not overwritten by later passes
    assert not np.shares_memory(p1, p2)
    assert not np.shares_memory(p2, net.forward(x2))
    # Batched prediction gives the same rows as one pass.
    big = rng.normal(size=(11, 3))
    np.testing.assert_allclose(net.predict(big, batch_size=4), net.predict(big), rtol=1e-15)
    assert net.predict(np.empty((0, 3))).shape == (0, 2)


@pytest.mark.parametrize("activation", HIDDEN)
def test_what_the_network_returns_belongs_to_the_caller(activation):
    # forward/backward twice, then predict twice: nothing returned earlier changes.
    net = nnx.mlp(4, [6, 5], 3, activation=activation, dropout=0.2, rng=np.random.default_rng(0))
    net.layers[0].propagate = True  # so that backward returns dL/dx too
    rng = np.random.default_rng(1)
    x1, x2, g1, g2 = (rng.normal(size=(7, n)) for n in (4, 4, 3, 3))
    check_outputs_owned(net, x1, g1, x2, g2, f"mlp with {activation}")
    first = net.predict(x1)
    kept = first.copy()
    net.predict(x2)
    net.forward(x2)
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(net.predict(x1[:3]), x1)


def dropout_net():
    return nnx.mlp(6, [50], 2, dropout=0.5, rng=np.random.default_rng(0))


def test_predict_runs_in_eval_mode_and_restores_the_layers():
    net = dropout_net()
    x = np.random.default_rng(1).normal(size=(4, 6))
    drop = net.layers[2]
    assert type(drop).__name__ == "Dropout"
    net.train()
    a, b = net.predict(x), net.predict(x)
    np.testing.assert_array_equal(a, b)  # no dropout while predicting
    assert drop.training is True
    # Training mode still drops.
    assert not np.array_equal(net.forward(x), net.forward(x))
    net.eval()
    np.testing.assert_array_equal(net.predict(x), a)
    assert drop.training is False
    np.testing.assert_array_equal(net.forward(x), a)


def test_predict_restores_the_network_training_flag():
    net = dropout_net().train()
    net.predict(np.zeros((2, 6)))
    assert net.training is True


def test_summary_lists_layers_and_counts():
    net = nnx.mlp(10, [20, 30], 5, rng=np.random.default_rng(0))
    # 10*20 + 20 = 220; 20*30 + 30 = 630; 30*5 + 5 = 155; total 1005
    assert net.n_params == 1005
    text = net.summary()
    assert "1,005 parameters" in text
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(rows) == len(net.layers) == 6
    counts = ["220", "0", "630", "0", "155", "0"]
    for row, layer, count in zip(rows, net.layers, counts):
        assert repr(layer) in row
        assert row.split()[-1] == count
    assert "(n, 20)" in rows[0] and "(n, 5)" in rows[-1]


def test_mlp_builds_the_expected_sequence():
    net = nnx.mlp(4, [8, 6], 3, activation="tanh", output_activation="softmax", dropout=0.2,
                  bias=False, initializer="he_normal", rng=np.random.default_rng(0))
    kinds = [type(layer) for layer in net.layers]
    get = nnx.get
    Dense, Dropout = get("layers", "dense"), get("layers", "dropout")
    Tanh, Softmax = get("activations", "tanh"), get("activations", "softmax")
    assert kinds == [Dense, Tanh, Dropout, Dense, Tanh, Dropout, Dense, Softmax]
    dense = [net.layers[i] for i in (0, 3, 6)]
    assert [d.params["W"].shape for d in dense] == [(4, 8), (8, 6), (6, 3)]
    assert all(set(d.params) == {"W"} and d.initializer == "he_normal" for d in dense)
    assert net.layers[2].rate == 0.2 and net.out_features == 3
    plain = nnx.mlp(4, [8], 3, rng=np.random.default_rng(0))
    assert [type(layer).__name__ for layer in plain.layers] == ["Dense", "ReLU", "Dense", "Identity"]


def test_same_seed_same_network():
    a = nnx.mlp(4, [8], 3, rng=np.random.default_rng(7))
    b = nnx.mlp(4, [8], 3, rng=np.random.default_rng(7))
    c = nnx.mlp(4, [8], 3, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


# -- bad input ----------------------------------------------------------------------------
@pytest.fixture
def net():
    return nnx.mlp(3, [4], 2, rng=np.random.default_rng(0))


@pytest.mark.parametrize("method", ["forward", "predict"])
def test_one_dimensional_input_rejected(net, method):
    with pytest.raises(ValueError, match="2-D") as info:
        getattr(net, method)(np.zeros(3))
    assert "(3,)" in str(info.value)


@pytest.mark.parametrize("method", ["forward", "predict"])
def test_wrong_feature_count_names_both_shapes(net, method):
    with pytest.raises(ValueError, match=r"expects 3 input features, got shape \(5, 4\)"):
        getattr(net, method)(np.zeros((5, 4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected(net, bad):
    x = np.zeros((2, 3))
    x[1, 2] = bad
    with pytest.raises(ValueError, match="NaN"):
        net.forward(x)
    with pytest.raises(ValueError, match="NaN"):
        net.predict(x)


def test_unknown_layer_name_suggests_and_lists():
    with pytest.raises(ValueError) as info:
        nnx.Network([{"name": "dense", "units": 3}, "rleu"], 2, rng=np.random.default_rng(0))
    message = str(info.value)
    assert "'rleu'" in message and "Did you mean 'relu'?" in message
    for name in registry("layers").names() + registry("activations").names():
        assert name in message


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex128])
def test_other_dtypes_rejected(dtype):
    with pytest.raises(ValueError, match="float32 or float64"):
        nnx.mlp(3, [4], 2, rng=np.random.default_rng(0), dtype=dtype)


def test_layer_spec_forms():
    relu = build("activations", "relu")
    net = nnx.Network([{"name": "dense", "units": 4}, relu, "nnx:tanh",
                       {"name": "nnx:dense", "units": 1}], 3, rng=np.random.default_rng(0))
    assert net.layers[1] is relu
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "ReLU", "Tanh", "Dense"]
    with pytest.raises(ValueError, match="name"):
        nnx.Network([{"units": 4}], 3)


# -- training -----------------------------------------------------------------------------
def test_xor_trains_with_full_batch_sgd():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    net = nnx.Network([{"name": "dense", "units": 2}, "tanh", {"name": "dense", "units": 1},
                       "sigmoid"], 2, rng=np.random.default_rng(0))
    loss = build("losses", "binary_cross_entropy")
    opt = build("optimizers", "sgd", lr=1.0)
    first = loss.forward(net.forward(x), y)
    for _ in range(2000):
        value = loss.forward(net.forward(x), y)
        net.backward(loss.backward())
        opt.step(net.params, net.grads)
    # log 2 = 0.693 is chance; a net stuck in XOR's local minimum ends near 0.35.
    assert first > 0.5
    assert value < 0.01
    np.testing.assert_array_equal(net.predict(x) > 0.5, y > 0.5)


# -- the finiteness check of inputs and of the training loop -----------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered in dot")  # pytest resets nnx's filter
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite(dtype):
    from nnx.module import all_finite

    x = np.linspace(-3, 3, 60, dtype=dtype).reshape(6, 10)
    assert all_finite(x) and all_finite(x[:, ::2]) and all_finite(x[:0])
    huge = np.full((3, 3), np.finfo(dtype).max / 2, dtype)  # x.x overflows, yet all finite
    assert all_finite(huge) and all_finite(-huge)
    for bad in (np.nan, np.inf, -np.inf):
        for where in ((0, 0), (5, 9), (2, 3)):
            y = x.copy()
            y[where] = bad
            assert not all_finite(y) and not all_finite(y.T)  # contiguous and not
            inside = 1 <= where[0] <= 4 and 1 <= where[1] <= 8
            assert all_finite(y[1:5, 1:9]) == (not inside)  # a strided view
    assert all_finite(np.arange(12).reshape(3, 4))  # integers
