"""Checkpoints: weights, optimizer state, RNG states, epoch and step in one ``.npz`` file.

Arrays are stored as arrays; everything else (architecture, optimizer settings, RNG states,
history) as a JSON document inside the same archive, so one atomic rename publishes a whole
checkpoint: a crash can never leave weights from one epoch beside metadata of another.
Files are read with ``allow_pickle=False``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = 1
META_KEY = "__meta_json__"


class CheckpointError(ValueError):
    """A checkpoint that is damaged or does not fit the network it is loaded into."""


def _optimizer_arrays(optimizer) -> dict[str, np.ndarray]:
    arrays = {}
    for key, state in optimizer.state.items():
        for name, value in state.items():
            if name != "scratch":  # scratch space holds nothing between steps
                arrays[f"optimizer/{key}/{name}"] = value
    return arrays


def save(path: str | Path, trainer, rngs: dict[str, np.random.Generator] | None = None,
         extra: dict | None = None) -> Path:
    """Write ``trainer``'s state to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    net, opt = trainer.network, trainer.optimizer
    meta = {
        "format": FORMAT,
        "architecture": net.specs(),
        "in_features": net.in_features,
        "dtype": str(net.dtype),
        "n_params": net.n_params,
        "optimizer": {"class": type(opt).__name__, "iterations": opt.iterations,
                      "base_lr": trainer.base_lr, "keys": sorted(opt.state)},
        "epoch": trainer.epoch,
        "step": trainer.step,
        "history": trainer.history,
        "rng_states": {name: g.bit_generator.state for name, g in (rngs or {}).items()},
        "extra": extra or {},
    }
    arrays = {"params": net.flat_params, **_optimizer_arrays(opt)}
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint file, or a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not an nnx checkpoint ({type(error).__name__}: "
            f"{error})") from error
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {meta.get('format')!r}, expected {FORMAT}")
    return meta, arrays


def load(path: str | Path, trainer, rngs: dict[str, np.random.Generator] | None = None) -> dict:
    """Restore ``trainer`` (and ``rngs``) from ``path``; returns the metadata.

    Everything is checked before anything is changed: a mismatch leaves the trainer as it was.
    """
    meta, arrays = read(path)
    net, opt = trainer.network, trainer.optimizer
    mismatches = []
    if meta["architecture"] != net.specs() or meta["in_features"] != net.in_features:
        mismatches.append(f"architecture {meta['in_features']} -> {meta['architecture']} "
                          f"!= this network's {net.in_features} -> {net.specs()}")
    if meta["dtype"] != str(net.dtype):
        mismatches.append(f"dtype {meta['dtype']} != this network's {net.dtype}")
    params = arrays.get("params")
    if params is None or params.shape != net.flat_params.shape:
        shape = None if params is None else params.shape
        mismatches.append(f"parameter count {shape} != this network's {net.flat_params.shape}")
    if meta["optimizer"]["class"] != type(opt).__name__:
        mismatches.append(f"optimizer {meta['optimizer']['class']} != this run's {type(opt).__name__}")
    missing_rngs = set(meta["rng_states"]) ^ set(rngs or {})
    if rngs is not None and missing_rngs:
        mismatches.append(f"random streams {sorted(meta['rng_states'])} != {sorted(rngs)}")
    if mismatches:
        raise CheckpointError(f"checkpoint {path} does not match: " + "; ".join(mismatches))
    state: dict[str, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        if name.startswith("optimizer/"):
            _, key, slot = name.split("/", 2)
            if value.dtype != net.dtype or value.shape != net.flat_params.shape and key == "flat":
                raise CheckpointError(f"checkpoint {path}: optimizer state {key}/{slot} has "
                                      f"{value.dtype} {value.shape}, expected {net.dtype}")
            state.setdefault(key, {})[slot] = value.copy()
    # Nothing failed: now change the trainer.
    net.flat_params[...] = params
    fresh = {key: opt.init_state(net.params[key]) for key in state if key in net.params}
    for key, slots in state.items():
        fresh.setdefault(key, {}).update(slots)
    opt.state = fresh
    opt.iterations = meta["optimizer"]["iterations"]
    trainer.base_lr = meta["optimizer"]["base_lr"]
    trainer.epoch, trainer.step = meta["epoch"], meta["step"]
    trainer.history = list(meta["history"])
    for name, g in (rngs or {}).items():
        g.bit_generator.state = meta["rng_states"][name]
    return meta
