"""A known result: a 64-64-10 ReLU MLP trained with Adam reaches >= 97% on scikit-learn's digits.

The loop is written out here (forward, loss, backward, step) so that the result depends only
on the engine: network, loss, optimizer.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnx
from nnx.registry import build


def split_and_standardise(seed):
    digits = load_digits()
    x, y = digits.data.astype(np.float64), digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0  # pixels that are always 0 in the training set
    return (x[train] - mean) / std, y[train], (x[test] - mean) / std, y[test]


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent():
    x_train, y_train, x_test, y_test = split_and_standardise(seed=0)
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    net = nnx.mlp(64, [64], 10, activation="relu", rng=np.random.default_rng(0))
    loss = build("losses", "softmax_cross_entropy")  # on logits: mlp's output is identity
    opt = build("optimizers", "adam", lr=1e-3)
    shuffle = np.random.default_rng(1)
    first_epoch_loss = None
    for epoch in range(30):
        order = shuffle.permutation(len(x_train))
        total = 0.0
        for i in range(0, len(order), 32):
            batch = order[i:i + 32]
            value = loss.forward(net.forward(x_train[batch]), y_train[batch])
            net.backward(loss.backward())
            opt.step(net.params, net.grads)
            total += value * len(batch)
        if first_epoch_loss is None:
            first_epoch_loss = total / len(order)
    final_loss = total / len(order)
    accuracy = float(np.mean(net.predict(x_test).argmax(axis=1) == y_test))
    assert final_loss < 0.1 * first_epoch_loss
    print(f"digits: test accuracy {accuracy:.4f}, loss {first_epoch_loss:.3f} -> {final_loss:.4f}")
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}"
