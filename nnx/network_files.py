"""A trained network as plain files, read back without pickle.

Two forms, both rebuilt through the registry from the architecture they store:

A saved network is a folder of two files (what a logged MLflow model holds, in ``data/network``):

    network.json   {"format": 1, "architecture": network.specs(), "in_shape": [2],
                    "out_shape": [1], "in_features": 2, "out_features": 1,
                    "dtype": "float64", "nnx_version": "0.1.0"}
    weights.npz    one array per parameter, keyed like ``Network.named_params()`` ("0.W", ...),
                   and one per buffer (state not trained) under ``buffers/`` ("buffers/1.mean")

Files written before shapes hold ``in_features`` alone (the shape ``(in_features,)``) and no
buffers; they load as they did.
A weights snapshot (``weights/final.npz`` of a run) is one ``.npz``: the same arrays plus the
same JSON document as bytes under ``__network_json__``.

``requirements`` lists the plugin distributions (with versions) whose components the network
uses; loading where one is missing fails with its name and the pip command.

Weights are read with ``allow_pickle=False`` and the architecture is rebuilt through the
registry, so loading a network never runs code stored with it. No mlflow here: the MLflow
pyfunc loader that serves a saved network is ``nnx.mlflow_model``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnx.limits import check_npz, read_json

FORMAT = 1
ARCHITECTURE_FILE = "network.json"
WEIGHTS_FILE = "weights.npz"
SNAPSHOT_META = "__network_json__"
BUFFERS = "buffers/"


def network_meta(network) -> dict:
    """The JSON document that describes ``network``'s architecture in both forms."""
    from nnx import __version__

    return {"format": FORMAT, "architecture": network.specs(), "in_shape": list(network.in_shape),
            "out_shape": list(network.out_shape), "in_features": network.in_features,
            "out_features": network.out_features, "dtype": str(network.dtype),
            "nnx_version": __version__, "requirements": requirements(network.specs())}


def requirements(specs: list) -> dict[str, str]:
    """{distribution: version} of the plugins whose layers ``specs`` use (blocks' included),
    nnx itself left out: what a saved network needs installed besides nnx."""
    from nnx.blocks import all_specs, spec_kind
    from nnx.registry import normalize, registry

    out = {}
    for spec in all_specs(specs):
        kind = spec_kind(spec["name"])
        if kind is None:
            continue
        entry = registry(kind).entry(spec["name"])
        if normalize(entry.distribution) != "nnx":
            out[entry.distribution] = entry.version
    return dict(sorted(out.items()))


def check_requirements(meta: dict, where) -> None:
    """A clear error when a distribution the saved network was made with is not installed."""
    import importlib.metadata

    missing = []
    for dist, version in (meta.get("requirements") or {}).items():
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append((dist, version))
    if missing:
        names = ", ".join(f"{d} {v}" for d, v in missing)
        pins = " ".join(f"{d}=={v}" for d, v in missing)
        raise ValueError(f"{where}: this network was made with components of {names}, which "
                         f"is not installed; install it with: pip install {pins}")


def _arrays(network) -> dict[str, np.ndarray]:
    """What a saved network stores: its named parameters and buffers (prefixed)."""
    return {**network.named_params(),
            **{f"{BUFFERS}{k}": v for k, v in network.named_buffers().items()}}


def _restore(network, arrays, where) -> None:
    """Fill ``network``'s parameters and buffers from ``arrays`` (a dict or an open .npz)."""
    wanted = _arrays(network)
    stored = set(arrays.keys() if isinstance(arrays, dict) else arrays.files)
    if stored != set(wanted):
        raise ValueError(f"{where}: parameters {sorted(stored)} do not match the "
                         f"architecture's {sorted(wanted)}")
    for key, value in wanted.items():
        if arrays[key].shape != value.shape:
            raise ValueError(f"{where}: {key} has shape {arrays[key].shape}, the "
                             f"architecture needs {value.shape}")
        value[...] = arrays[key]


def _network_for(meta: dict, where=""):
    """A network of the architecture ``meta`` describes (its weights still to be filled in).

    The weights file was checked against memory already; an architecture that asks for far
    more than it stores is refused here rather than ending the process in MemoryError."""
    from nnx.checkpoint import saved_in_shape
    from nnx.network import Network

    missing = [k for k in ("architecture", "dtype") if k not in meta]
    if "in_shape" not in meta and "in_features" not in meta:
        missing.append("in_shape")
    if missing:
        raise ValueError(f"{where}: not an nnx network description ({', '.join(missing)} "
                         "missing)")
    check_requirements(meta, where)
    try:
        return Network(meta["architecture"], in_shape=saved_in_shape(meta), dtype=meta["dtype"],
                       rng=np.random.default_rng(0))
    except MemoryError as error:
        raise ValueError(f"{where}: its architecture needs more memory than is available "
                         f"({error})") from error


# -- a folder: network.json + weights.npz ------------------------------------------------------
def save_network(network, folder: str | Path) -> Path:
    """Write ``network`` to ``folder`` (created) as network.json + weights.npz; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(network_meta(network), indent=2) + "\n")
    np.savez(folder / WEIGHTS_FILE, **_arrays(network))
    return folder


def load_network(folder: str | Path):
    """The network saved in ``folder`` by :func:`save_network`, weights restored exactly."""
    folder = Path(folder)
    meta_path, weights_path = folder / ARCHITECTURE_FILE, folder / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved nnx network: {path.name} is missing")
    meta = read_json(meta_path.read_text(), meta_path)
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    if found != FORMAT:  # a ValueError like every other damaged-file error here
        raise ValueError(f"{meta_path}: format {found!r}, expected {FORMAT}")
    check_npz(weights_path)
    network = _network_for(meta, meta_path)
    with np.load(weights_path, allow_pickle=False) as weights:
        _restore(network, weights, weights_path)
    return network.eval()


# -- a snapshot: one .npz -----------------------------------------------------------------------
def save_snapshot(network, path: str | Path) -> Path:
    """One self-contained ``.npz``: the named parameters and buffers plus the architecture as
    JSON bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(network_meta(network)).encode()
    np.savez(path, **_arrays(network),
             **{SNAPSHOT_META: np.frombuffer(meta, dtype=np.uint8)})
    return path


def load_snapshot(path: str | Path):
    """The network in a snapshot written by :func:`save_snapshot` (read without pickle)."""
    check_npz(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if SNAPSHOT_META not in arrays:
        raise ValueError(f"{path} is not an nnx weights snapshot (no {SNAPSHOT_META})")
    meta = read_json(arrays.pop(SNAPSHOT_META).tobytes(), path)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: {SNAPSHOT_META} is not a JSON object")  # noqa: TRY004
    network = _network_for(meta, path)
    _restore(network, arrays, path)
    return network.eval()
