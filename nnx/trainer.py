"""The training loop: forward, loss, backward, optimizer step, written out by hand.

    for epoch in range(epochs):
        for xb, yb in batches:                      # seeded shuffling
            out = network.forward(xb)               # feedforward
            loss = loss_fn.forward(out, yb)
            network.backward(loss_fn.backward())    # backpropagation (chain rule)
            optimizer.step(network.params, network.grads)   # gradient descent

Around that loop: learning-rate schedules (each epoch sets ``optimizer.lr``, the rate its
steps use, from the configured rate and the schedule), metrics per epoch, callbacks (early
stopping, non-finite guard), a progress bar that stays quiet off a terminal, and a tracker.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from nnx import metrics as M
from nnx.module import all_finite
from nnx.tracking import NullTracker, Tracker


class NonFiniteError(FloatingPointError):
    """The loss, a gradient or a weight became NaN or inf."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after finishing (and checkpointing) the current epoch."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


class StopRequest:
    """Set by a signal handler; the trainer stops at the end of the current epoch.

    Stopping at an epoch boundary means the checkpoint written then resumes bit-identically.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.exit_code = 0

    def request(self, reason: str, exit_code: int) -> None:
        self.reason, self.exit_code = reason, exit_code

    def clear(self) -> None:
        self.reason, self.exit_code = None, 0


STOP = StopRequest()


class Callback:
    """Hooks into the loop; set ``trainer.stop_training = True`` to stop after this epoch."""

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_train_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        pass

    def state(self) -> dict | None:
        """What a checkpoint keeps so that a resumed run goes on as if never stopped: JSON
        values and weight-shaped arrays. None: nothing to keep."""
        return None

    def load_state(self, state: dict) -> None:
        """Take back what ``state`` returned (on resume, before ``on_train_start``)."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    optionally restore the best weights. Restored, the run's final metrics (what ``fit``
    returns: the summary, the objective, a sweep's score) are the best epoch's, the metrics of
    the weights kept; ``trainer.kept_epoch`` says which epoch that was."""

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if mode == "auto":
            mode = "max" if M.higher_is_better(monitor) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if mode == "min" else -1.0
        self.restore_best = restore_best
        self.best, self.best_epoch, self.wait, self.best_weights = math.inf, -1, 0, None
        self.best_buffers = self.best_logs = None
        self._resumed = False

    def on_train_start(self, trainer):
        if self._resumed:  # the checkpoint's best and patience count go on
            self._resumed = False
            return
        self.best, self.best_epoch, self.wait, self.best_weights = math.inf, -1, 0, None
        self.best_buffers = self.best_logs = None

    def state(self):
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                 "best_weights": self.best_weights, "best_logs": self.best_logs}
        if self.best_buffers is not None:  # only networks with buffers (batch norm) have them
            state["best_buffers"] = self.best_buffers
        return state

    def load_state(self, state):
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.wait, self.best_weights = int(state["wait"]), state.get("best_weights")
        self.best_buffers = state.get("best_buffers")  # absent in checkpoints before buffers
        best_logs = state.get("best_logs")  # absent in checkpoints written before nnx kept it
        self.best_logs = None if best_logs is None else {str(k): float(v)
                                                          for k, v in dict(best_logs).items()}
        self._resumed = True

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"early stopping monitors {self.monitor!r}, which is not among "
                             f"the metrics: {sorted(logs)}")
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_logs = {k: float(v) for k, v in logs.items()}
            if self.restore_best:  # the weights and the state they were trained with
                self.best_weights = trainer.network.flat_params.copy()
                buffers = trainer.network.flat_buffers
                self.best_buffers = buffers.copy() if buffers.size else None
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.stopped_early = f"early stop at epoch {epoch + 1}: {self.monitor} " \
                    f"best {self.sign * self.best:.4g} at epoch {self.best_epoch + 1}"

    def on_train_end(self, trainer, logs):
        if self.restore_best and self.best_weights is not None:
            trainer.network.flat_params[...] = self.best_weights
            if self.best_buffers is not None:  # batch norm's running statistics of that epoch
                trainer.network.flat_buffers[...] = self.best_buffers
            if self.best_logs is not None:  # the metrics of the weights now in the network
                logs.update(self.best_logs)
                trainer.kept_epoch = self.best_epoch + 1


@dataclass
class TrainConfig:
    """The loop's knobs (``trainer.*`` in the Hydra config)."""

    epochs: int = 10
    batch_size: int = 32  # 0 = full batch
    shuffle: bool = True
    limit_batches: int = 0  # > 0: at most this many batches per epoch (debug runs)
    log_every: int = 1  # report metrics every N epochs (and always on the last)
    decision_threshold: float = 0.5  # single-output classification: class 1 when output > this
    progress: bool = True  # a progress bar when stderr is a terminal
    callbacks: list = field(default_factory=list)
    checkpoint_dir: str | None = None  # where last.npz is written
    checkpoint_every: int = 0  # epochs between checkpoints (0 = only at the end and on stop)


class Trainer:
    """Runs the loop for a network, a loss, an optimizer and an optional schedule."""

    def __init__(self, network, loss, optimizer, *, schedule=None, config: TrainConfig | None = None,
                 rng: np.random.Generator | None = None, task: str = "classification",
                 tracker: Tracker | None = None) -> None:
        self.network, self.loss, self.optimizer, self.schedule = network, loss, optimizer, schedule
        self.config = config or TrainConfig()
        if self.config.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.config.epochs}")
        if self.config.batch_size < 0:
            raise ValueError(f"batch_size must be >= 0 (0 = full batch), got {self.config.batch_size}")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        self.rng = rng if rng is not None else np.random.default_rng()
        # Every random stream training consumes, saved in checkpoints (the network's dropout
        # layers draw from the stream they were built with: add it as "network").
        self.rngs: dict[str, np.random.Generator] = {"train": self.rng}
        self.task = task
        self.tracker = tracker or NullTracker()
        self.callbacks = list(self.config.callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed
        self.stop_training = False
        self.stopped_early = ""
        self.kept_epoch: int | None = None  # the epoch whose weights early stopping restored
        self.last_checkpoint: tuple[str, int] | None = None  # (path, epoch) written or loaded
        self.initial_loss: float | None = None  # the first batch's, before any update
        self.checkpoint_extra: dict = {}  # JSON kept in checkpoints (the run's config)
        self.resume_changes: list[dict] = []  # config changes applied on resume (the record)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, y: np.ndarray, prefix: str = "val_") -> dict[str, float]:
        """Loss and task metrics on a whole set, in eval mode."""
        out = self.network.predict(x)
        logs = {f"{prefix}loss": self.loss.forward(out, y)}
        if self.task == "classification":
            logs[f"{prefix}accuracy"] = M.accuracy(out, y, self.config.decision_threshold)
        else:
            logs[f"{prefix}rmse"] = M.rmse(out, y)
            logs[f"{prefix}r2"] = M.r2(out, y)
        return logs

    # -- training ------------------------------------------------------------------------
    def learning_rate(self, epoch: int) -> float:
        """The rate of ``epoch`` (from 0): the optimizer's configured ``lr`` times the schedule's
        factor. Set as ``optimizer.lr`` before the epoch, so ``optimizer.lr`` is the one holder
        of the rate in use; the configured one stays in ``optimizer.config()["lr"]``."""
        configured = self.optimizer.config()["lr"]
        return configured * self.schedule(epoch, self.config.epochs) if self.schedule else configured

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> dict[str, float]:
        """Train for ``config.epochs`` epochs; returns the last epoch's metrics (with early
        stopping's restore: the metrics of the epoch whose weights were kept)."""
        from nnx.data import Batches

        cfg, net = self.config, self.network
        x = net.check_input(x)  # validated once here, so the loop can skip the checks
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if x_val is not None:
            x_val = net.check_input(x_val)
        batches = Batches(x, y, cfg.batch_size, self.rng if cfg.shuffle else None)
        for cb in self.callbacks:
            cb.on_train_start(self)
        logs: dict[str, float] = {}
        epochs = range(self.epoch, cfg.epochs)
        bar = _progress(epochs, cfg.progress)
        if cfg.checkpoint_dir:
            from nnx.checkpoint import ensure_dir

            ensure_dir(cfg.checkpoint_dir)
        net.train()
        for epoch in bar:
            # Overflow is reported once, by the non-finite guard, not as numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                logs = self._train_epoch(batches, epoch)
            last = epoch == cfg.epochs - 1
            if x_val is not None and (last or (epoch + 1) % cfg.log_every == 0 or self.callbacks):
                logs.update(self.evaluate(x_val, y_val))
            self.epoch = epoch + 1
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, logs)
            # Read the signal flag once: a signal arriving later in this block is seen next epoch,
            # so the checkpoint claimed in the message below is always the one written here.
            signalled, exit_code = STOP.reason, STOP.exit_code
            stopping = last or self.stop_training or signalled is not None
            if stopping or (epoch + 1) % cfg.log_every == 0:
                self.history.append({"epoch": epoch + 1, **logs})
                self.tracker.log_metrics(logs, step=epoch + 1)
            if cfg.checkpoint_dir and (stopping or (
                    cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0)):
                self.tracker.log_checkpoint(self.save_checkpoint())
            if bar is not epochs:
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if "loss" in k or "acc" in k})
            if signalled is not None:
                self.tracker.flush()
                raise TrainingInterrupted(
                    f"{signalled} after epoch {self.epoch}"
                    + (f"; checkpoint {self.checkpoint_path}" if cfg.checkpoint_dir else ""),
                    exit_code)
            if self.stop_training:
                break
        for cb in self.callbacks:
            cb.on_train_end(self, logs)
        self.tracker.flush()
        return logs

    @property
    def checkpoint_path(self):
        from pathlib import Path

        return Path(self.config.checkpoint_dir) / "last.npz"

    def save_checkpoint(self, path=None):
        """Write the state after the last completed epoch (see nnx.checkpoint)."""
        from nnx import checkpoint

        path = path or self.checkpoint_path
        if not np.isfinite(self.network.flat_params).all():  # never replace a good one
            bad = [layer.name for layer in self.network.layers
                   if any(not np.isfinite(p).all() for p in layer.params.values())]
            raise NonFiniteError(f"weights of {', '.join(bad)} are NaN or inf after epoch "
                                 f"{self.epoch}; checkpoint {path} was not overwritten")
        written = checkpoint.save(path, self, self.rngs, extra=self.checkpoint_extra)
        self.last_checkpoint = (str(written), self.epoch)
        return written

    def load_checkpoint(self, path) -> dict:
        """Continue from a checkpoint: weights, optimizer, RNGs, epoch, step, history."""
        from nnx import checkpoint

        meta = checkpoint.load(path, self, self.rngs)
        self.last_checkpoint = (str(path), self.epoch)
        return meta

    def _train_epoch(self, batches, epoch: int) -> dict[str, float]:
        net, loss_fn, opt = self.network, self.loss, self.optimizer
        opt.lr = self.learning_rate(epoch)
        # Weight statistics cost a copy of every weight: only on epochs that are reported.
        reported = (epoch + 1) % self.config.log_every == 0 or epoch == self.config.epochs - 1
        start_weights = net.flat_params.copy() if reported else None
        started = time.perf_counter()
        total_loss, total_correct, seen = 0.0, 0, 0
        classify = self.task == "classification" and reported
        n_batches = len(batches)
        if self.config.limit_batches:
            n_batches = min(n_batches, self.config.limit_batches)
        grad_stats: dict[str, float] = {}
        for i, (xb, yb) in enumerate(batches):
            if self.config.limit_batches and i >= self.config.limit_batches:
                break
            out = net.forward(xb, check=False)
            value = loss_fn.forward(out, yb)
            if self.initial_loss is None:  # the scale nnx.divergence compares with
                self.initial_loss = value
            if classify:  # accuracy on the fly, from the outputs we already have
                total_correct += int(np.sum(
                    M.labels_from_outputs(out, self.config.decision_threshold)
                    == M.labels_from_targets(yb)))
            net.backward(loss_fn.backward())
            if not (math.isfinite(value) and all_finite(net.flat_grads)):
                self._check_finite(epoch, i, f"the loss is {value}" if not math.isfinite(value)
                                   else "a gradient is NaN or inf")
            if reported and i == n_batches - 1:
                # Before the step: optimizers clip, add weight decay to and use the gradient
                # buffer as scratch (Adam), so afterwards it holds something else.
                grad_stats = self._grad_stats()
            opt.step(net.params, net.grads, net.decay)  # decay: which entries are decayed
            self.step += 1
            if not all_finite(net.flat_params):  # checked before the next forward
                self._check_finite(epoch, i, "a weight became NaN or inf in the update",
                                   step_done=True)
            total_loss += value * len(xb)
            seen += len(xb)
        seconds = time.perf_counter() - started
        logs = {"loss": total_loss / seen, "lr": opt.lr, "epoch_seconds": seconds,
                "samples_per_second": seen / seconds if seconds > 0 else float("inf")}
        if classify:  # training accuracy is measured on reported epochs only
            logs["accuracy"] = total_correct / seen
        if reported:
            logs.update(grad_stats)
            logs.update(self._weight_stats(start_weights))
        return logs

    def _grad_stats(self) -> dict[str, float]:
        """Norms of the loss's gradient, whole and per layer weight ``W``, as backward left it
        (before clipping and weight decay)."""
        stats = {"grad_norm": float(np.linalg.norm(self.network.flat_grads))}
        for i, layer in enumerate(self.network.layers):
            if "W" in layer.grads:
                stats[f"layer{i}.grad_norm"] = float(np.linalg.norm(layer.grads["W"]))
        return stats

    def _weight_stats(self, start_weights: np.ndarray) -> dict[str, float]:
        """Per-layer weight norm and update/weight ratio over the epoch (with the last batch's
        gradient norms from ``_grad_stats``)."""
        stats = {}
        offset = 0
        for i, layer in enumerate(self.network.layers):
            for key, p in layer.params.items():
                before = start_weights[offset:offset + p.size]
                offset += p.size
                if key != "W":
                    continue
                norm = float(np.linalg.norm(p))
                stats[f"layer{i}.weight_norm"] = norm
                stats[f"layer{i}.update_ratio"] = (
                    float(np.linalg.norm(p.reshape(-1) - before)) / norm if norm > 0 else 0.0)
        return stats

    def _check_finite(self, epoch: int, batch: int | None, what: str,
                      step_done: bool = False) -> None:
        """Raise NonFiniteError naming the epoch, step and the layers with NaN or inf."""
        bad = []
        for layer in self.network.layers:
            for kind, arrays in (("gradient", layer.grads), ("weight", layer.params)):
                keys = [k for k, a in arrays.items() if not np.isfinite(a).all()]
                if keys:
                    bad.append(f"{layer.name} {kind} {', '.join(keys)}")
        step = self.step if step_done else self.step + 1
        where = f"; non-finite values in {'; '.join(bad)}" if bad else ""
        kept = ""
        if self.last_checkpoint is not None:
            kept = (f" The last good checkpoint (epoch {self.last_checkpoint[1]}) is kept: "
                    f"{self.last_checkpoint[0]}.")
        configured, rate = self.optimizer.config()["lr"], self.optimizer.lr
        lr = f"optimizer.lr is {configured:g}" + (
            f", {rate:g} in this epoch after the schedule" if rate != configured else "")
        raise NonFiniteError(
            f"training diverged at epoch {epoch + 1}, step {step} ("
            + ("at the end of the epoch" if batch is None else f"batch {batch + 1} of the epoch")
            + f"): {what}{where}. Try a lower learning rate ({lr}), gradient clipping "
            f"(optimizer.clip_norm) or standardised inputs.{kept}")


def _progress(epochs: range, enabled: bool):
    """A tqdm bar over epochs when stderr is a terminal; the plain range otherwise."""
    if not enabled or not sys.stderr.isatty() or len(epochs) < 2:
        return epochs
    from tqdm.auto import tqdm

    return tqdm(epochs, desc="epochs", unit="ep", leave=False)
