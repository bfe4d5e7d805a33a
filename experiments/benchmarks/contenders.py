"""What ``bench.py`` times: one object per contender, each with ``epoch()`` and ``accuracy()``.

Every contender trains the same network on the same float32 data: 784-256-128-10, ReLU,
softmax cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, no weight decay), batch 128,
a fresh shuffle every epoch. ``epoch()`` is one pass over the training set, nothing else.
Each library keeps its own default initialisation and shuffling stream.

This module sets no thread counts: ``bench.py`` does that before NumPy is imported.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import warnings

import numpy as np

HIDDEN = (256, 128)
BATCH = 128
LR = 1e-3
CLASSES = 10


# -- data ---------------------------------------------------------------------------------------
def load_fashion(limit_train: int = 0, dtype=np.float32):
    """Fashion-MNIST through nnx's own loader (never downloads): x float32 in [0, 1], y int64."""
    from nnx.datasets import FashionMNIST

    return FashionMNIST(download=False, limit_train=limit_train).load(
        np.random.default_rng(0), dtype=dtype)


def dataset_mib(ds) -> float:
    """Bytes of the four loaded arrays (x_train, y_train, x_test, y_test), in MiB."""
    return sum(a.nbytes for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)) / 2**20


def argmax_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(scores).argmax(axis=1) == y))


# -- the floor: the matrix products alone ------------------------------------------------------
class Floor:
    """The 8 matrix products of a training step, on preallocated arrays, batch after batch.

    Forward: x W1, h1 W2, h2 W3. Backward: h2^T g3, g3 W3^T, h1^T g2, g2 W2^T, x^T g1 (the
    first layer's input gradient is not needed). Inputs are the training set's rows in order
    (contiguous views, no gather); the gradients are fixed random arrays. Nothing else runs:
    no bias, no activation, no loss, no optimizer. Any trainer of this network does at least this.
    """

    key, label = "floor", "floor: the 8 matmuls alone"

    def __init__(self, x: np.ndarray, hidden=HIDDEN, batch: int = BATCH, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        dt = x.dtype
        sizes = [x.shape[1], *hidden, CLASSES]
        self.x, self.batch = np.ascontiguousarray(x), batch
        self.W = [(0.05 * rng.standard_normal((a, b))).astype(dt) for a, b in itertools.pairwise(sizes)]
        self.dW = [np.empty_like(w) for w in self.W]
        self.h = [np.empty((batch, s), dt) for s in sizes[1:]]  # layer outputs
        self.g = [(0.01 * rng.standard_normal((batch, s))).astype(dt) for s in sizes[1:]]
        self.dh = [np.empty((batch, s), dt) for s in sizes[1:-1]]  # input gradients of layers 2, 3

    def epoch(self) -> None:
        x, b, mm = self.x, self.batch, np.matmul
        (W1, W2, W3), (dW1, dW2, dW3) = self.W, self.dW
        for start in range(0, len(x), b):
            xb = x[start:start + b]
            m = len(xb)
            h1, h2, h3 = (h[:m] for h in self.h)
            g1, g2, g3 = (g[:m] for g in self.g)
            dh1, dh2 = (d[:m] for d in self.dh)
            mm(xb, W1, out=h1)
            mm(h1, W2, out=h2)
            mm(h2, W3, out=h3)
            mm(h2.T, g3, out=dW3)
            mm(g3, W3.T, out=dh2)
            mm(h1.T, g2, out=dW2)
            mm(g2, W2.T, out=dh1)
            mm(xb.T, g1, out=dW1)

    def accuracy(self, x_test, y_test):
        return None


# -- nnx ----------------------------------------------------------------------------------------
def nnx_parts(n_features: int, hidden=HIDDEN, dtype=np.float32, seed: int = 0):
    """Network, loss and optimizer as ``experiment=fashion_mnist_mlp`` builds them."""
    import nnx

    net = nnx.mlp(n_features, list(hidden), CLASSES, activation="relu",
                  initializer="he_uniform", rng=np.random.default_rng(seed), dtype=dtype)
    return net, nnx.build("losses", "softmax_cross_entropy"), nnx.build("optimizers", "adam", lr=LR)


class NnxLoop:
    """nnx's Python API in a plain loop: Batches, forward, loss, backward, optimizer step.

    ``forward(xb, check=False)``: the input checks are skipped per batch, as the Trainer does
    (it checks the whole set once). No metrics, no finite checks.
    """

    key, label = "nnx_loop", "nnx loop (Python API)"

    def __init__(self, x, y, hidden=HIDDEN, batch: int = BATCH, seed: int = 0) -> None:
        from nnx.data import Batches

        self.net, self.loss, self.opt = nnx_parts(x.shape[1], hidden, x.dtype, seed)
        self.batches = Batches(x, y, batch, np.random.default_rng([seed, 1]))

    def epoch(self) -> None:
        net, loss, opt = self.net, self.loss, self.opt
        for xb, yb in self.batches:
            out = net.forward(xb, check=False)
            loss.forward(out, yb)
            net.backward(loss.backward())
            opt.step(net.params, net.grads)

    def accuracy(self, x_test, y_test):
        return argmax_accuracy(self.net.predict(x_test), y_test)


def nnx_trainer(x, y, epochs: int, callbacks: list, seed: int = 0):
    """A ``Trainer`` set up as ``python -m nnx.run experiment=fashion_mnist_mlp`` sets it up
    (no validation set: evaluating is not part of an epoch here)."""
    from nnx.trainer import TrainConfig, Trainer

    net, loss, opt = nnx_parts(x.shape[1], HIDDEN, x.dtype, seed)
    config = TrainConfig(epochs=epochs, batch_size=BATCH, progress=False, callbacks=callbacks)
    return Trainer(net, loss, opt, config=config, rng=np.random.default_rng([seed, 2]),
                   task="classification")


class TrainerTurns:
    """A ``Trainer.fit`` that trains one epoch per call of ``epoch()``, so that it can take
    turns with the other contenders.

    ``fit`` runs in a thread of its own and, at every epoch end (a callback), hands control
    back and waits for its next turn: one thread works at a time. A turn is everything between
    two epoch ends: the previous epoch's bookkeeping after the callbacks (history, tracker),
    the training pass, and the validation pass when there is a validation set.
    ``fit_call`` runs ``fit`` (and whatever wraps it); ``finish()`` lets it run to its end.
    """

    def __init__(self, key: str, label: str, trainer, fit_call) -> None:
        from nnx.trainer import Callback

        owner = self
        self.key, self.label, self.trainer, self.note = key, label, trainer, ""
        self.epoch_seconds: list[float] = []
        self._go, self._done = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._finished = False

        class Pause(Callback):
            def on_epoch_end(self, trainer, epoch, logs):
                owner.epoch_seconds.append(logs["epoch_seconds"])
                owner._done.set()
                owner._go.wait()
                owner._go.clear()

        trainer.callbacks.append(Pause())

        def run():
            owner._go.wait()
            owner._go.clear()
            try:
                fit_call()
            except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
                owner._error = exc
            finally:
                owner._finished = True
                owner._done.set()

        self._thread = threading.Thread(target=run, name=key, daemon=True)
        self._thread.start()

    def epoch(self) -> None:
        if self._finished:
            raise RuntimeError(f"{self.key}: fit() has already ended")
        self._go.set()
        self._done.wait()
        self._done.clear()
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        if not self._finished:
            self._go.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def accuracy(self, x_test, y_test):
        return argmax_accuracy(self.trainer.network.predict(x_test), y_test)


def nnx_trainer_turns(x, y, epochs: int, seed: int = 0) -> TrainerTurns:
    trainer = nnx_trainer(x, y, epochs, [], seed)
    return TrainerTurns("nnx_trainer", "nnx Trainer (Python API)", trainer,
                        lambda: trainer.fit(x, y))


def nnx_tracked_turns(overrides: list[str]) -> TrainerTurns:
    """What ``python -m nnx.run <overrides>`` runs, in this process: the Hydra-composed
    config, ``nnx.experiment.build``, the MLflow tracker it picks, ``fit`` with the test set
    as validation set (as ``nnx.experiment.train`` does; its end-of-run model and plots are
    left out: they are no part of an epoch)."""
    import nnx.run
    from nnx import experiment

    cfg = nnx.run.compose(overrides)  # nnx's configs, from where nnx.locations finds them
    trainer, ds, out_features = experiment.build(cfg)
    dtype = np.dtype(cfg["dtype"])
    y_train = experiment.encode_targets(ds.y_train, ds, trainer.loss, out_features, dtype)
    y_test = experiment.encode_targets(ds.y_test, ds, trainer.loss, out_features, dtype)
    trainer.tracker = experiment.make_tracker(cfg)

    def fit():
        status = "FAILED"
        trainer.tracker.start(cfg, trainer, ds)
        try:
            trainer.fit(ds.x_train, y_train, ds.x_test, y_test)
            status = "FINISHED"
        finally:
            trainer.tracker.finish(status)

    return TrainerTurns("nnx_trainer_mlflow", "nnx Trainer + MLflow tracker (nnx.run's setup, "
                        "in process)", trainer, fit)


# -- scikit-learn -------------------------------------------------------------------------------
class Sklearn:
    """``MLPClassifier`` with the same network and Adam; one epoch = ``fit`` with
    ``max_iter=1, warm_start=True`` (its input validation included: that is how one gets an
    epoch out of it). ``alpha=0`` drops its default L2 penalty, which nnx does not add.
    A RandomState *instance* keeps the shuffle changing from epoch to epoch (an int seed
    would be re-applied on every ``fit``)."""

    key, label = "sklearn", "scikit-learn MLPClassifier"

    def __init__(self, x, y, seed: int = 0) -> None:
        from sklearn.neural_network import MLPClassifier

        self.x, self.y = x, y
        self.clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                                 alpha=0.0, batch_size=BATCH, learning_rate_init=LR, max_iter=1,
                                 warm_start=True, shuffle=True, tol=0.0,
                                 random_state=np.random.RandomState(seed))

    def epoch(self) -> None:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf.fit(self.x, self.y)

    @property
    def dtype(self) -> str:
        return str(self.clf.coefs_[0].dtype) if hasattr(self.clf, "coefs_") else "?"

    def accuracy(self, x_test, y_test):
        return float(np.mean(self.clf.predict(x_test) == y_test))


# -- PyTorch ------------------------------------------------------------------------------------
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_setup() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before any parallel work; one is enough then
        pass


class Torch:
    """PyTorch eager on the CPU: ``nn.Sequential`` of Linear/ReLU, ``F.cross_entropy``,
    batches gathered with ``X[perm[i:i + 128]]`` from tensors that share the NumPy arrays.

    ``fused=False``: ``torch.optim.Adam`` as it comes (the for-loop implementation on CPU);
    ``fused=True``: ``Adam(..., fused=True)``, or ``foreach=True`` where fused is refused.
    """

    def __init__(self, x, y, fused: bool, seed: int = 0) -> None:
        import torch
        from torch import nn

        torch_setup()
        torch.manual_seed(seed)
        self.key = "torch_fused_adam" if fused else "torch_adam"
        self.model = nn.Sequential(nn.Linear(x.shape[1], HIDDEN[0]), nn.ReLU(),
                                   nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
                                   nn.Linear(HIDDEN[1], CLASSES))
        self.X, self.Y = torch.from_numpy(x), torch.from_numpy(y)
        self.gen = torch.Generator().manual_seed(seed)
        self.note = ""
        if not fused:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
            self.label = "PyTorch CPU, Adam (default)"
            return
        try:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, fused=True)
            self._step_once()
            self.label = "PyTorch CPU, Adam fused=True"
        except (RuntimeError, ValueError) as exc:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, foreach=True)
            self.label = "PyTorch CPU, Adam foreach=True"
            self.note = f"fused=True refused on this CPU ({exc}); foreach=True instead"
        torch.manual_seed(seed)  # the probe step above must not change the starting weights
        for layer in self.model:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        self.opt.state.clear()

    def _step_once(self) -> None:
        import torch.nn.functional as F

        self.opt.zero_grad()
        F.cross_entropy(self.model(self.X[:2]), self.Y[:2]).backward()
        self.opt.step()

    def epoch(self) -> None:
        import torch
        import torch.nn.functional as F

        X, Y, model, opt = self.X, self.Y, self.model, self.opt
        perm = torch.randperm(len(X), generator=self.gen)
        for start in range(0, len(X), BATCH):
            idx = perm[start:start + BATCH]
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def accuracy(self, x_test, y_test):
        import torch

        with torch.no_grad():
            return argmax_accuracy(self.model(torch.from_numpy(x_test)).numpy(), y_test)


# -- the tutorial -------------------------------------------------------------------------------
TUTORIAL_X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=float)
TUTORIAL_Y = np.array([[0], [1], [1], [0]], dtype=float)
TUTORIAL_ITERATIONS = 1500


def tutorial_numpy(w0: np.ndarray, w1: np.ndarray, iterations: int = TUTORIAL_ITERATIONS):
    """The classic tutorial's bare NumPy network, starting from the weights given (updated
    in place): 3-4-1, sigmoid, no biases, full batch, lr 1. Its loss is nnx's ``sse``,
    L = sum((l2 - y)**2), whose gradient carries the factor 2 (the original code drops it)."""
    x, y = TUTORIAL_X, TUTORIAL_Y
    for _ in range(iterations):
        l1 = 1 / (1 + np.exp(-(x @ w0)))
        l2 = 1 / (1 + np.exp(-(l1 @ w1)))
        l2_delta = 2 * (l2 - y) * (l2 * (1 - l2))
        l1_delta = (l2_delta @ w1.T) * (l1 * (1 - l1))
        w1 -= l1.T @ l2_delta
        w0 -= x.T @ l1_delta
    return 1 / (1 + np.exp(-((1 / (1 + np.exp(-(x @ w0)))) @ w1)))  # after the last update


class TutorialNnx:
    """The README's tutorial snippet, as written there (``net.forward(x)`` checks its input)."""

    def __init__(self, seed: int = 0) -> None:
        import nnx

        self.net = nnx.Network([
            {"name": "dense", "units": 4, "bias": False, "initializer": "uniform01"}, "sigmoid",
            {"name": "dense", "units": 1, "bias": False, "initializer": "uniform01"}, "sigmoid",
        ], in_features=3, rng=np.random.default_rng(seed))
        self.loss = nnx.build("losses", "sse")
        self.optimizer = nnx.build("optimizers", "sgd", lr=1.0)
        self.start = self.net.flat_params.copy()

    def initial_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.net.layers[0].params["W"].copy(), self.net.layers[2].params["W"].copy()

    def run(self, iterations: int = TUTORIAL_ITERATIONS) -> np.ndarray:
        self.net.flat_params[...] = self.start  # every repeat trains from the same weights
        net, loss, optimizer, x, y = self.net, self.loss, self.optimizer, TUTORIAL_X, TUTORIAL_Y
        for _ in range(iterations):
            out = net.forward(x)
            loss.forward(out, y)
            net.backward(loss.backward())
            optimizer.step(net.params, net.grads)
        return net.predict(x)


# -- timing helpers -----------------------------------------------------------------------------
class Clock:
    """Wall and CPU seconds of one call: ``with Clock() as c: ...; c.wall, c.cpu``."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        return False


def median(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
