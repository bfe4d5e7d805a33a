"""A sequential network: layers applied in order, gradients propagated back in reverse.

After building, every parameter and every gradient of every layer is a *view* into one flat
buffer (``flat_params``, ``flat_grads``). The optimizer can then update the whole network with
a handful of vectorised operations instead of a handful per array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnx.module import Module, all_finite

LayerSpec = "str | dict | Module"


def _as_module(spec) -> Module:
    """A module from a spec: a Module, a registered name, or {"name": ..., **kwargs}."""
    if isinstance(spec, Module):
        return spec
    from nnx.registry import MODULE_KINDS, registry

    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a layer spec must be a name or a dict with 'name', got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    for kind in MODULE_KINDS:
        if name in registry(kind).names() or ":" in name and name.partition(":")[2] in registry(kind).names():
            return registry(kind).build(name, **kwargs)
    valid = [n for kind in MODULE_KINDS for n in registry(kind).names()]
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown layer or activation {name!r}.{hint} Valid names: {', '.join(valid)}.")


class Network(Module):
    """Layers in sequence. ``Network([Dense(4), Sigmoid(), Dense(1), Sigmoid()], in_features=3)``."""

    def __init__(self, layers: Sequence, in_features: int, *,
                 rng: np.random.Generator | None = None, dtype=np.float64) -> None:
        super().__init__()
        if not (isinstance(in_features, (int, np.integer)) and in_features > 0):
            raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        rng = rng if rng is not None else np.random.default_rng()
        self.layers = [_as_module(spec) for spec in layers]
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        self.in_features = int(in_features)
        self.shapes = []  # (in, out) feature count of each layer, for the summary
        size = self.in_features
        for i, layer in enumerate(self.layers):
            layer.name = f"layer {i} ({type(layer).__name__.lower()})"
            out = layer.build(size, rng, self.dtype)
            self.shapes.append((size, out))
            size = out
        self.out_features = size
        self._flatten()
        first = self.layers[0]
        if hasattr(first, "propagate"):
            first.propagate = False  # see Dense.propagate

    def _flatten(self) -> None:
        entries = [(layer, key) for layer in self.layers for key in layer.params]
        total = sum(layer.params[key].size for layer, key in entries)
        self.flat_params = np.empty(total, self.dtype)
        self.flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for layer, key in entries:
            value = layer.params[key]
            end = offset + value.size
            layer.params[key] = self.flat_params[offset:end].reshape(value.shape)
            layer.params[key][...] = value
            layer.grads[key] = self.flat_grads[offset:end].reshape(value.shape)
            offset = end
        # The network's own params: one entry, the whole buffer (what the optimizer steps).
        self.params = {"flat": self.flat_params}
        self.grads = {"flat": self.flat_grads}

    # -- the two passes ------------------------------------------------------------------
    def forward(self, x: np.ndarray, check: bool = True) -> np.ndarray:
        """Output for a batch x (n, in_features): the caller's, never changed by a later call."""
        if check:
            x = self.check_input(x)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        """Fill every layer's grads from dL/d(output); returns dL/d(input) when the first layer
        propagates it (set ``layers[0].propagate = True`` to get it)."""
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(
                f"network input must be 2-D (n, {self.in_features}), got shape {x.shape}; "
                "reshape a single sample with x.reshape(1, -1)"
            )
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"network expects {self.in_features} input features, got shape {x.shape}"
            )
        if x.dtype.kind not in "biuf" or not all_finite(x):
            raise ValueError("network input contains NaN or inf (or is not numeric)")
        return x.astype(self.dtype, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Outputs in eval mode (no dropout), as a fresh array, batch by batch."""
        x = self.check_input(x)
        was_training = [layer.training for layer in self.layers]
        network_was_training = self.training
        self.eval()
        try:
            # concatenate copies: the result never shares memory with x or with a layer
            parts = [self.forward(x[i:i + batch_size], check=False)
                     for i in range(0, max(len(x), 1), batch_size)]
        finally:
            for layer, mode in zip(self.layers, was_training):
                layer.training = mode
            self.training = network_was_training
        return np.concatenate(parts) if len(x) else np.empty((0, self.out_features), self.dtype)

    def train(self, mode: bool = True) -> Network:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    # -- inspection ----------------------------------------------------------------------
    def named_params(self) -> dict[str, np.ndarray]:
        """Every parameter array by a readable key, e.g. ``"0.W"`` (views into flat_params)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def named_grads(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    @property
    def n_params(self) -> int:
        return int(self.flat_params.size)

    def specs(self) -> list[dict]:
        """Layer specs that rebuild this architecture (registry names + constructor arguments)."""
        from nnx.registry import MODULE_KINDS, registry

        specs = []
        for layer in self.layers:
            name = None
            for kind in MODULE_KINDS:
                for entry in registry(kind).entries():
                    if entry.value == f"{type(layer).__module__}:{type(layer).__qualname__}":
                        name = entry.qualified_name if entry.distribution != "nnx" else entry.name
            if name is None:
                raise ValueError(f"{layer.name} is not a registered component; cannot describe it")
            specs.append({"name": name, **layer.config()})
        return specs

    def summary(self) -> str:
        """A table: layer, output shape, parameter count."""
        rows = [("#", "layer", "output", "params")]
        for i, (layer, (_, out)) in enumerate(zip(self.layers, self.shapes)):
            count = sum(p.size for p in layer.params.values())
            rows.append((str(i), repr(layer), f"(n, {out})", f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        rule = "-" * len(lines[0])
        footer = f"input (n, {self.in_features}), {self.n_params:,} parameters, {self.dtype}"
        return "\n".join([lines[0], rule, *lines[1:], rule, footer])

    def __repr__(self) -> str:
        return f"Network({len(self.layers)} layers, {self.in_features} -> {self.out_features})"


def mlp(in_features: int, hidden: Sequence[int], out_features: int, *, activation="relu",
        output_activation="identity", initializer="glorot_uniform", bias: bool = True,
        dropout: float = 0.0, rng: np.random.Generator | None = None, dtype=np.float64) -> Network:
    """A multi-layer perceptron: [Dense, activation, (Dropout)] per hidden size, then Dense + output."""
    specs: list = []
    for units in hidden:
        specs.append({"name": "dense", "units": units, "bias": bias, "initializer": initializer})
        specs.append(activation)
        if dropout:
            specs.append({"name": "dropout", "rate": dropout})
    specs.append({"name": "dense", "units": out_features, "bias": bias, "initializer": initializer})
    specs.append(output_activation)
    return Network(specs, in_features, rng=rng, dtype=dtype)
