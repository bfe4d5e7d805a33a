"""What the trainer logs is checked by value, against an independent computation.

Runs small enough to work by hand: the forward pass, the gradients, the optimizer's update and
every logged number (loss, accuracy, rmse, r2, gradient and weight norms, update ratio, the
learning rate per epoch, epoch and step counts) are recomputed here in plain NumPy, written
out from the formulas, and compared with the trainer's history. Then early stopping's meaning
(patience, the best epoch, the restored weights) and evaluation in eval mode.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnx.activations import Sigmoid, Tanh
from nnx.layers import Dense, Dropout
from nnx.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnx.network import Network
from nnx.optimizers import SGD, Adam
from nnx.schedules import Exponential, StepDecay
from nnx.trainer import Callback, EarlyStopping, TrainConfig, Trainer

REL = 1e-10  # float64 throughout: only summation order differs


def network(layers, weights: dict[str, np.ndarray], in_features: int) -> Network:
    net = Network(layers, in_features, rng=np.random.default_rng(0), dtype=np.float64)
    for key, value in weights.items():
        net.named_params()[key][...] = value
    return net


def norm(a) -> float:
    return float(np.sqrt(np.sum(np.square(a))))


def approx(value):
    return pytest.approx(value, rel=REL, abs=1e-14)


# -- a regression run: tanh hidden layer, MSE, SGD with a step schedule ---------------------
# 4 samples in batches of 3: every epoch ends with a partial batch of 1.
X = np.array([[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8], [1.0, 1.0]])
Y = np.array([[0.7], [-0.2], [0.4], [1.1]])
X_VAL = np.array([[0.0, 0.5], [1.2, -0.4], [-1.0, -1.0]])
Y_VAL = np.array([[0.3], [0.1], [-0.6]])
W0 = np.array([[0.4, -0.6], [0.3, 0.8]])
B0 = np.array([0.1, -0.2])
W2 = np.array([[0.5], [-0.7]])
B2 = np.array([0.05])


def regression_by_hand(epochs: int, batch: int, lr: float, gamma: float):
    """The history the trainer must log, computed from the formulas."""
    w0, b0, w2, b2 = W0.copy(), B0.copy(), W2.copy(), B2.copy()
    history = []
    for epoch in range(epochs):
        rate = lr * gamma ** epoch  # StepDecay(step_size=1, gamma)
        start_w0, start_w2 = w0.copy(), w2.copy()
        total, seen = 0.0, 0
        for i in range(0, len(X), batch):
            x, y = X[i:i + batch], Y[i:i + batch]
            h = np.tanh(x @ w0 + b0)
            out = h @ w2 + b2
            total += np.mean((out - y) ** 2) * len(x)
            seen += len(x)
            d_out = 2 * (out - y) / out.size
            g_w2, g_b2 = h.T @ d_out, d_out.sum(axis=0)
            d_z = (d_out @ w2.T) * (1 - h ** 2)
            g_w0, g_b0 = x.T @ d_z, d_z.sum(axis=0)
            grads = (g_w0, g_b0, g_w2, g_b2)  # the last batch's are logged
            w0, b0 = w0 - rate * g_w0, b0 - rate * g_b0
            w2, b2 = w2 - rate * g_w2, b2 - rate * g_b2
        val = np.tanh(X_VAL @ w0 + b0) @ w2 + b2
        residual = np.sum((Y_VAL - val) ** 2)
        history.append({
            "epoch": epoch + 1, "loss": total / seen, "lr": rate,
            "grad_norm": np.sqrt(sum(np.sum(g ** 2) for g in grads)),
            "layer0.grad_norm": norm(grads[0]), "layer2.grad_norm": norm(grads[2]),
            "layer0.weight_norm": norm(w0), "layer2.weight_norm": norm(w2),
            "layer0.update_ratio": norm(w0 - start_w0) / norm(w0),
            "layer2.update_ratio": norm(w2 - start_w2) / norm(w2),
            "val_loss": np.mean((val - Y_VAL) ** 2),
            "val_rmse": np.sqrt(np.mean((val - Y_VAL) ** 2)),
            "val_r2": 1 - residual / np.sum((Y_VAL - Y_VAL.mean()) ** 2),
        })
    return history, (w0, b0, w2, b2)


def regression_trainer(epochs=3, batch=3, lr=0.3, gamma=0.5, **config) -> Trainer:
    net = network([Dense(2), Tanh(), Dense(1)], {"0.W": W0, "0.b": B0, "2.W": W2, "2.b": B2}, 2)
    return Trainer(net, MeanSquaredError(), SGD(lr=lr), schedule=StepDecay(1, gamma),
                   config=TrainConfig(epochs=epochs, batch_size=batch, shuffle=False,
                                      progress=False, **config), task="regression")


def test_every_logged_regression_metric_equals_the_hand_computation():
    trainer = regression_trainer()
    last = trainer.fit(X, Y, X_VAL, Y_VAL)
    expected, (w0, b0, w2, b2) = regression_by_hand(3, 3, 0.3, 0.5)
    assert trainer.epoch == 3 and trainer.step == 6  # 2 batches (3 + 1) per epoch
    assert [h["epoch"] for h in trainer.history] == [1, 2, 3]
    for logged, wanted in zip(trainer.history, expected):
        for key, value in wanted.items():
            assert logged[key] == approx(value), (logged["epoch"], key)
    assert all(last[k] == trainer.history[-1][k] for k in expected[-1] if k != "epoch")
    params = trainer.network.named_params()
    for key, value in (("0.W", w0), ("0.b", b0), ("2.W", w2), ("2.b", b2)):
        np.testing.assert_allclose(params[key], value, rtol=REL)


def test_the_learning_rate_of_each_epoch_is_the_schedule_times_the_configured_rate():
    trainer = regression_trainer(epochs=4, lr=0.2, gamma=0.25)
    trainer.fit(X, Y)
    assert [h["lr"] for h in trainer.history] == approx([0.2, 0.05, 0.0125, 0.003125])
    assert trainer.optimizer.config()["lr"] == 0.2  # the configured rate is kept
    assert [trainer.learning_rate(e) for e in range(4)] == [h["lr"] for h in trainer.history]


def test_log_every_reports_every_nth_epoch_and_the_last():
    trainer = regression_trainer(epochs=7, gamma=1.0, log_every=3)
    trainer.fit(X, Y, X_VAL, Y_VAL)
    expected = regression_by_hand(7, 3, 0.3, 1.0)[0]
    assert [h["epoch"] for h in trainer.history] == [3, 6, 7]
    for logged in trainer.history:
        wanted = expected[logged["epoch"] - 1]
        assert logged["loss"] == approx(wanted["loss"])
        assert logged["grad_norm"] == approx(wanted["grad_norm"])
        assert logged["val_rmse"] == approx(wanted["val_rmse"])
    assert trainer.epoch == 7 and trainer.step == 14


# -- a classification run: softmax cross-entropy, Adam with L2 and clipping -----------------
XC = np.array([[0.2, 0.9], [1.0, -0.5], [-0.8, 0.1], [0.5, 0.5], [-0.3, -1.2]])
YC = np.array([0, 1, 2, 0, 1])
XC_VAL = np.array([[0.9, -0.2], [-0.5, 0.4], [0.1, 0.1]])
YC_VAL = np.array([1, 2, 0])
V0 = np.array([[0.6, -0.4, 0.2, 0.9], [-0.3, 0.5, 0.7, -0.8]])
C0 = np.array([0.0, 0.1, -0.1, 0.2])
V2 = np.array([[0.3, -0.2, 0.5], [0.8, 0.1, -0.6], [-0.4, 0.7, 0.2], [0.1, -0.5, 0.4]])
C2 = np.array([0.05, -0.05, 0.0])


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax_ce(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    d_logits = probs.copy()
    d_logits[np.arange(len(labels)), labels] -= 1
    return loss, d_logits / len(labels)


def classification_by_hand(epochs, batch, lr, gamma, wd, clip, b1=0.9, b2=0.999, eps=1e-8):
    params = [V0.copy(), C0.copy(), V2.copy(), C2.copy()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t, clipped, history = 0, 0, []
    for epoch in range(epochs):
        rate = lr * gamma ** epoch  # Exponential(gamma)
        start = [params[0].copy(), params[2].copy()]
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(XC), batch):
            x, y = XC[i:i + batch], YC[i:i + batch]
            w0, c0, w2, c2 = params
            h = sigmoid(x @ w0 + c0)
            logits = h @ w2 + c2
            loss, d = softmax_ce(logits, y)
            total += loss * len(x)
            correct += int(np.sum(logits.argmax(axis=1) == y))  # before the step
            seen += len(x)
            d_z = (d @ w2.T) * h * (1 - h)
            grads = [x.T @ d_z, d_z.sum(axis=0), h.T @ d, d.sum(axis=0)]
            raw = [g.copy() for g in grads]  # logged: the loss's gradient, as backward gave it
            total_norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
            if total_norm > clip:
                grads = [g * clip / total_norm for g in grads]
                clipped += 1
            t += 1
            for k in range(4):
                # L2 on the weights (params 0 and 2) only: biases are not decayed (issue 13)
                g = grads[k] + (wd * params[k] if k in (0, 2) else 0.0)
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g ** 2
                params[k] = params[k] - rate * (m[k] / (1 - b1 ** t)) / (
                    np.sqrt(v[k] / (1 - b2 ** t)) + eps)
        w0, c0, w2, c2 = params
        val_logits = sigmoid(XC_VAL @ w0 + c0) @ w2 + c2
        history.append({
            "epoch": epoch + 1, "loss": total / seen, "accuracy": correct / seen, "lr": rate,
            "grad_norm": np.sqrt(sum(np.sum(g ** 2) for g in raw)),
            "layer0.grad_norm": norm(raw[0]), "layer2.grad_norm": norm(raw[2]),
            "layer0.weight_norm": norm(w0), "layer2.weight_norm": norm(w2),
            "layer0.update_ratio": norm(w0 - start[0]) / norm(w0),
            "layer2.update_ratio": norm(w2 - start[1]) / norm(w2),
            "val_loss": softmax_ce(val_logits, YC_VAL)[0],
            "val_accuracy": float(np.mean(val_logits.argmax(axis=1) == YC_VAL)),
        })
    return history, params, clipped


def classification_trainer(epochs=3, batch=2, lr=0.05, gamma=0.5, wd=0.01, clip=0.6):
    net = network([Dense(4), Sigmoid(), Dense(3)], {"0.W": V0, "0.b": C0, "2.W": V2, "2.b": C2},
                  2)
    return Trainer(net, SoftmaxCrossEntropy(), Adam(lr=lr, weight_decay=wd, clip_norm=clip),
                   schedule=Exponential(gamma),
                   config=TrainConfig(epochs=epochs, batch_size=batch, shuffle=False,
                                      progress=False))


def test_every_logged_classification_metric_equals_the_hand_computation():
    # Adam uses the gradient buffer as scratch, clipping and L2 change it in place: the logged
    # gradient norms are the loss's gradient all the same (taken before the step).
    trainer = classification_trainer()
    trainer.fit(XC, YC, XC_VAL, YC_VAL)
    expected, params, clipped = classification_by_hand(3, 2, 0.05, 0.5, 0.01, 0.6)
    assert 0 < clipped < 9  # the clip bound is active on some steps, not on all
    assert trainer.epoch == 3 and trainer.step == 9  # 2 + 2 + 1 per epoch
    for logged, wanted in zip(trainer.history, expected, strict=True):
        for key, value in wanted.items():
            assert logged[key] == approx(value), (logged["epoch"], key)
    for key, value in zip(("0.W", "0.b", "2.W", "2.b"), params):
        np.testing.assert_allclose(trainer.network.named_params()[key], value, rtol=1e-9)


@pytest.mark.parametrize("clip", [0.3, 1e9], ids=["clipping", "bound-never-reached"])
def test_clip_norm_bounds_every_step_by_the_gradients_norm(clip):
    """A property: with clipping, no step of plain SGD moves the weights by more than
    lr * clip_norm; a bound that is never reached changes nothing."""
    lr = 0.1
    net = network([Dense(4), Sigmoid(), Dense(3)], {"0.W": V0, "0.b": C0, "2.W": V2, "2.b": C2},
                  2)
    free = network([Dense(4), Sigmoid(), Dense(3)], {"0.W": V0, "0.b": C0, "2.W": V2, "2.b": C2},
                   2)
    loss = SoftmaxCrossEntropy()
    clipped_sgd, plain_sgd = SGD(lr=lr, clip_norm=clip), SGD(lr=lr)
    for _ in range(5):
        raw = []
        for model, opt in ((net, clipped_sgd), (free, plain_sgd)):
            loss.forward(model.forward(XC), YC)
            model.backward(loss.backward())
            raw.append(float(np.linalg.norm(model.flat_grads)))
            before = model.flat_params.copy()
            opt.step(model.params, model.grads)
            moved = float(np.linalg.norm(model.flat_params - before))
            if opt is clipped_sgd:
                assert moved == approx(lr * min(raw[0], clip))
        if clip > 1e6:
            np.testing.assert_array_equal(net.flat_params, free.flat_params)
    assert clip > 1e6 or not np.allclose(net.flat_params, free.flat_params)


# -- early stopping -----------------------------------------------------------------------
class Scripted(Callback):
    """Puts a scripted ``score`` among the epoch's metrics (it runs before early stopping)."""

    def __init__(self, scores, key="score"):
        self.scores, self.key = scores, key

    def on_epoch_end(self, trainer, epoch, logs):
        logs[self.key] = self.scores[epoch]


class Weights(Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def __init__(self):
        self.by_epoch = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.by_epoch.append(trainer.network.flat_params.copy())


def stopped_run(scores, patience, min_delta=0.0, mode="min", restore_best=True):
    stopping = EarlyStopping("score", patience=patience, min_delta=min_delta, mode=mode,
                             restore_best=restore_best)
    weights = Weights()
    trainer = regression_trainer(epochs=len(scores), gamma=1.0)
    trainer.callbacks = [Scripted(scores), weights, stopping]
    trainer.fit(X, Y)
    return trainer, stopping, weights.by_epoch


def test_early_stopping_by_hand_patience_best_epoch_and_restored_weights():
    # best 3 at epoch 2; epochs 3 and 4 do not improve on it (a tie is no improvement)
    trainer, stopping, weights = stopped_run([5, 3, 4, 3, 1, 0], patience=2)
    assert trainer.epoch == 4 and len(weights) == 4
    assert [h["epoch"] for h in trainer.history] == [1, 2, 3, 4]
    assert stopping.best_epoch == 1 and stopping.best == 3
    assert trainer.stopped_early == "early stop at epoch 4: score best 3 at epoch 2"
    np.testing.assert_array_equal(trainer.network.flat_params, weights[1])
    assert not np.array_equal(weights[1], weights[3])  # restoring changed something


def test_early_stopping_min_delta_and_mode_max():
    # improvements must beat the best by more than min_delta: 4.6 does not (5 - 0.5), 4.4 does
    trainer, stopping, weights = stopped_run([5, 4.6, 4.4, 4.0, 4.1, 3.0], patience=2,
                                             min_delta=0.5)
    assert trainer.epoch == 5 and stopping.best_epoch == 2
    np.testing.assert_array_equal(trainer.network.flat_params, weights[2])
    # maximising (an accuracy): the largest value is the best
    trainer, stopping, weights = stopped_run([0.5, 0.9, 0.7, 0.8, 0.95], patience=3, mode="max")
    assert trainer.epoch == 5 and stopping.best_epoch == 4  # 0.95 came in time
    np.testing.assert_array_equal(trainer.network.flat_params, weights[4])
    assert trainer.stopped_early == ""  # it ran out of epochs, it did not stop early


def test_early_stopping_without_restore_keeps_the_last_weights():
    trainer, stopping, weights = stopped_run([5, 3, 4, 4], patience=2, restore_best=False)
    assert trainer.epoch == 4 and stopping.best_epoch == 1
    np.testing.assert_array_equal(trainer.network.flat_params, weights[3])
    assert trainer.kept_epoch is None


def final_metrics_of(scores, patience, restore_best):
    stopping = EarlyStopping("val_loss", patience=patience, restore_best=restore_best)
    trainer = regression_trainer(epochs=len(scores), gamma=1.0)
    trainer.callbacks = [Scripted(scores, "val_loss"), stopping]
    return trainer, trainer.fit(X, Y, X_VAL, Y_VAL)


def test_restored_weights_come_with_their_epochs_metrics_as_the_final_ones():
    # by hand: the scripted val_loss is best (1) at epoch 2 of 4; restored, the final
    # metrics (the summary's, the objective's) are epoch 2's row of the history, not epoch 4's
    trainer, final = final_metrics_of([3, 1, 2, 2.5], patience=10, restore_best=True)
    assert trainer.epoch == 4 and trainer.kept_epoch == 2
    assert final == {k: v for k, v in trainer.history[1].items() if k != "epoch"}
    assert final["val_loss"] == 1 and final["loss"] == trainer.history[1]["loss"]
    # without restore the last epoch's weights stay, and so do its metrics
    trainer, final = final_metrics_of([3, 1, 2, 2.5], patience=10, restore_best=False)
    assert trainer.kept_epoch is None and final["val_loss"] == 2.5


def test_the_final_validation_metrics_are_those_of_the_weights_kept():
    """A property on a real run: whichever epoch early stopping keeps, evaluating the network
    it leaves gives the final validation metrics again, and the objective is one of them."""
    from nnx import experiment
    from nnx.run import compose

    cfg = compose(["experiment=spirals", "trainer.epochs=12", "tracking=none",
                   "trainer.early_stopping.patience=12", "trainer.early_stopping.monitor=val_loss",
                   "trainer.log_every=1", "optimizer.lr=0.3"])  # val_loss goes up and down
    result = experiment.train(cfg)
    trainer, final = result["trainer"], result["metrics"]
    best = min(trainer.history, key=lambda row: row["val_loss"])
    assert trainer.kept_epoch == best["epoch"] and best["epoch"] != trainer.epoch
    *_, x_val, y_val = experiment.fit_data(cfg, result["dataset"], trainer.loss, 3)
    again = trainer.evaluate(x_val, y_val)
    assert again == {"val_loss": approx(final["val_loss"]),
                     "val_accuracy": approx(final["val_accuracy"])}
    assert final["objective"] == final["val_loss"] == best["val_loss"]


def reference_stop(scores, patience, min_delta):
    """(epochs run, best epoch) by the definition: stop at the first epoch that is the
    patience-th in a row without beating the best so far by more than min_delta."""
    best, best_epoch, since = np.inf, -1, 0
    for epoch, score in enumerate(scores):
        if score < best - min_delta:
            best, best_epoch, since = score, epoch, 0
        else:
            since += 1
            if since == patience:
                return epoch + 1, best_epoch
    return len(scores), best_epoch


def test_early_stopping_property_over_random_score_sequences():
    rng = np.random.default_rng(20)
    for _ in range(60):
        n = int(rng.integers(2, 9))
        scores = list(np.round(rng.uniform(0, 3, n), 1))  # rounded: ties happen
        patience = int(rng.integers(1, 4))
        min_delta = float(rng.choice([0.0, 0.2]))
        trainer, stopping, weights = stopped_run(scores, patience, min_delta)
        epochs, best = reference_stop(scores, patience, min_delta)
        assert (trainer.epoch, stopping.best_epoch) == (epochs, best), (scores, patience)
        np.testing.assert_array_equal(trainer.network.flat_params, weights[best])


def test_early_stopping_on_val_loss_returns_the_network_of_the_best_epoch():
    """On a real metric: the network fit returns scores the best val_loss of the history."""
    trainer = regression_trainer(epochs=40, lr=1.5, gamma=1.0)  # lr high enough to bounce
    trainer.callbacks = [EarlyStopping("val_loss", patience=3)]
    trainer.fit(X, Y, X_VAL, Y_VAL)
    val = [h["val_loss"] for h in trainer.history]
    assert trainer.epoch < 40 and val[-1] > min(val)  # it stopped after worse epochs
    assert trainer.evaluate(X_VAL, Y_VAL)["val_loss"] == min(val)


# -- evaluation is in eval mode -----------------------------------------------------------
def test_validation_metrics_are_those_of_the_network_without_dropout():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    x_val, y_val = rng.normal(size=(15, 2)), rng.normal(size=(15, 1))
    net = Network([Dense(16), Tanh(), Dropout(0.5), Dense(1)], 2, rng=np.random.default_rng(1))
    trainer = Trainer(net, MeanSquaredError(), SGD(lr=0.05),
                      config=TrainConfig(epochs=3, batch_size=8, progress=False),
                      rng=np.random.default_rng(2), task="regression")
    trainer.fit(x, y, x_val, y_val)
    # the same weights in a network with no dropout layer, by hand
    p = net.named_params()
    out = np.tanh(x_val @ p["0.W"] + p["0.b"]) @ p["3.W"] + p["3.b"]
    logged = trainer.history[-1]
    assert logged["val_loss"] == approx(np.mean((out - y_val) ** 2))
    assert logged["val_rmse"] == approx(np.sqrt(np.mean((out - y_val) ** 2)))
    # and evaluation leaves the network training: dropout is on for the next step
    assert net.training and all(layer.training for layer in net.layers)
    a, b = net.forward(x_val).copy(), net.forward(x_val).copy()
    assert not np.array_equal(a, b)
