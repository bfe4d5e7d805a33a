"""The classic two-layer tutorial network, reproduced through the general engine.

3 inputs -> Dense(4, no bias, U[0,1)) -> sigmoid -> Dense(1, no bias, U[0,1)) -> sigmoid,
sum of squared errors, plain gradient descent with lr = 1, 1500 full-batch iterations.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.registry import build

X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
Y = np.array([[0], [1], [1], [0]], dtype=np.float64)
ITERATIONS = 1500


def tutorial_network(seed):
    layers = [
        {"name": "dense", "units": 4, "bias": False, "initializer": "uniform01"},
        "sigmoid",
        {"name": "dense", "units": 1, "bias": False, "initializer": "uniform01"},
        "sigmoid",
    ]
    return nnx.Network(layers, in_features=3, rng=np.random.default_rng(seed))


def train_nnx(seed):
    net = tutorial_network(seed)
    loss = build("losses", "sse")
    opt = build("optimizers", "sgd", lr=1.0)
    for _ in range(ITERATIONS):
        loss.forward(net.forward(X), Y)
        net.backward(loss.backward())
        opt.step(net.params, net.grads)
    return net


def train_tutorial(seed):
    """The tutorial's own bare NumPy code, with a seeded Generator in place of np.random.rand."""
    rng = np.random.default_rng(seed)
    x, y = X, Y
    weights1 = rng.random((3, 4))
    weights2 = rng.random((4, 1))

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    for _ in range(ITERATIONS):
        # feedforward
        layer1 = sigmoid(x @ weights1)
        output = sigmoid(layer1 @ weights2)
        # backprop: chain rule on the sum of squared errors
        d_weights2 = layer1.T @ (2 * (y - output) * output * (1 - output))
        d_weights1 = x.T @ (((2 * (y - output) * output * (1 - output)) @ weights2.T)
                            * layer1 * (1 - layer1))
        weights1 += d_weights1
        weights2 += d_weights2
    prediction = sigmoid(sigmoid(x @ weights1) @ weights2)
    return weights1, weights2, prediction


@pytest.mark.parametrize("seed", range(10))
def test_tutorial_learns_xor_for_every_seed(seed):
    net = train_nnx(seed)
    prediction = net.predict(X)
    np.testing.assert_allclose(prediction, Y, atol=0.05)


@pytest.mark.parametrize("seed", [0, 42])
def test_matches_the_tutorial_code_exactly(seed):
    net = train_nnx(seed)
    w1, w2, prediction = train_tutorial(seed)
    np.testing.assert_allclose(net.layers[0].params["W"], w1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(net.layers[2].params["W"], w2, rtol=0, atol=1e-10)
    np.testing.assert_allclose(net.predict(X), prediction, rtol=0, atol=1e-10)
    # Not vacuous: the training moved the weights far from their U[0, 1) start.
    start = np.random.default_rng(seed).random((3, 4))
    assert np.abs(w1 - start).max() > 1.0


def test_tutorial_network_shape():
    net = tutorial_network(0)
    assert net.n_params == 3 * 4 + 4 * 1
    assert all("b" not in layer.params for layer in net.layers)
    # The initial weights are the tutorial's draw, in the tutorial's order.
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(net.layers[0].params["W"], rng.random((3, 4)))
    np.testing.assert_array_equal(net.layers[2].params["W"], rng.random((4, 1)))
