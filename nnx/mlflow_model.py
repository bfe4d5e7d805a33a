"""A trained network as plain files, and the MLflow pyfunc loader for them (no pickle).

A saved network is a folder of two files:

    network.json   {"format": 1, "architecture": network.specs(), "in_features": 2,
                    "out_features": 1, "dtype": "float64", "nnx_version": "0.1.0"}
    weights.npz    one array per parameter, keyed like ``Network.named_params()`` ("0.W", ...)

``mlflow.pyfunc.log_model(loader_module="nnx.mlflow_model", data_path=<that folder>)`` records
the folder in an MLflow model; MLflow then calls ``_load_pyfunc(data_path)`` to load it. The
weights are read with ``allow_pickle=False`` and the architecture is rebuilt through the
registry, so loading a model never runs code stored with it. This module imports no mlflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = 1
ARCHITECTURE_FILE = "network.json"
WEIGHTS_FILE = "weights.npz"


def save_network(network, folder: str | Path) -> Path:
    """Write ``network`` to ``folder`` (created) as network.json + weights.npz; returns it."""
    from nnx import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "architecture": network.specs(),
        "in_features": network.in_features,
        "out_features": network.out_features,
        "dtype": str(network.dtype),
        "nnx_version": __version__,
    }
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    np.savez(folder / WEIGHTS_FILE, **network.named_params())
    return folder


def load_network(folder: str | Path):
    """The network saved in ``folder`` by :func:`save_network`, weights restored exactly."""
    from nnx.network import Network

    folder = Path(folder)
    meta_path, weights_path = folder / ARCHITECTURE_FILE, folder / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved nnx network: {path.name} is missing")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT}")
    network = Network(meta["architecture"], meta["in_features"], dtype=meta["dtype"],
                      rng=np.random.default_rng(0))
    params = network.named_params()
    with np.load(weights_path, allow_pickle=False) as weights:
        stored = set(weights.files)
        if stored != set(params):
            raise ValueError(f"{weights_path}: parameters {sorted(stored)} do not match the "
                             f"architecture's {sorted(params)}")
        for key, value in params.items():
            if weights[key].shape != value.shape:
                raise ValueError(f"{weights_path}: {key} has shape {weights[key].shape}, the "
                                 f"architecture needs {value.shape}")
            value[...] = weights[key]
    return network.eval()


class NetworkModel:
    """What MLflow's pyfunc wrapper calls: ``predict(model_input) -> network outputs``."""

    def __init__(self, network) -> None:
        self.network = network

    def predict(self, model_input, params: dict | None = None) -> np.ndarray:
        """Outputs (n, out_features) for inputs (n, in_features): an array, a list of rows,
        a pandas DataFrame (its columns in order), or a dict holding one such array."""
        if isinstance(model_input, dict):
            if len(model_input) != 1:
                raise ValueError(f"expected one input array, got keys {sorted(model_input)}")
            model_input = next(iter(model_input.values()))
        if hasattr(model_input, "to_numpy"):  # pandas DataFrame
            model_input = model_input.to_numpy()
        return self.network.predict(np.asarray(model_input, dtype=self.network.dtype))


def _load_pyfunc(data_path: str) -> NetworkModel:
    """MLflow's hook for ``loader_module="nnx.mlflow_model"``: the model in ``data_path``."""
    return NetworkModel(load_network(data_path))


SNAPSHOT_META = "__network_json__"


def save_snapshot(network, path: str | Path) -> Path:
    """One self-contained ``.npz``: the named parameters plus the architecture as JSON bytes."""
    from nnx import __version__

    meta = {"format": FORMAT, "architecture": network.specs(), "in_features": network.in_features,
            "out_features": network.out_features, "dtype": str(network.dtype),
            "nnx_version": __version__}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **network.named_params(),
             **{SNAPSHOT_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    return path


def load_snapshot(path: str | Path):
    """The network in a snapshot written by :func:`save_snapshot` (read without pickle)."""
    from nnx.network import Network

    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if SNAPSHOT_META not in arrays:
        raise ValueError(f"{path} is not an nnx weights snapshot (no {SNAPSHOT_META})")
    meta = json.loads(arrays.pop(SNAPSHOT_META).tobytes().decode())
    network = Network(meta["architecture"], meta["in_features"], dtype=meta["dtype"],
                      rng=np.random.default_rng(0))
    params = network.named_params()
    if set(arrays) != set(params):
        raise ValueError(f"{path}: parameters {sorted(arrays)} do not match the architecture's "
                         f"{sorted(params)}")
    for key, value in params.items():
        value[...] = arrays[key]
    return network.eval()
