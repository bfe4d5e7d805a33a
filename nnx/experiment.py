"""``train(cfg) -> metrics``: a whole experiment from a plain configuration dict.

Hydra composes the dict (see ``nnx.run``); this module knows nothing of Hydra, so tests and
notebooks call it directly. Steps: check the config, load the data, build the network, the
loss, the optimizer and the schedule by registry name, train, evaluate on the test set.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from nnx.config import DATASET_KEYS, ConfigError, build_component, check_config
from nnx.divergence import DEFAULT_FACTOR, DivergenceGuard
from nnx.network import mlp
from nnx.pruning import trial_callbacks
from nnx.resume_check import check_resume, describe, recorded_config
from nnx.tracking import NullTracker, Tracker
from nnx.trainer import EarlyStopping, TrainConfig, Trainer


def load_data(cfg: dict, rng: np.random.Generator, dtype):
    """The dataset named by ``cfg.dataset``, standardised with training statistics if asked."""
    from nnx import data

    source = build_component("dataset", cfg["dataset"], skip=DATASET_KEYS)
    ds = source.load(rng, dtype=dtype)
    if cfg["dataset"].get("standardize", False):
        ds = data.standardize(ds)
    return ds


def target_kind(ds, loss) -> str:
    """How targets are encoded for ``loss`` on ``ds``: the first of the loss's declared kinds
    that fits the task (``nnx.losses.TARGET_KINDS``)."""
    fits = ("values",) if ds.task == "regression" else ("labels", "one_hot", "probabilities",
                                                        "binary")
    for kind in loss.targets:
        if kind in fits:
            return kind
    raise ConfigError(
        f"loss: {type(loss).__name__} takes targets {', '.join(loss.targets)}, but dataset "
        f"{ds.name!r} is a {ds.task} task needing one of {', '.join(fits)}; pick another loss "
        "or dataset")


def output_size(ds, loss) -> int:
    """Units of the output layer: one per class (a single one for binary 0/1 targets), or one
    per regression target."""
    if ds.task == "regression":
        return ds.y_train.reshape(len(ds.y_train), -1).shape[1]
    if target_kind(ds, loss) == "binary" and ds.n_classes == 2:
        return 1
    return int(ds.n_classes)


def encode_targets(y: np.ndarray, ds, loss, out_features: int, dtype) -> np.ndarray:
    """Targets in the form the loss declares: labels, a 0/1 column, one-hot rows, or values."""
    kind = target_kind(ds, loss)
    if kind == "values":
        return y.astype(dtype).reshape(len(y), -1)
    if kind == "labels":
        return y.astype(np.int64)
    if out_features == 1:
        return y.astype(dtype).reshape(-1, 1)
    from nnx.data import one_hot

    return one_hot(y, out_features, dtype)


def make_tracker(cfg: dict) -> Tracker:
    """The tracker that ``cfg.tracking.name`` picks (mlflow is imported only when chosen)."""
    tracking = cfg.get("tracking") or {"name": "none"}
    if tracking.get("name", "none") == "none":
        return NullTracker()
    if tracking["name"] == "mlflow":
        from nnx.mlflow_tracker import MlflowTracker

        return MlflowTracker.from_config(cfg)
    raise ConfigError(f"tracking.name: expected 'mlflow' or 'none', got {tracking['name']!r}")


def build(cfg: dict):
    """Check ``cfg``, load data and build every component; returns a ready Trainer and data."""
    check_config(cfg)
    dtype = np.dtype(cfg["dtype"])
    rng = np.random.default_rng(cfg["seed"])
    # Independent streams for data, weights, and shuffling/dropout: changing the network
    # does not change the data, and changing the batch size does not change the weights.
    data_rng, init_rng, train_rng = rng.spawn(3)
    ds = load_data(cfg, data_rng, dtype)
    loss = build_component("loss", cfg["loss"])
    optimizer = build_component("optimizer", cfg["optimizer"])
    schedule = build_component("schedule", cfg["schedule"])
    model = cfg["model"]
    out_features = output_size(ds, loss)
    for key, expected in (("in_features", ds.n_features), ("out_features", out_features)):
        if model.get(key) is not None and model[key] != expected:
            raise ConfigError(
                f"model.{key}: the model has {model[key]} but dataset {ds.name!r} needs "
                f"{expected}; remove model.{key} (it is inferred) or pick another dataset")
    network = mlp(ds.n_features, model["hidden"], out_features, activation=model["activation"],
                  output_activation=model["output_activation"], initializer=model["initializer"],
                  bias=model["bias"], dropout=model.get("dropout", 0.0), rng=init_rng, dtype=dtype)
    tcfg = cfg["trainer"]
    if tcfg["batch_size"] > len(ds.x_train):
        raise ConfigError(f"trainer.batch_size: {tcfg['batch_size']} is larger than the "
                          f"{len(ds.x_train)} training samples; use 0 for full batch")
    callbacks = []
    stopping = tcfg.get("early_stopping") or {}
    if stopping.get("patience", 0) > 0:
        callbacks.append(EarlyStopping(stopping.get("monitor", "val_loss"), stopping["patience"],
                                       stopping.get("min_delta", 0.0)))
    callbacks += trial_callbacks(cfg)  # a trial of nnx's Optuna sweeper: report, maybe prune
    factor = tcfg.get("divergence_factor", DEFAULT_FACTOR)
    if factor:
        callbacks.append(DivergenceGuard(factor))  # a loss far past its first value
    config = TrainConfig(epochs=tcfg["epochs"], batch_size=tcfg["batch_size"],
                         shuffle=tcfg.get("shuffle", True), limit_batches=tcfg.get("limit_batches", 0),
                         log_every=tcfg.get("log_every", 1), decision_threshold=loss.decision_threshold,
                         progress=tcfg.get("progress", True), callbacks=callbacks,
                         checkpoint_dir=tcfg.get("checkpoint_dir"),
                         checkpoint_every=tcfg.get("checkpoint_every", 0))
    trainer = Trainer(network, loss, optimizer, schedule=schedule, config=config, rng=train_rng,
                      task=ds.task)
    trainer.rngs["network"] = init_rng  # dropout masks come from the network's stream
    trainer.checkpoint_extra = {"config": recorded_config(cfg)}  # what nnx.resume_check reads
    if tcfg.get("resume"):
        path = resolve_resume(str(tcfg["resume"]), cfg)
        saved, trained = checkpoint_config(path)
        if saved is not None:  # checkpoints of older nnx versions keep no config
            trainer.resume_changes = check_resume(saved, cfg, schedule, trained, path)
            if trainer.resume_changes:
                print(f"nnx: resume: {describe(trainer.resume_changes)}", file=sys.stderr)
        trainer.load_checkpoint(path)
        if trainer.epoch >= tcfg["epochs"]:
            raise ConfigError(f"trainer.epochs: checkpoint {path} has already trained "
                              f"{trainer.epoch} epochs, so trainer.epochs={tcfg['epochs']} leaves "
                              "nothing to do; raise trainer.epochs to train further")
    return trainer, ds, out_features


def checkpoint_config(path) -> tuple[dict | None, int]:
    """(the config a checkpoint was trained with, or None when it keeps none; its epoch)."""
    from nnx import checkpoint

    meta = checkpoint.read(path)[0]
    config = (meta.get("extra") or {}).get("config")
    return (config if isinstance(config, dict) else None), meta["epoch"]


def resolve_resume(value: str, cfg: dict) -> Path:
    """A checkpoint file from ``trainer.resume``: a file, a run folder, or an MLflow run id."""
    path = Path(value).expanduser()
    for candidate in (path, path / "last.npz", path / "checkpoints" / "last.npz"):
        if candidate.is_file():
            return candidate
    if re.fullmatch(r"[0-9a-f]{32}", value):
        from nnx.mlflow_tracker import download_checkpoint

        return download_checkpoint(value, cfg)
    raise ConfigError(f"trainer.resume: {value!r} is neither a checkpoint file (or a run folder "
                      "holding checkpoints/last.npz) nor an MLflow run id")


def split_validation(cfg, ds, rng):
    """(train, validation, test) sets: a seeded split of train, else the test split validates."""
    from nnx.data import split

    fraction = cfg["trainer"].get("val_split", 0.0)
    if fraction:
        train, val = split(ds, fraction, rng)
        return train, val
    return ds, None


def train(cfg: dict, tracker: Tracker | None = None) -> dict:
    """Run one experiment; returns final metrics, including ``objective``."""
    started = time.perf_counter()
    trainer, ds, out_features = build(cfg)
    dtype = np.dtype(cfg["dtype"])
    loss = trainer.loss
    train_ds, val_ds = split_validation(cfg, ds, np.random.default_rng([cfg["seed"], 1]))
    y_train = encode_targets(train_ds.y_train, ds, loss, out_features, dtype)
    has_test = ds.x_test is not None
    if val_ds is not None:
        x_val, y_val = val_ds.x_train, encode_targets(val_ds.y_train, ds, loss, out_features, dtype)
    elif has_test:
        x_val, y_val = ds.x_test, encode_targets(ds.y_test, ds, loss, out_features, dtype)
    else:
        x_val = y_val = None
    trainer.tracker = tracker or make_tracker(cfg)
    status, error = "FINISHED", None
    try:
        trainer.tracker.start(cfg, trainer, ds)
        fit_started = time.perf_counter()
        logs = trainer.fit(train_ds.x_train, y_train, x_val, y_val)
        train_seconds = time.perf_counter() - fit_started
        if has_test:
            y_test = encode_targets(ds.y_test, ds, loss, out_features, dtype)
            logs.update(trainer.evaluate(ds.x_test, y_test, prefix="test_"))
        objective_key = cfg.get("objective", "val_loss")
        if objective_key not in logs:
            raise ConfigError(f"objective: {objective_key!r} is not a metric of this run; "
                              f"valid: {', '.join(sorted(logs))}")
        logs["objective"] = logs[objective_key]
        # Training alone (validation included), and the whole run: the difference is set-up
        # and tracking (importing mlflow alone takes seconds), which a reader should not
        # mistake for training time.
        logs["train_seconds"] = train_seconds
        logs["wall_seconds"] = time.perf_counter() - started
        trainer.tracker.log_metrics({k: v for k, v in logs.items() if k.startswith("test_")},
                                    step=trainer.epoch)
        trainer.tracker.log_network(trainer.network)
        return {"metrics": logs, "trainer": trainer, "dataset": ds}
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted"
        raise
    except BaseException as exc:
        status, error = "FAILED", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        trainer.tracker.finish(status, error)


def summary(cfg: dict, result: dict) -> str:
    """The short report printed at the end of a run."""
    logs, trainer, ds = result["metrics"], result["trainer"], result["dataset"]
    n_test = 0 if ds.x_test is None else len(ds.x_test)
    headline = (
        f"nnx {cfg.get('name', '')}: dataset {ds.name} ({len(ds.x_train)} train, {n_test} test), "
        f"{trainer.network.n_params:,} parameters, {trainer.epoch} epochs, {trainer.step} steps "
        f"in {logs['train_seconds']:.2f} s ({logs['wall_seconds']:.2f} s in all, with set-up "
        "and tracking)")
    lines = [headline]
    if trainer.stopped_early:
        lines.append(trainer.stopped_early)
    shown = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss",
                         "test_accuracy", "test_rmse", "test_r2") if k in logs]
    lines.append("final: " + "  ".join(f"{k} {_fmt(logs[k])}" for k in shown))
    lines.append(f"objective ({cfg.get('objective', 'val_loss')}): {_fmt(logs['objective'])}")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)
