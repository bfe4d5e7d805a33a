"""``train(cfg) -> metrics``: a whole experiment from a plain configuration dict.

Hydra composes the dict (see ``nnx.run``); this module knows nothing of Hydra, so tests and
notebooks call it directly. Steps: check the config, load the data, build the network, the
loss, the optimizer and the schedule by registry name, train, evaluate on the test set.

Honest by default: the validation set is carved out of the training data
(``trainer.val_split``, seeded, stratified by class); the objective and early stopping read
validation (or, with ``val_split: 0``, training) metrics; the test set is evaluated once, at
the end, and selects nothing. Everything knowable before training is checked before the
first epoch: the keys of every node, the metrics named, the loss against the output
activation, and the memory the network will need.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from nnx.config import DATASET_KEYS, ConfigError, build_component, check_config, check_metrics
from nnx.divergence import DEFAULT_FACTOR, DivergenceGuard
from nnx.metrics import OBJECTIVE, objective_source, once_per_run
from nnx.network import Network, mlp
from nnx.pruning import trial_callbacks
from nnx.resume_check import check_resume, describe, recorded_config
from nnx.tracking import NullTracker, Tracker
from nnx.trainer import EarlyStopping, TrainConfig, Trainer


def load_data(cfg: dict, rng: np.random.Generator, dtype):
    """The dataset named by ``cfg.dataset``, standardised with training statistics if asked.

    What goes wrong while loading is said with the keys that may have caused it: a value too
    large for ``dtype`` (``dataset.noise=1e39`` overflows float32), or too much data."""
    from nnx import data

    node = cfg["dataset"]
    source = build_component("dataset", node, skip=DATASET_KEYS)
    sizes = ", ".join(f"dataset.{k}={v}" for k, v in node.items()
                      if isinstance(v, int) and not isinstance(v, bool) and v > 1)
    if hasattr(source, "estimated_bytes"):
        from nnx.limits import check_memory

        key = "dataset.n_samples" if "n_samples" in node else "dataset"
        check_memory(source.estimated_bytes(dtype), key, f"dataset {node['name']!r} ({sizes})",
                     "use fewer samples")
    try:
        # Overflow is reported below, naming the key, rather than as a numpy warning.
        with np.errstate(over="ignore", invalid="ignore"):
            ds = source.load(rng, dtype=dtype)
    except MemoryError as error:
        raise ConfigError(f"dataset: loading {node['name']!r} ran out of memory ({error})"
                          + (f"; lower {sizes}" if sizes else "")) from error
    except ValueError as error:
        if "NaN or inf" not in str(error):
            raise
        limit = float(np.finfo(dtype).max)
        suspects = [f"dataset.{k}={v:g}" for k, v in node.items()
                    if isinstance(v, float) and not (abs(v) * 1e3 < limit)]
        if not suspects:
            raise
        raise ConfigError(f"{suspects[0].partition('=')[0]}: {error}: {', '.join(suspects)} "
                          f"is beyond what {np.dtype(dtype)} holds (largest {limit:.3g}) once "
                          "scaled; use a smaller value") from error
    if node.get("standardize", False):
        ds = data.standardize(ds)
    return ds


def check_output(cfg: dict, loss) -> None:
    """The output activation gives what the loss declares it takes (``Loss.inputs``): values
    inside ``input_range`` for a probability loss, unsquashed logits for a logits loss; the
    activation declares its range as ``output_range``. The message names the fixes that fit."""
    from nnx.registry import registry

    if "output_activation" not in cfg["model"]:  # a model type whose layers end it itself
        return
    act = cfg["model"]["output_activation"]
    low, high = getattr(registry("activations").get(act), "output_range", (-math.inf, math.inf))
    lo, hi = loss.input_range
    name = cfg["loss"]["name"]
    if loss.inputs == "probabilities" and not (lo <= low and high <= hi):
        fits = _activations_within(lo, hi)
        logits = [n for n in _loss_names() if n != name and _loss_takes_logits(n, loss.targets)]
        fixes = [f"model.output_activation={n}" for n in fits[:2]] + [f"loss={n}" for n in logits]
        raise ConfigError(
            f"loss: {name!r} takes probabilities in [{lo:g}, {hi:g}], but "
            f"model.output_activation={act} gives values in [{low:g}, {high:g}]; "
            f"use {' or '.join(fixes) or 'an output activation within that range'}")
    if loss.inputs == "logits" and (low, high) != (-math.inf, math.inf):
        raise ConfigError(
            f"model.output_activation: {name!r} takes logits (it squashes them itself), but "
            f"model.output_activation={act} limits the outputs to [{low:g}, {high:g}]; use "
            "model.output_activation=identity")


def _activations_within(lo: float, hi: float) -> list[str]:
    """Built-in and plugin activations whose declared output range lies in [lo, hi]."""
    from nnx.registry import PluginError, registry

    out = []
    for name in registry("activations").names():
        try:
            low, high = getattr(registry("activations").get(name), "output_range",
                                (-math.inf, math.inf))
        except PluginError:
            continue
        if lo <= low and high <= hi:
            out.append(name)
    return out


def _loss_names() -> list[str]:
    from nnx.registry import registry

    return registry("losses").names()


def _loss_takes_logits(name: str, targets) -> bool:
    from nnx.registry import PluginError, registry

    try:
        cls = registry("losses").get(name)
    except PluginError:
        return False
    return cls.inputs == "logits" and tuple(cls.targets) == tuple(targets)


def check_training_memory(cfg: dict, n_features: int, out_features: int, n_train: int,
                          optimizer) -> None:
    """Refuse a network whose weights, gradients, optimizer state and batch activations
    would not fit in the memory available, naming the key that asks for the most."""
    from nnx.limits import available_memory, check_memory

    model, tcfg = cfg["model"], cfg["trainer"]
    if "hidden" not in model:  # the estimate below is the mlp's (model.name=mlp)
        return
    itemsize = np.dtype(cfg["dtype"]).itemsize
    sizes = [n_features, *model["hidden"], out_features]
    n_params = sum(a * b + (b if model.get("bias", True) else 0)
                   for a, b in itertools.pairwise(sizes))
    # Arrays the optimizer keeps per parameter array (Adam: m, v and a scratch buffer).
    slots = len(optimizer.init_state(np.zeros(1, cfg["dtype"])))
    stopping = (tcfg.get("early_stopping") or {}).get("patience", 0) > 0
    # weights, gradients, the per-epoch copy for weight statistics, early stopping's best
    copies = 3 + slots + (1 if stopping else 0)
    weights = n_params * itemsize * copies
    rows = n_train if tcfg["batch_size"] in (0, None) else min(tcfg["batch_size"], n_train)
    # Training: each layer keeps its output, its activation's cache and a gradient of each
    # (~4 arrays a row); evaluation: two arrays a row, in chunks of up to 4096 rows.
    per_row = sum(sizes[1:]) * itemsize
    activations = per_row * max(4 * rows, 2 * min(n_train, 4096))
    free = available_memory()
    if free is not None and weights + 4 * per_row > free:  # no batch size would do
        key, what = "model.hidden", (
            f"a network of {n_params:,} parameters ({' -> '.join(map(str, sizes))}) in "
            f"{cfg['dtype']}, with its gradients, {cfg['optimizer']['name']}'s {slots} state "
            f"array{'s' if slots != 1 else ''} and a batch of {rows:,} rows,")
        fix = "use fewer or smaller hidden layers, or dtype=float32"
    else:
        key, what = "trainer.batch_size", (
            f"a batch of {rows:,} rows through layers of {' -> '.join(map(str, sizes))} units")
        fix = "use a smaller trainer.batch_size (0 means the whole training set)"
    check_memory(weights + activations, key, what, fix)


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


def build_network(model: dict, ds, out_features: int, rng, dtype):
    """The network ``model`` describes for ``ds``, and ``ds`` in the shape it takes.

    ``model=sequential``: ``model.layers`` built from the dataset's sample shape, x given as
    (n, *sample_shape); its output must fit the loss. ``model=mlp`` (the short form): dense
    layers on flat x, (n, features), exactly as before shapes.
    """
    if model.get("name") == "sequential":
        try:
            network = Network(model["layers"], in_shape=ds.sample_shape, rng=rng, dtype=dtype)
        except ValueError as error:
            raise ConfigError(f"model.layers: {error} (dataset {ds.name!r}: samples of shape "
                              f"{ds.sample_shape})") from error
        if network.out_shape != (out_features,):
            last = f"model.layers.{len(model['layers']) - 1}"
            raise ConfigError(
                f"model.layers: the network's output is (n, {', '.join(map(str, network.out_shape))})"
                f" but dataset {ds.name!r} with this loss needs (n, {out_features}); end with a "
                f"dense layer of {out_features} units (e.g. {last}.units={out_features} when the "
                "last layer is dense)")
        return network, ds.shaped()
    for key, expected in (("in_features", ds.n_features), ("out_features", out_features)):
        if model.get(key) is not None and model[key] != expected:
            raise ConfigError(
                f"model.{key}: the model has {model[key]} but dataset {ds.name!r} needs "
                f"{expected}; remove model.{key} (it is inferred) or pick another dataset")
    network = mlp(ds.n_features, model["hidden"], out_features, activation=model["activation"],
                  output_activation=model["output_activation"], initializer=model["initializer"],
                  bias=model["bias"], dropout=model.get("dropout", 0.0), rng=rng, dtype=dtype)
    return network, ds.flat()


def build(cfg: dict):
    """Check ``cfg``, load data and build every component; returns a ready Trainer and data."""
    check_config(cfg)
    dtype = np.dtype(cfg["dtype"])
    rng = np.random.default_rng(cfg["seed"])
    # Independent streams for data, weights, and shuffling/dropout: changing the network
    # does not change the data, and changing the batch size does not change the weights.
    data_rng, init_rng, train_rng = rng.spawn(3)
    loss = build_component("loss", cfg["loss"])
    optimizer = build_component("optimizer", cfg["optimizer"])
    schedule = build_component("schedule", cfg["schedule"])
    check_output(cfg, loss)
    doing(cfg, f"loading dataset {cfg['dataset']['name']}")
    ds = load_data(cfg, data_rng, dtype)
    check_metrics(cfg, ds.task)
    out_features = output_size(ds, loss)
    tcfg = cfg["trainer"]
    n_train = len(ds.x_train) - validation_size(cfg, ds)
    if tcfg["batch_size"] > n_train:
        carved = (f" ({len(ds.x_train)} less the {len(ds.x_train) - n_train} that "
                  f"trainer.val_split={tcfg['val_split']} holds out)" if n_train < len(ds.x_train)
                  else "")
        raise ConfigError(f"trainer.batch_size: {tcfg['batch_size']} is larger than the "
                          f"{n_train} training samples{carved}; use 0 for full batch")
    check_training_memory(cfg, ds.n_features, out_features, n_train, optimizer)
    network, ds = build_network(cfg["model"], ds, out_features, init_rng, dtype)
    callbacks = []
    stopping = tcfg.get("early_stopping") or {}
    if stopping.get("patience", 0) > 0:
        callbacks.append(EarlyStopping(**{"monitor": "val_loss", **stopping}))
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
    from nnx.checkpoint import CheckpointError, read

    path = Path(value).expanduser()
    for candidate in (path, path / "last.npz", path / "checkpoints" / "last.npz"):
        if candidate.is_file():
            try:
                read(candidate)  # whole, and an nnx checkpoint: checked before anything trains
            except CheckpointError as error:
                raise CheckpointError(
                    f"trainer.resume: {error}. Nothing was trained. (nnx writes a checkpoint "
                    "whole or not at all: a temporary file renamed into place; the "
                    ".last.npz.*.tmp files a killed run can leave are never read)") from error
            return candidate
    if re.fullmatch(r"[0-9a-f]{32}", value):
        from nnx.mlflow_tracker import download_checkpoint

        return download_checkpoint(value, cfg)
    raise ConfigError(f"trainer.resume: {value!r} is neither a checkpoint file (or a run folder "
                      "holding checkpoints/last.npz) nor an MLflow run id")


def validation_size(cfg: dict, ds) -> int:
    """How many training samples ``trainer.val_split`` holds out (0: no validation set), or a
    ConfigError naming the keys when the training data are too few to split."""
    fraction = cfg["trainer"].get("val_split", 0.0)
    if not fraction:
        return 0
    n = len(ds.x_train)
    if n < 2:
        given = "".join(f" (dataset.{k}={cfg['dataset'][k]})" for k in ("n_samples",)
                        if k in cfg["dataset"])
        raise ConfigError(f"trainer.val_split: dataset {ds.name!r} has {n} training sample"
                          f"{given}, too few to hold out a validation set; give the dataset "
                          "more samples, or set trainer.val_split=0 (no validation: the "
                          "objective then comes from the training metrics)")
    return min(max(round(fraction * n), 1), n - 1)


def split_validation(cfg, ds, rng):
    """(train, validation): a seeded split of the training data, stratified by class for
    classification; no validation set (None) when ``trainer.val_split`` is 0. The test split
    never validates: it is evaluated once, at the end."""
    from nnx.data import split

    if validation_size(cfg, ds):
        return split(ds, cfg["trainer"]["val_split"], rng, stratify=True)
    return ds, None


def fit_data(cfg: dict, ds, loss, out_features: int):
    """(x_train, y_train, x_val, y_val) as ``Trainer.fit`` takes them: the training data less
    the validation set, targets encoded for the loss; x_val and y_val None without one."""
    dtype = np.dtype(cfg["dtype"])
    train_ds, val_ds = split_validation(cfg, ds, np.random.default_rng([cfg["seed"], 1]))
    y_train = encode_targets(train_ds.y_train, ds, loss, out_features, dtype)
    if val_ds is None:
        return train_ds.x_train, y_train, None, None
    return (train_ds.x_train, y_train, val_ds.x_train,
            encode_targets(val_ds.y_train, ds, loss, out_features, dtype))


def train(cfg: dict, tracker: Tracker | None = None) -> dict:
    """Run one experiment; returns final metrics, including ``objective``."""
    started = time.perf_counter()
    trainer, ds, out_features = build(cfg)
    dtype = np.dtype(cfg["dtype"])
    loss = trainer.loss
    x_train, y_train, x_val, y_val = fit_data(cfg, ds, loss, out_features)
    has_test = ds.x_test is not None
    if tracker is None and (cfg.get("tracking") or {}).get("name", "none") != "none":
        from nnx.store import resolve_uri, sqlite_path

        uri = resolve_uri(cfg["tracking"].get("uri"))
        doing(cfg, f"opening the MLflow store {sqlite_path(uri) or uri}")
    trainer.tracker = tracker or make_tracker(cfg)
    status, error = "FINISHED", None
    try:
        trainer.tracker.start(cfg, trainer, ds)
        trainer.tracker.log_dataset(ds.name, {
            "training": (x_train, y_train),
            "validation": None if x_val is None else (x_val, y_val),
            "test": (ds.x_test, ds.y_test) if has_test else None})
        fit_started = time.perf_counter()
        logs = trainer.fit(x_train, y_train, x_val, y_val)
        train_seconds = time.perf_counter() - fit_started
        if has_test:
            y_test = encode_targets(ds.y_test, ds, loss, out_features, dtype)
            logs.update(trainer.evaluate(ds.x_test, y_test, prefix="test_"))
        logs["objective"] = logs[cfg.get("objective", "val_loss")]  # checked before training
        # Training alone (validation included), and the whole run: the difference is set-up
        # and tracking (importing mlflow alone takes seconds), which a reader should not
        # mistake for training time.
        logs["train_seconds"] = train_seconds
        logs["wall_seconds"] = time.perf_counter() - started
        # Once per run: the test metrics and the times (the objective: at finish).
        trainer.tracker.log_metrics({k: v for k, v in logs.items()
                                     if once_per_run(k) and k != OBJECTIVE}, step=trainer.epoch)
        if not isinstance(trainer.tracker, NullTracker):
            doing(cfg, "logging the network, its model and plots")
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


def doing(cfg: dict, what: str) -> None:
    """One line on what a run is doing before its progress bar starts (loading data, opening
    the store: seconds each), where the progress bar would show: a terminal, with
    ``trainer.progress`` on. Logs and pipes get none."""
    if cfg["trainer"].get("progress", True) and sys.stderr.isatty():
        print(f"nnx: {what} ...", file=sys.stderr, flush=True)


def summary(cfg: dict, result: dict, in_all: float | None = None) -> str:
    """The short report printed at the end of a run. ``in_all``: the seconds it shows as the
    whole time (``python -m nnx.run`` gives its process's); by default the run's
    ``wall_seconds``, from the start of ``train`` to its metrics."""
    logs, trainer, ds = result["metrics"], result["trainer"], result["dataset"]
    n_test = 0 if ds.x_test is None else len(ds.x_test)
    n_val = validation_size(cfg, ds)
    in_all = logs["wall_seconds"] if in_all is None else in_all
    headline = (
        f"nnx {cfg.get('name', '')}: dataset {ds.name} ({len(ds.x_train) - n_val} train, "
        f"{n_val} validation, {n_test} test), "
        f"{trainer.network.n_params:,} parameters, {trainer.epoch} epochs, {trainer.step} steps "
        f"in {logs['train_seconds']:.2f} s ({in_all:.2f} s in all, with set-up "
        "and tracking)")
    lines = [headline]
    if trainer.stopped_early:
        lines.append(trainer.stopped_early)
    if trainer.kept_epoch is not None and trainer.kept_epoch != trainer.epoch:
        monitor = next(cb.monitor for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
        lines.append(f"kept: the weights of epoch {trainer.kept_epoch}, the best {monitor} "
                     "(early stopping restored them); the metrics below are theirs")
    shown = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss",
                         "test_accuracy", "test_rmse", "test_r2") if k in logs]
    lines.append("final: " + "  ".join(f"{k} {_fmt(logs[k])}" for k in shown))
    objective = cfg.get("objective", "val_loss")
    source = {"val": f"the validation set ({n_val} samples held out of train)",
              "train": "the training set (no validation set: trainer.val_split=0)"
              if not n_val else "the training set"}[objective_source(objective)]
    lines.append(f"objective ({objective}): {_fmt(logs['objective'])}, from {source}")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)
