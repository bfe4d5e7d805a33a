"""Find components by name through Python entry points.

Every component kind has one entry-point group (``nnx.activations``, ``nnx.optimizers``, ...).
Built-ins are declared in nnx's own ``pyproject.toml`` exactly as a third-party package
declares its own, so the registry cannot tell them apart and does not need to.

Listing names reads package metadata only (cheap, imports nothing); ``get(name)`` imports
the one module that holds the component, on first use, and caches the class.

A plugin that fails to import, is not the right kind of class, or lacks ``forward`` and
``backward`` is recorded in ``failures()`` and raises a ``PluginError`` naming the
package, the entry point and the cause when asked for by name; the rest keeps working.
When two distributions register the same name, pick one with ``"dist:name"``.
Set ``NNX_DISABLE_PLUGINS=1`` to ignore every distribution but nnx itself.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

# kind -> entry-point group; "kind" is what configs and messages call it.
GROUPS = {
    "layers": "nnx.layers",
    "activations": "nnx.activations",
    "losses": "nnx.losses",
    "optimizers": "nnx.optimizers",
    "initializers": "nnx.initializers",
    "schedules": "nnx.schedules",
    "datasets": "nnx.datasets",
}
HOME_DISTRIBUTION = "nnx"


class UnknownComponentError(ValueError):
    """A name that no installed distribution registers."""


class PluginError(ImportError):
    """A registered component that cannot be loaded or is not a valid component."""


@dataclass(frozen=True)
class Entry:
    """One registered name: where it comes from, before anything is imported."""

    kind: str
    name: str
    value: str  # "module:attribute"
    distribution: str
    version: str
    entry_point: EntryPoint

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"


def _plugins_disabled() -> bool:
    return os.environ.get("NNX_DISABLE_PLUGINS", "").lower() in {"1", "true", "yes"}


class Registry:
    """The components of one kind, found through the entry-point group of that kind."""

    def __init__(self, kind: str):
        if kind not in GROUPS:
            raise ValueError(f"unknown component kind {kind!r}; valid kinds: {sorted(GROUPS)}")
        self.kind = kind
        self.group = GROUPS[kind]
        self._loaded: dict[str, type] = {}
        self._failures: dict[str, PluginError] = {}

    # -- metadata only -------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Every registered entry of this kind, read from metadata (no plugin code runs)."""
        found = []
        seen = set()
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "unknown"
            if _plugins_disabled() and dist != HOME_DISTRIBUTION:
                continue
            key = (dist, ep.name)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            found.append(Entry(self.kind, ep.name, ep.value, dist, version, ep))
        return sorted(found, key=lambda e: (e.name, e.distribution))

    def names(self) -> list[str]:
        """Registered names, sorted; imports no plugin code."""
        return sorted({e.name for e in self.entries()})

    def __contains__(self, name: str) -> bool:
        try:
            self.entry(name)
        except (UnknownComponentError, PluginError):
            return False
        return True

    def entry(self, name: str) -> Entry:
        """The one entry that ``name`` (or ``"dist:name"``) means."""
        dist, _, short = name.rpartition(":")
        matches = [e for e in self.entries() if e.name == short]
        if dist:
            matches = [e for e in matches if e.distribution == dist]
        if not matches:
            raise UnknownComponentError(self._unknown_message(name))
        if len(matches) > 1:
            owners = ", ".join(e.distribution for e in matches)
            choices = " or ".join(repr(e.qualified_name) for e in matches)
            raise PluginError(
                f"{self.kind[:-1]} {short!r} is registered by several distributions ({owners}); "
                f"pick one with {choices}"
            )
        return matches[0]

    def _unknown_message(self, name: str) -> str:
        valid = self.names()
        close = difflib.get_close_matches(name.rpartition(":")[2], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind[:-1]} {name!r}.{hint} Valid names: {', '.join(valid)}."

    # -- loading -------------------------------------------------------------------------
    def get(self, name: str) -> type:
        """The class registered as ``name``, imported on first use."""
        entry = self.entry(name)
        key = entry.qualified_name
        if key in self._loaded:
            return self._loaded[key]
        if key in self._failures:
            raise self._failures[key]
        try:
            obj = entry.entry_point.load()
        except Exception as cause:  # a plugin may raise anything while importing
            error = PluginError(
                f"{entry.distribution}[{entry.name}]: failed to load {self.group} entry point "
                f"{entry.name} = {entry.value}: {type(cause).__name__}: {cause}"
            )
            error.__cause__ = cause
            self._failures[key] = error
            raise error from cause
        problem = _check_component(self.kind, obj)
        if problem:
            error = PluginError(
                f"{entry.distribution}[{entry.name}]: {self.group} entry point "
                f"{entry.name} = {entry.value} is not a valid {self.kind[:-1]}: {problem}"
            )
            self._failures[key] = error
            raise error
        self._loaded[key] = obj
        return obj

    def build(self, name: str, **kwargs):
        """An instance of ``name`` made with ``kwargs`` (a TypeError names the bad argument)."""
        cls = self.get(name)
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise TypeError(f"{self.kind[:-1]} {name!r}: {error}") from error

    def failures(self) -> dict[str, PluginError]:
        """Plugins that failed to load so far, by qualified name (``load_all`` to try them all)."""
        return dict(self._failures)

    def load_all(self) -> dict[str, type]:
        """Import every entry, recording failures instead of raising; returns what loaded."""
        loaded = {}
        for e in self.entries():
            try:
                loaded[e.qualified_name] = self.get(e.qualified_name)
            except PluginError:
                pass
        return loaded


def _check_component(kind: str, obj) -> str | None:
    """Why ``obj`` cannot serve as a component of ``kind``, or None when it can."""
    # Imported here so that reading metadata never imports the component modules.
    from nnx.module import Module

    if not isinstance(obj, type):
        return f"expected a class, got {type(obj).__name__}"
    if kind in {"layers", "activations"}:
        if not issubclass(obj, Module):
            return "expected a subclass of nnx.module.Module"
        for method in ("forward", "backward"):
            if getattr(obj, method, None) is getattr(Module, method):
                return f"it does not define {method}()"
    required = {
        "losses": ("forward", "backward"),
        "optimizers": ("step",),
        "initializers": ("__call__",),
        "schedules": ("__call__",),
        "datasets": ("load",),
    }.get(kind, ())
    missing = [m for m in required if not callable(getattr(obj, m, None))]
    if missing:
        return f"it lacks {', '.join(m + '()' for m in missing)}"
    return None


_REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The shared registry of one kind."""
    if kind not in _REGISTRIES:
        _REGISTRIES[kind] = Registry(kind)
    return _REGISTRIES[kind]


def get(kind: str, name: str) -> type:
    """Shortcut: ``get("activations", "relu")`` is the ReLU class."""
    return registry(kind).get(name)


def build(kind: str, name: str, **kwargs):
    """Shortcut: ``build("optimizers", "adam", lr=1e-3)``."""
    return registry(kind).build(name, **kwargs)


def names(kind: str) -> list[str]:
    """Shortcut: registered names of one kind."""
    return registry(kind).names()
