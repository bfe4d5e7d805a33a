"""Checkpoints: weights, optimizer state, RNG states, epoch and step in one ``.npz`` file.

Arrays are stored as arrays; everything else (architecture, optimizer settings, RNG states,
history) as a JSON document inside the same archive, so one atomic rename publishes a whole
checkpoint: a crash can never leave weights from one epoch beside metadata of another.
Files are read with ``allow_pickle=False``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from nnx.limits import TooLarge, check_npz, read_json

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
        # in_shape: the per-sample input shape; in_features (its size) is what files written
        # before shapes held alone, and what they are read by.
        "in_shape": list(net.in_shape),
        "in_features": net.in_features,
        "dtype": str(net.dtype),
        "n_params": net.n_params,
        # base_lr: the configured rate, for the record and for nnx versions that read it; a
        # resumed run takes its rate from its own config, like every other hyper-parameter.
        "optimizer": {"class": type(opt).__name__, "iterations": opt.iterations,
                      "base_lr": opt.config()["lr"], "keys": sorted(opt.state)},
        "epoch": trainer.epoch,
        "step": trainer.step,
        "history": trainer.history,
        "rng_states": {name: g.bit_generator.state for name, g in (rngs or {}).items()},
        "callbacks": {},
        "extra": extra or {},
    }
    arrays = {"params": net.flat_params, **_optimizer_arrays(opt)}
    if net.flat_buffers.size:  # state that is not trained (running statistics)
        arrays["buffers"] = net.flat_buffers
    for i, callback in enumerate(getattr(trainer, "callbacks", [])):
        state = callback.state() if hasattr(callback, "state") else None
        if state is not None:  # early stopping's best value, patience count, best weights
            values = {}
            for key, value in state.items():
                if isinstance(value, np.ndarray):
                    arrays[f"callbacks/{i}/{key}"] = value
                else:
                    values[key] = value
            meta["callbacks"][str(i)] = {"class": type(callback).__name__, "values": values}
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _write_error(path, error) from error
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the previous checkpoint stays whole until this instant
        _sync_folder(path.parent)
        # A run killed mid-write (kill -9, out of memory) leaves its temporary file behind;
        # a run folder has one writer, so any other one of this name is such a leftover.
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error, "; the previous checkpoint there, if any, is "
                               "unchanged") from error
        raise
    return path


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a power cut (the rename alone is atomic
    but may still sit in the page cache); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder: the rename still happened
    finally:
        os.close(fd)


def ensure_dir(directory: str | Path) -> Path:
    """Create the checkpoint folder (the trainer calls this before training, so that a bad
    folder fails at once rather than after the first epochs)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _write_error(directory / "last.npz", error) from error
    return directory


def _write_error(path: Path, error: OSError, more: str = "") -> OSError:
    out = OSError(f"cannot write checkpoint {path}: {error.strerror or error}"
                  + (f": {error.filename}" if error.filename else "") + more)
    out.errno = error.errno
    return out


def read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint file, or a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if not zipfile.is_zipfile(path):  # np.load would try other formats (never pickle)
            raise ValueError("not a .npz archive")
        check_npz(path)  # declared shapes against the bytes held, before NumPy allocates them
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = read_json(arrays.pop(META_KEY).tobytes(), "its metadata")
        if not isinstance(meta, dict):
            raise TypeError("its metadata is not a JSON object")
    except TooLarge as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not an nnx checkpoint ({type(error).__name__}: "
            f"{error})") from error
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {meta.get('format')!r}, expected {FORMAT}")
    missing = [key for key, kind in _META_TYPES.items() if not isinstance(meta.get(key), kind)]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged: metadata {', '.join(missing)} "
                              "missing or of the wrong type")
    return meta, arrays


# metadata key -> the type it must have
_META_TYPES = {"architecture": list, "in_features": int, "dtype": str, "optimizer": dict,
               "epoch": int, "step": int, "history": list, "rng_states": dict}


def saved_in_shape(meta: dict) -> tuple[int, ...]:
    """The input shape a checkpoint or saved network was made for (``(in_features,)`` in files
    written before shapes)."""
    shape = meta.get("in_shape")
    return tuple(shape) if isinstance(shape, list) else (meta["in_features"],)


def _describe(in_shape: tuple, specs: list) -> str:
    """``2 -> dense 32, relu, dense 2, identity`` (``(1, 8, 8) -> flatten, ...`` for N-D
    samples): an architecture in one short line."""
    layers = [" ".join([str(s.get("name"))] + [str(s[k]) for k in ("units", "rate") if k in s])
              if isinstance(s, dict) else str(s) for s in specs]
    shape = in_shape[0] if len(in_shape) == 1 else tuple(in_shape)
    return f"{shape} -> {', '.join(layers)}"


def load(path: str | Path, trainer, rngs: dict[str, np.random.Generator] | None = None) -> dict:
    """Restore ``trainer`` (and ``rngs``) from ``path``; returns the metadata.

    Everything is checked before anything is changed: a mismatch leaves the trainer as it was.
    """
    meta, arrays = read(path)
    net, opt = trainer.network, trainer.optimizer
    mismatches = []
    if meta["architecture"] != net.specs() or saved_in_shape(meta) != net.in_shape:
        saved = _describe(saved_in_shape(meta), meta["architecture"])
        mine = _describe(net.in_shape, net.specs())
        if saved == mine:  # they differ in a detail the short form leaves out
            saved, mine = meta["architecture"], net.specs()
        mismatches.append(f"architecture {saved} != this network's {mine}")
    if meta["dtype"] != str(net.dtype):
        mismatches.append(f"dtype {meta['dtype']} != this network's {net.dtype}")
    params = arrays.get("params")
    if params is None or params.shape != net.flat_params.shape:
        shape = None if params is None else params.shape
        mismatches.append(f"parameter count {shape} != this network's {net.flat_params.shape}")
    elif params.dtype != net.dtype:
        mismatches.append(f"parameters stored as {params.dtype} != this network's {net.dtype}")
    buffers = arrays.get("buffers", np.empty(0, net.dtype))
    if buffers.shape != net.flat_buffers.shape or buffers.dtype != net.dtype:
        mismatches.append(f"buffers {buffers.dtype} {buffers.shape} != this network's "
                          f"{net.dtype} {net.flat_buffers.shape}")
    saved_opt = meta["optimizer"]
    if saved_opt.get("class") != type(opt).__name__:
        mismatches.append(f"optimizer {saved_opt.get('class')} != this run's {type(opt).__name__}")
    missing_rngs = set(meta["rng_states"]) ^ set(rngs or {})
    if rngs is not None and missing_rngs:
        mismatches.append(f"random streams {sorted(meta['rng_states'])} != {sorted(rngs)}")
    state: dict[str, dict[str, np.ndarray]] = {}
    callback_arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        if name.startswith("optimizer/") and name.count("/") == 2:
            _, key, slot = name.split("/")
            target = net.params.get(key)
            if (target is None or value.dtype != net.dtype or value.shape != target.shape) \
                    and params is not None and params.shape == net.flat_params.shape:
                mismatches.append(f"optimizer state {key}/{slot} is {value.dtype} {value.shape}, "
                                  f"expected {net.dtype} {net.flat_params.shape}")
            state.setdefault(key, {})[slot] = value
        elif name.startswith("callbacks/") and name.count("/") == 2:
            _, index, key = name.split("/")
            # a callback keeps copies of the weights or of the buffers (early stopping's best)
            shapes = (net.flat_params.shape, net.flat_buffers.shape)
            if value.dtype != net.dtype or value.shape not in shapes:
                mismatches.append(f"callback state {index}/{key} is {value.dtype} {value.shape}, "
                                  f"expected weights {net.dtype} {net.flat_params.shape} or "
                                  f"buffers {net.flat_buffers.shape}")
            callback_arrays.setdefault(index, {})[key] = value
        elif name not in ("params", "buffers"):
            mismatches.append(f"unexpected array {name!r}")
    iterations = saved_opt.get("iterations")
    if not isinstance(iterations, int):
        mismatches.append("optimizer iterations missing")
    elif not mismatches and iterations > 0:
        # Same class, other settings (SGD with and without momentum) keep other state.
        for key, p in net.params.items():
            expected = sorted(set(opt.init_state(p)) - {"scratch"})
            if sorted(state.get(key, {})) != expected:
                mismatches.append(f"optimizer state {sorted(state.get(key, {}))} != the "
                                  f"{expected} this {type(opt).__name__}'s settings keep")
    for name, g in (rngs or {}).items():
        if name in meta["rng_states"]:
            try:  # tried on a scratch generator, so a bad state changes nothing
                type(g.bit_generator)().state = meta["rng_states"][name]
            except (TypeError, ValueError, KeyError) as error:
                mismatches.append(f"random stream {name!r}: {error}")
    callbacks = _callback_states(meta.get("callbacks") or {}, callback_arrays, trainer,
                                 mismatches)
    if mismatches:
        raise CheckpointError(f"checkpoint {path} does not match this run: "
                              + "; ".join(mismatches))
    # Nothing failed: now change the trainer.
    net.flat_params[...] = params
    net.flat_buffers[...] = buffers
    fresh = {key: opt.init_state(net.params[key]) for key in state if key in net.params}
    for key, slots in state.items():
        fresh.setdefault(key, {}).update({slot: value.copy() for slot, value in slots.items()})
    opt.state = fresh
    opt.iterations = iterations
    trainer.epoch, trainer.step = meta["epoch"], meta["step"]
    trainer.history = list(meta["history"])
    for name, g in (rngs or {}).items():
        g.bit_generator.state = meta["rng_states"][name]
    for callback, callback_state in callbacks:
        callback.load_state(callback_state)
    return meta


def _callback_states(saved: dict, arrays: dict, trainer, mismatches: list) -> list:
    """(callback, state) for this trainer's callbacks that the checkpoint holds a state of (by
    position and class), each tried on a copy first so that a bad one loads nothing."""
    out = []
    if not isinstance(saved, dict):
        mismatches.append("callback states are not a JSON object")
        return out
    for i, callback in enumerate(getattr(trainer, "callbacks", [])):
        entry = saved.get(str(i))
        if not isinstance(entry, dict) or entry.get("class") != type(callback).__name__:
            continue  # not saved (or another callback there): it starts afresh
        state = {**(entry.get("values") or {}), **arrays.get(str(i), {})}
        try:
            copy.deepcopy(callback).load_state(state)
        except (TypeError, ValueError, KeyError) as error:
            mismatches.append(f"callback {i} ({type(callback).__name__}) state: {error!r}")
            continue
        out.append((callback, state))
    return out
