"""A sequential network: layers applied in order, gradients propagated back in reverse.

The network is built from the per-sample input shape (``in_shape``); each layer's ``build``
gets the shape the previous one returned, so a mismatch fails at once, naming the layer and
both shapes. After building, every parameter and every gradient of every layer (walking into
composite blocks) is a *view* into one flat buffer (``flat_params``, ``flat_grads``), and every
buffer of state that is not trained into ``flat_buffers``. The optimizer can then update the
whole network with a handful of vectorised operations instead of a handful per array; it gets
``decay = {"flat": mask}``, True where weight decay applies (the layers' ``decay`` flags).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnx.blocks import as_module, build_layers, module_spec
from nnx.module import Module, all_finite, as_shape, batch_shape

LayerSpec = "str | dict | Module"
_as_module = as_module  # the name this module used before nnx.blocks held it


def leaves(layers: Sequence[Module], path: str = ""):
    """(path, module) of every module without children, in order, walking into blocks:
    ``("0", dense)``, ``("2.0", dense)`` for the first layer of the block at position 2."""
    for i, layer in enumerate(layers):
        here = f"{path}.{i}" if path else str(i)
        children = layer.children()
        if children:
            yield from leaves(children, here)
        else:
            yield here, layer


class Network(Module):
    """Layers in sequence, built from the per-sample input shape.

    ``Network([Dense(4), Sigmoid(), Dense(1), Sigmoid()], in_features=3)``, or for images
    ``Network(["flatten", {"name": "dense", "units": 10}], in_shape=(1, 28, 28))``:
    ``in_features=n`` is short for ``in_shape=(n,)``. Inputs are (n, *in_shape).
    """

    def __init__(self, layers: Sequence, in_features: int | None = None, *,
                 in_shape: Sequence[int] | None = None, rng: np.random.Generator | None = None,
                 dtype=np.float64) -> None:
        super().__init__()
        self.in_shape = _input_shape(in_features, in_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        rng = rng if rng is not None else np.random.default_rng()
        self.layers = [as_module(spec) for spec in layers]
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        self.out_shape = build_layers(self.layers, self.in_shape, rng, self.dtype, "")
        self.shapes = [layer.built_shapes for layer in self.layers]  # (in, out) per layer
        self._flatten()
        # Nobody needs dL/d(input data), so the first layer skips it (see Dense.propagate); and
        # when the layers before the first one with parameters hold none themselves (random_flip,
        # random_shift placed first), nobody needs theirs either: that one skips it too.
        for layer in self.layers:
            if not hasattr(layer, "propagate"):
                break
            layer.propagate = False
            if layer.params:
                break

    @property
    def in_features(self) -> int:
        """Values per input sample (the flattened size of ``in_shape``)."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        """Values per output sample (the flattened size of ``out_shape``)."""
        return math.prod(self.out_shape)

    def children(self) -> list[Module]:
        return list(self.layers)

    def _flatten(self) -> None:
        """Re-point every leaf's params and grads into flat_params/flat_grads, its buffers into
        flat_buffers; build the decay mask (True where weight decay applies)."""
        modules = [module for _, module in leaves(self.layers)]
        self.flat_params, views = _pack(modules, "params", self.dtype)
        self.flat_grads, grads = _pack(modules, "params", self.dtype, zeros=True)
        self.flat_buffers, buffers = _pack(modules, "buffers", self.dtype)
        mask = np.empty(self.flat_params.size, bool)
        offset = 0
        for module, own, own_grads in zip(modules, views, grads):
            for key, view in own.items():
                mask[offset:offset + view.size] = bool(module.decay.get(key, True))
                offset += view.size
            module.params.update(own)
            module.grads.update(own_grads)
        for module, own in zip(modules, buffers):
            module.buffers.update(own)
        # The network's own params: one entry, the whole buffer (what the optimizer steps);
        # decay: the mask the optimizer applies weight decay through.
        self.params = {"flat": self.flat_params}
        self.grads = {"flat": self.flat_grads}
        self.decay = {"flat": mask}
        self.buffers = {"flat": self.flat_buffers}

    # -- the two passes ------------------------------------------------------------------
    def forward(self, x: np.ndarray, check: bool = True) -> np.ndarray:
        """Output for a batch x (n, *in_shape): the caller's, never changed by a later call."""
        if check:
            x = self.check_input(x)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        """Fill every layer's grads from dL/d(output); returns dL/d(input) when the first layers
        propagate it (set ``layers[0].propagate = True`` to get it, and the same on the layers
        up to the first with parameters when those before it hold none)."""
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        expected = batch_shape(self.in_shape)
        if x.ndim != 1 + len(self.in_shape):
            one = "x.reshape(1, -1)" if len(self.in_shape) == 1 else \
                f"x.reshape(1, {', '.join(map(str, self.in_shape))})"
            raise ValueError(
                f"network input must be {1 + len(self.in_shape)}-D {expected}, got shape "
                f"{x.shape}; reshape a single sample with {one}")
        if x.shape[1:] != self.in_shape:
            what = (f"{self.in_features} input features" if len(self.in_shape) == 1
                    else f"input of shape {expected}")
            raise ValueError(f"network expects {what}, got shape {x.shape}")
        if x.dtype.kind not in "biuf" or not all_finite(x):
            raise ValueError("network input contains NaN or inf (or is not numeric)")
        return x.astype(self.dtype, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Outputs in eval mode (no dropout), as a fresh array, batch by batch."""
        x = self.check_input(x)
        modules = [self, *(m for _, _, m in _walk(self.layers))]
        was_training = [m.training for m in modules]
        self.eval()
        try:
            # concatenate copies: the result never shares memory with x or with a layer
            parts = [self.forward(x[i:i + batch_size], check=False)
                     for i in range(0, max(len(x), 1), batch_size)]
        finally:
            for module, mode in zip(modules, was_training):
                module.training = mode
        return np.concatenate(parts) if len(x) else np.empty((0, *self.out_shape), self.dtype)

    def train(self, mode: bool = True) -> Network:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    # -- inspection ----------------------------------------------------------------------
    def named_params(self) -> dict[str, np.ndarray]:
        """Every parameter array by a readable key, e.g. ``"0.W"``, ``"2.0.b"`` inside the block
        at position 2 (views into flat_params)."""
        return {f"{path}.{k}": v for path, m in leaves(self.layers) for k, v in m.params.items()}

    def named_grads(self) -> dict[str, np.ndarray]:
        return {f"{path}.{k}": v for path, m in leaves(self.layers) for k, v in m.grads.items()}

    def named_buffers(self) -> dict[str, np.ndarray]:
        """Every buffer (state not trained) by key, like ``named_params`` (views into
        flat_buffers)."""
        return {f"{path}.{k}": v for path, m in leaves(self.layers) for k, v in m.buffers.items()}

    @property
    def n_params(self) -> int:
        return int(self.flat_params.size)

    def specs(self) -> list[dict]:
        """Layer specs that rebuild this architecture (registry names + constructor arguments)."""
        return [module_spec(layer) for layer in self.layers]

    def summary(self) -> str:
        """A table: layer, output shape, parameter count; a block's layers indented under it."""
        rows = [("#", "layer", "output", "params")]
        for path, depth, layer in _walk(self.layers):
            count = sum(p.size for p in layer.params.values())
            rows.append((path, "  " * depth + repr(layer) if not layer.children()
                         else "  " * depth + type(layer).__name__,
                         batch_shape(layer.built_shapes[1]), f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        rule = "-" * max(len(line) for line in lines)
        extra = f", {self.flat_buffers.size:,} buffer values" if self.flat_buffers.size else ""
        footer = (f"input {batch_shape(self.in_shape)}, {self.n_params:,} parameters{extra}, "
                  f"{self.dtype}")
        return "\n".join([lines[0], rule, *lines[1:], rule, footer])

    def __repr__(self) -> str:
        if len(self.in_shape) == 1 and len(self.out_shape) == 1:
            return f"Network({len(self.layers)} layers, {self.in_features} -> {self.out_features})"
        return f"Network({len(self.layers)} layers, {self.in_shape} -> {self.out_shape})"


def _walk(layers: Sequence[Module], path: str = "", depth: int = 0):
    """(path, depth, module) of every module, blocks and their layers, in order."""
    for i, layer in enumerate(layers):
        here = f"{path}.{i}" if path else str(i)
        yield here, depth, layer
        yield from _walk(layer.children(), here, depth + 1)


def _input_shape(in_features, in_shape) -> tuple[int, ...]:
    """The per-sample input shape from ``in_features`` (an int, or a shape) or ``in_shape``."""
    if in_features is not None and in_shape is not None:
        raise ValueError(f"give in_shape or in_features, not both (got {in_shape!r} and "
                         f"{in_features!r})")
    if in_features is None and in_shape is None:
        raise ValueError("a network needs its input: in_shape=(1, 28, 28) or in_features=784")
    if in_shape is None:
        if isinstance(in_features, (tuple, list)):
            in_shape = in_features
        elif not (isinstance(in_features, (int, np.integer)) and in_features > 0) \
                or isinstance(in_features, bool):
            raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
    try:
        return as_shape(in_shape if in_shape is not None else in_features)
    except ValueError:
        raise ValueError(f"in_shape must be a tuple of positive integers, got {in_shape!r}") \
            from None


def _pack(modules: list[Module], attribute: str, dtype, zeros: bool = False):
    """One flat array holding every module's ``attribute`` arrays, and per module the views
    into it (same keys, same shapes), filled with the values (or zeros)."""
    entries = [(i, key, value) for i, m in enumerate(modules)
               for key, value in getattr(m, attribute).items()]
    flat = (np.zeros if zeros else np.empty)(sum(v.size for _, _, v in entries), dtype)
    views: list[dict[str, np.ndarray]] = [{} for _ in modules]
    offset = 0
    for i, key, value in entries:
        view = flat[offset:offset + value.size].reshape(value.shape)
        if not zeros:
            view[...] = value
        views[i][key] = view
        offset += value.size
    return flat, views


def mlp(in_features: int, hidden: Sequence[int], out_features: int, *, activation="relu",
        output_activation="identity", initializer="glorot_uniform", bias: bool = True,
        dropout: float = 0.0, rng: np.random.Generator | None = None, dtype=np.float64,
        in_shape: Sequence[int] | None = None) -> Network:
    """A multi-layer perceptron: [Dense, activation, (Dropout)] per hidden size, then Dense + output.

    Given ``in_shape`` of more than one dimension (an image), it starts with a flatten layer.
    """
    specs: list = []
    if in_shape is not None and len(in_shape) > 1:
        specs.append("flatten")
    for units in hidden:
        specs.append({"name": "dense", "units": units, "bias": bias, "initializer": initializer})
        specs.append(activation)
        if dropout:
            specs.append({"name": "dropout", "rate": dropout})
    specs.append({"name": "dense", "units": out_features, "bias": bias, "initializer": initializer})
    specs.append(output_activation)
    if in_shape is not None:
        return Network(specs, in_shape=in_shape, rng=rng, dtype=dtype)
    return Network(specs, in_features, rng=rng, dtype=dtype)
