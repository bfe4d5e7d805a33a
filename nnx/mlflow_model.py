"""The MLflow pyfunc loader for a saved network (no pickle).

``mlflow.pyfunc.log_model(loader_module="nnx.mlflow_model", data_path=<folder>)`` records a
folder written by ``nnx.network_files.save_network`` in an MLflow model; MLflow then calls
``_load_pyfunc(data_path)`` to load it. Logged models name this module: it must stay here under
this name. This module imports no mlflow.

``save_network``, ``load_network``, ``save_snapshot`` and ``load_snapshot`` live in
``nnx.network_files``; they are importable from here too, as they were before.
"""

from __future__ import annotations

import numpy as np

from nnx.network_files import load_network, load_snapshot, save_network, save_snapshot

__all__ = ["NetworkModel", "load_network", "load_snapshot", "save_network", "save_snapshot"]


class NetworkModel:
    """What MLflow's pyfunc wrapper calls: ``predict(model_input) -> network outputs``."""

    def __init__(self, network) -> None:
        self.network = network

    def predict(self, model_input, params: dict | None = None) -> np.ndarray:
        """Outputs (n, *out_shape) for inputs (n, *in_shape): an array, a list of rows, a
        pandas DataFrame (its columns in order), or a dict holding one such array. A network
        of N-D samples also takes each sample flattened (a row of in_features values, as a
        DataFrame holds it), reshaped here to its in_shape."""
        if isinstance(model_input, dict):
            if len(model_input) != 1:
                raise ValueError(f"expected one input array, got keys {sorted(model_input)}")
            model_input = next(iter(model_input.values()))
        if hasattr(model_input, "to_numpy"):  # pandas DataFrame
            model_input = model_input.to_numpy()
        x = np.asarray(model_input, dtype=self.network.dtype)
        shape = self.network.in_shape
        if len(shape) > 1 and x.ndim == 2 and x.shape[1] == self.network.in_features:
            x = x.reshape(len(x), *shape)
        return self.network.predict(x)


def _load_pyfunc(data_path: str) -> NetworkModel:
    """MLflow's hook for ``loader_module="nnx.mlflow_model"``: the model in ``data_path``."""
    return NetworkModel(load_network(data_path))
