"""How the kit finds, names and builds a component (a registered name, ``"dist:name"`` or a
class). Part of ``nnx.testing`` (import from there)."""

from __future__ import annotations

import inspect

from nnx.registry import normalize, registry

# A layer that needs arguments without defaults gets these in the kit: dense's units, and a
# composite block's layers (a dense of 4 units and tanh, which keeps the kit's (4,) samples).
LAYER_EXAMPLES = {"units": 3, "layers": [{"name": "dense", "units": 4}, "tanh"]}


class ComponentUnavailable(Exception):
    """A component that cannot be checked here (a dataset whose files are missing).

    Raised instead of a failure; in a test, ``pytest.skip(str(error))`` says why it was skipped.
    """


def component_class(kind: str, component) -> type:
    """The class of a registered name (``"relu"``, ``"dist:name"``), or the class itself."""
    if isinstance(component, type):
        return component
    return registry(kind).get(component)


def component_label(kind: str, component) -> str:
    """How messages call a component: its registered name (found for a class when registered)."""
    if not isinstance(component, type):
        return str(component)
    value = f"{component.__module__}:{component.__qualname__}"
    for entry in registry(kind).entries():  # metadata only: nothing is imported
        if entry.value == value:
            return entry.name if normalize(entry.distribution) == "nnx" else entry.qualified_name
    return component.__qualname__


def default_instance(kind: str, name, **kwargs):
    """Build ``name`` (a registered name or a class) from its constructor defaults.

    ``kwargs`` are given to the constructor (a dataset's ``data_dir``), over the class's own
    ``example["kwargs"]``. Fails when a parameter has neither a default nor a value here (except
    a layer's ``units`` and ``layers``, given ``LAYER_EXAMPLES``).
    """
    cls = component_class(kind, name)
    name = component_label(kind, name)
    # A component whose constructor needs arguments declares an ``example`` to be checked with
    # (``{"kwargs": {"channels": 3, "kernel": 3}, "in_shape": (2, 6, 6)}``); given ones win.
    kwargs = {**(getattr(cls, "example", None) or {}).get("kwargs", {}), **kwargs}
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is inspect.Parameter.empty and p.name not in kwargs
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if kind == "layers" and required and set(required) <= set(LAYER_EXAMPLES):
        return cls(**{k: LAYER_EXAMPLES[k] for k in required}, **kwargs)
    if required:
        raise AssertionError(f"{kind} {name!r}: parameters {required} have no default")
    return cls(**kwargs)
