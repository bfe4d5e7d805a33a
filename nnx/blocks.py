"""Composite blocks: layers made of layers. ``sequential`` applies its layers in order;
``residual`` adds its input to their output (y = x + f(x), He et al. 2016).

A block is built from a list of layer specs, exactly like a network's (a registered name,
``{name: ..., **kwargs}`` or a Module), so a Hydra config can nest them:

    - {name: residual, layers: [{name: dense, units: 32}, relu, {name: dense, units: 32}]}

A block holds no arrays of its own: its ``params``, ``grads``, ``buffers`` and ``decay`` are
its layers' (keyed ``"0.W"``, ``"2.b"``), read live, so when the network re-points every
parameter into its one flat buffer the block sees the new arrays. The network walks into
blocks through ``children()``.

Also here: ``as_module`` and ``module_spec``, the two directions between a spec and a module,
shared by blocks and the network.
"""

from __future__ import annotations

import difflib

from nnx.module import Module, as_shape


def registered_names() -> list[str]:
    """Every name a layer spec may use: registered layers, then activations."""
    from nnx.registry import MODULE_KINDS, registry

    return [n for kind in MODULE_KINDS for n in registry(kind).names()]


def spec_kind(name: str) -> str | None:
    """The registry kind ("layers" or "activations") that knows ``name`` (or ``dist:name``)."""
    from nnx.registry import MODULE_KINDS, registry

    for kind in MODULE_KINDS:
        names = registry(kind).names()
        if name in names or ":" in name and name.partition(":")[2] in names:
            return kind
    return None


def unknown_name_message(name) -> str:
    valid = registered_names()
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown layer or activation {name!r}.{hint} Valid names: {', '.join(valid)}."


def as_module(spec) -> Module:
    """A module from a spec: a Module, a registered name, or {"name": ..., **kwargs}."""
    if isinstance(spec, Module):
        return spec
    from nnx.registry import registry

    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a layer spec must be a name or a dict with 'name', got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    kind = spec_kind(spec["name"])
    if kind is None:
        raise ValueError(unknown_name_message(spec["name"]))
    return registry(kind).build(spec["name"], **kwargs)


def registered_name(module: Module) -> str | None:
    """The name ``module``'s class is registered under (``max_pool2d``), or None."""
    from nnx.registry import MODULE_KINDS, registry

    value, name = f"{type(module).__module__}:{type(module).__qualname__}", None
    for kind in MODULE_KINDS:
        for entry in registry(kind).entries():
            if entry.value == value:
                name = entry.qualified_name if entry.distribution != "nnx" else entry.name
    return name


def module_spec(module: Module) -> dict:
    """The spec that rebuilds ``module``: its registered name and constructor arguments."""
    name = registered_name(module)
    if name is None:
        raise ValueError(f"{getattr(module, 'name', type(module).__name__)} is not a registered "
                         "component; cannot describe it")
    return {"name": name, **module.config()}


def all_specs(specs: list) -> list[dict]:
    """Every layer spec of a list, those inside composite blocks (their ``layers``) included."""
    out = []
    for spec in specs:
        out.append(spec)
        if isinstance(spec.get("layers"), list):
            out.extend(all_specs([s for s in spec["layers"] if isinstance(s, dict)]))
    return out


def label(module: Module, path: str) -> str:
    """How messages name a module: ``layer 2.0 (dense)``, by the name configs use for it."""
    return f"layer {path} ({registered_name(module) or type(module).__name__.lower()})"


def build_layers(layers: list[Module], in_shape, rng, dtype, path: str) -> tuple[int, ...]:
    """Build ``layers`` in order from ``in_shape``; names them, records each one's
    ``(in_shape, out_shape)`` as ``built_shapes``; returns the last output shape."""
    shape = as_shape(in_shape)
    for i, layer in enumerate(layers):
        layer.path = f"{path}.{i}" if path else str(i)
        layer.name = label(layer, layer.path)
        try:
            out = as_shape(layer.build(shape, rng, dtype))
        except ValueError as error:
            before = f" (after {layers[i - 1].name}, whose output is {shape})" if i else ""
            raise ValueError(f"{error}{before}" if layer.name in str(error)
                             else f"{layer.name}: {error}{before}") from error
        layer.built_shapes = (shape, out)
        shape = out
    return shape


def _merged(layers: list[Module], attribute: str) -> dict:
    return {f"{i}.{k}": v for i, layer in enumerate(layers)
            for k, v in getattr(layer, attribute).items()}


class Block(Module):
    """Base class of composite blocks: a list of layers, whose arrays are the block's."""

    def __init__(self, layers: list) -> None:
        super().__init__()
        if isinstance(layers, (str, dict, Module)) or not hasattr(layers, "__iter__"):
            raise ValueError(f"layers must be a list of layer specs, got {layers!r}")
        self.layers = [as_module(spec) for spec in layers]
        if not self.layers:
            raise ValueError("layers must hold at least one layer spec, got []")
        self.path = ""

    # The block's arrays are its layers', read live (see the module docstring); Module's
    # __init__ assigns empty dicts, which are ignored.
    def _live(attribute: str):
        def setter(self, value):
            if value:
                raise AttributeError(f"a block's {attribute} are its layers'")
        return property(lambda self: _merged(self.layers, attribute), setter)

    params = _live("params")
    grads = _live("grads")
    buffers = _live("buffers")
    decay = _live("decay")
    del _live

    def children(self) -> list[Module]:
        return list(self.layers)

    def config(self) -> dict:
        return {"layers": [module_spec(layer) for layer in self.layers]}

    def _forward_layers(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def _backward_layers(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad


class Sequential(Block):
    """Layers in sequence: y = f_k(... f_1(x)); dL/dx by the chain rule, in reverse."""

    def build(self, in_shape, rng, dtype):
        return build_layers(self.layers, in_shape, rng, dtype, self.path)

    def forward(self, x):
        return self._forward_layers(x)

    def backward(self, grad):
        return self._backward_layers(grad)


class Residual(Block):
    """y = x + f(x), f its layers in sequence; dL/dx = dL/dy + f'(x)^T dL/dy.

    f must keep the sample shape (its output is added to its input); that is checked when the
    block is built, naming the block.
    """

    def build(self, in_shape, rng, dtype):
        in_shape = as_shape(in_shape)
        out = build_layers(self.layers, in_shape, rng, dtype, self.path)
        if out != in_shape:
            raise ValueError(f"{self.name}: its layers map {tuple(in_shape)} to {out}; a residual "
                             "block must keep the shape, since its input is added to their output")
        return out

    def forward(self, x):
        return self._forward_layers(x) + x  # a fresh array: the caller's

    def backward(self, grad):
        return self._backward_layers(grad) + grad
