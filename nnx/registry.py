"""Find components by name through Python entry points.

Every component kind has one entry-point group (``nnx.activations``, ``nnx.optimizers``, ...).
Built-ins are declared in nnx's own ``pyproject.toml`` exactly as a third-party package
declares its own, so the registry cannot tell them apart and does not need to.

Listing names reads package metadata only (cheap, imports nothing); ``get(name)`` imports
the one module that holds the component, on first use, and caches the class.

A plugin that fails to import, is not a class derived from its kind's base class, or does
not implement the methods that kind needs is recorded in ``failures()`` and raises a
``PluginError`` naming the package, the entry point and the cause when asked for by name;
the rest keeps working. When two distributions register the same name, asking for the bare
name raises an ``AmbiguousComponentError`` naming both; pick one with ``"dist:name"``.
Set ``NNX_DISABLE_PLUGINS=1`` to ignore every distribution but nnx itself.

Metadata is read once per registry; after changing ``sys.path`` or installing a package in a
running process, call ``reset()``.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

HOME_DISTRIBUTION = "nnx"
DISABLE_VARIABLE = "NNX_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Kind:
    """One kind of component: everything nnx knows about it, in one record.

    ``required_methods``: methods a component must implement itself rather than inherit
    from ``base`` (each tuple: any one of these names will do; the base's own ``step`` and
    ``__call__`` are complete, so overriding them instead of the hook is allowed).
    ``config_group``: the top-level config node that names one component of this kind
    (``optimizer: {name: adam, lr: ...}``), None when components are named elsewhere
    (layers, activations and initializers by ``model.*``).
    """

    name: str  # what configs, messages and ``registry(kind)`` call it
    singular: str  # one component, in messages: "unknown optimizer 'adm'"
    base: str  # "module:attribute" of the class every component derives from
    required_methods: tuple[tuple[str, ...], ...]
    config_group: str | None = None

    @property
    def group(self) -> str:
        """The entry-point group: ``nnx.<name>``."""
        return f"nnx.{self.name}"


# The one table of component kinds; every list below derives from it.
KINDS = (
    Kind("layers", "layer", "nnx.module:Module", (("forward",), ("backward",))),
    Kind("activations", "activation", "nnx.module:Module", (("forward",), ("backward",))),
    Kind("losses", "loss", "nnx.losses:Loss", (("forward",), ("backward",)), "loss"),
    Kind("optimizers", "optimizer", "nnx.optimizers:Optimizer", (("update", "step"),),
         "optimizer"),
    Kind("initializers", "initializer", "nnx.initializers:Initializer", (("draw", "__call__"),)),
    Kind("schedules", "schedule", "nnx.schedules:Schedule", (("__call__",),), "schedule"),
    Kind("datasets", "dataset", "nnx.datasets:DatasetSource", (("load",),), "dataset"),
)
_BY_NAME = {k.name: k for k in KINDS}
# The kinds a network's layer list names: those whose components are Modules.
MODULE_KINDS = tuple(k.name for k in KINDS if k.base == "nnx.module:Module")
# Two columns of the table by kind name, for callers that want only the column.
GROUPS = {k.name: k.group for k in KINDS}
SINGULAR = {k.name: k.singular for k in KINDS}


def kind_record(name: str) -> Kind:
    """The record of kind ``name``, or a ValueError listing the valid kinds."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown component kind {name!r}; valid kinds: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


class UnknownComponentError(ValueError):
    """A name that no installed distribution registers."""


class PluginError(ImportError):
    """A registered component that cannot be loaded or is not a valid component.

    ``kind``, ``name``, ``distribution``, ``version`` and ``entry_point`` (``"name = value"``)
    say which entry point failed; ``reason`` says why, in one line.
    """

    def __init__(self, message: str, *, kind: str | None = None, name: str | None = None,
                 distribution: str | None = None, version: str | None = None,
                 entry_point: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.name, self.distribution, self.version = kind, name, distribution, version
        self.entry_point, self.reason = entry_point, reason


class AmbiguousComponentError(PluginError):
    """A bare name registered by several distributions; ``"dist:name"`` picks one."""


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


def normalize(distribution: str) -> str:
    """PEP 503 form of a distribution name: ``NNX_Example.Plugin`` -> ``nnx-example-plugin``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def plugins_disabled() -> bool:
    """True when ``NNX_DISABLE_PLUGINS`` is set to 1/true/yes: only nnx's own entries count."""
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """The components of one kind, found through the entry-point group of that kind."""

    def __init__(self, kind: str):
        record = kind_record(kind)
        self.kind, self.group, self.singular = kind, record.group, record.singular
        self._all: list[Entry] | None = None  # every distribution's entries, plugins included
        self._loaded: dict[str, type] = {}
        self._failures: dict[str, PluginError] = {}

    # -- metadata only -------------------------------------------------------------------
    def _scan(self) -> list[Entry]:
        """All entries of the group, from the metadata read once for every group."""
        if self._all is None:
            found, seen = [], set()
            for ep in _all_entry_points().select(group=self.group):
                dist = ep.dist.name if ep.dist is not None else "unknown"
                version = ep.dist.version if ep.dist is not None else "unknown"
                key = (normalize(dist), ep.name)
                if key in seen:  # the same distribution twice on sys.path: the first one wins
                    continue
                seen.add(key)
                found.append(Entry(self.kind, ep.name, ep.value, dist, version, ep))
            self._all = sorted(found, key=lambda e: (e.name, normalize(e.distribution)))
        return self._all

    def entries(self) -> list[Entry]:
        """Every registered entry of this kind, read from metadata (no plugin code runs)."""
        if plugins_disabled():
            return [e for e in self._scan() if normalize(e.distribution) == HOME_DISTRIBUTION]
        return list(self._scan())

    def names(self) -> list[str]:
        """Registered names, sorted; imports no plugin code."""
        return sorted({e.name for e in self.entries()})

    def __contains__(self, name: object) -> bool:
        """True when ``name`` (or ``"dist:name"``) is registered, even if ambiguous or broken."""
        if not isinstance(name, str):
            return False
        dist, _, short = name.rpartition(":")
        return any(e.name == short and (not dist or normalize(e.distribution) == normalize(dist))
                   for e in self.entries())

    def entry(self, name: str) -> Entry:
        """The one entry that ``name`` (or ``"dist:name"``) means."""
        if not isinstance(name, str):
            raise UnknownComponentError(
                f"expected a registered {self.singular} name, got {name!r}. "
                f"Valid names: {', '.join(self.names())}.")
        dist, _, short = name.rpartition(":")
        matches = [e for e in self.entries() if e.name == short]
        if dist:
            matches = [e for e in matches if normalize(e.distribution) == normalize(dist)]
        if not matches:
            raise UnknownComponentError(self._unknown_message(name))
        if len(matches) > 1:
            owners = " and ".join(e.distribution for e in matches)
            choices = " or ".join(repr(e.qualified_name) for e in matches)
            raise AmbiguousComponentError(
                f"{self.singular} {short!r} is registered by several distributions "
                f"({owners}); pick one with {choices}",
                kind=self.kind, name=short, distribution=", ".join(e.distribution for e in matches),
                reason=f"registered by {owners}")
        return matches[0]

    def _unknown_message(self, name: str) -> str:
        dist, _, short = name.rpartition(":")
        valid = self.names()
        if dist and short in valid:
            owners = [e.qualified_name for e in self.entries() if e.name == short]
            return (f"unknown {self.singular} {name!r}: distribution {dist!r} does not register "
                    f"{short!r}; it is registered as {' and '.join(map(repr, owners))}.")
        hidden = [e for e in self._scan() if e.name == short]
        if hidden and plugins_disabled():
            return (f"unknown {self.singular} {name!r}: it comes from "
                    f"{', '.join(sorted({e.distribution for e in hidden}))}, and plugins are "
                    f"disabled ({DISABLE_VARIABLE}={os.environ.get(DISABLE_VARIABLE)}). "
                    f"Valid names: {', '.join(valid)}.")
        close = difflib.get_close_matches(short, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.singular} {name!r}.{hint} Valid names: {', '.join(valid)}."

    # -- loading -------------------------------------------------------------------------
    def get(self, name: str) -> type:
        """The class registered as ``name``, imported on first use."""
        return self.load(self.entry(name))

    def load(self, entry: Entry) -> type:
        """Import and check one entry (cached); a PluginError when it is broken."""
        key = entry.qualified_name
        if key in self._loaded:
            return self._loaded[key]
        if key in self._failures:
            known = self._failures[key]
            raise self._plugin_error(entry, known.reason) from known.__cause__
        try:
            obj = entry.entry_point.load()
        # A plugin may raise anything while importing, sys.exit() included; one broken
        # package must not take the whole registry (or ``python -m nnx.list``) down with it.
        except (Exception, SystemExit) as cause:
            reason = f"failed to load: {type(cause).__name__}: {cause}"
            self._failures[key] = error = self._plugin_error(entry, reason)
            error.__cause__ = cause
            raise self._plugin_error(entry, reason) from cause
        problem = component_problem(self.kind, obj)
        if problem:
            cause = TypeError(problem)
            reason = f"not a valid {self.singular}: {problem}"
            self._failures[key] = error = self._plugin_error(entry, reason)
            error.__cause__ = cause
            raise self._plugin_error(entry, reason) from cause
        self._loaded[key] = obj
        return obj

    def _plugin_error(self, entry: Entry, reason: str) -> PluginError:
        spec = f"{entry.name} = {entry.value}"
        return PluginError(
            f"{entry.distribution}[{entry.name}]: {self.group} entry point {spec!r} of "
            f"{entry.distribution} {entry.version}: {reason}",
            kind=self.kind, name=entry.name, distribution=entry.distribution,
            version=entry.version, entry_point=spec, reason=reason)

    def build(self, name: str, **kwargs):
        """An instance of ``name`` made with ``kwargs`` (a TypeError names the bad argument)."""
        cls = self.get(name)
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise TypeError(f"{self.singular} {name!r}: {error}") from error

    def failures(self) -> dict[str, PluginError]:
        """Plugins that failed to load so far, by qualified name (``load_all`` to try them all)."""
        if plugins_disabled():
            return {k: v for k, v in self._failures.items()
                    if normalize(v.distribution) == HOME_DISTRIBUTION}
        return dict(self._failures)

    def load_all(self) -> dict[str, type]:
        """Import every entry, recording failures instead of raising; returns what loaded."""
        loaded = {}
        for e in self.entries():
            try:
                loaded[e.qualified_name] = self.load(e)
            except PluginError:
                pass
        return loaded


def _import_base(record: Kind):
    module, _, attribute = record.base.partition(":")
    return getattr(importlib.import_module(module), attribute)


def component_problem(kind: str, obj) -> str | None:
    """Why ``obj`` cannot serve as a component of ``kind``, or None when it can.

    A component is a class derived from its kind's ``base`` that implements the kind's
    ``required_methods`` itself (the base class's versions only raise
    NotImplementedError). Used by the registry on every entry point it loads and by
    ``nnx.testing.check_component``.
    """
    record = kind_record(kind)
    base_path = record.base.replace(":", ".")
    if not isinstance(obj, type):
        what = getattr(obj, "__qualname__", None) or type(obj).__name__
        return (f"expected a class derived from {base_path}, got {what!r}, "
                f"an object of type {type(obj).__name__}")
    try:
        # Imported here so that reading metadata never imports the component modules.
        base = _import_base(record)
    except Exception as error:  # noqa: BLE001 - nnx's own module broken: say so, do not crash
        return f"its base class {base_path} cannot be imported ({type(error).__name__}: {error})"
    if not issubclass(obj, base):
        bases = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in obj.__bases__)
        return f"expected a class derived from {base_path}, got {obj.__qualname__}({bases})"
    for choices in record.required_methods:
        if all(getattr(obj, m, None) is getattr(base, m, None) for m in choices):
            alternatives = "".join(f" (or {m}())" for m in choices[1:])
            return f"{obj.__qualname__} does not implement {choices[0]}(){alternatives}"
    abstract = sorted(getattr(obj, "__abstractmethods__", ()))
    if abstract:
        return f"{obj.__qualname__} is abstract: it does not implement {', '.join(abstract)}"
    return None


_REGISTRIES: dict[str, Registry] = {}
_ENTRY_POINTS = None


def _all_entry_points():
    """Every installed distribution's entry points, read once per process (or ``reset``).

    One read serves the seven groups: reading them group by group costs seven passes over
    the metadata of every installed distribution, about 70 ms of each ``python -m nnx.run``.
    """
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        _ENTRY_POINTS = entry_points()
    return _ENTRY_POINTS


def registry(kind: str) -> Registry:
    """The shared registry of one kind."""
    if kind not in _REGISTRIES:
        _REGISTRIES[kind] = Registry(kind)
    return _REGISTRIES[kind]


def reset() -> None:
    """Forget every registry's metadata, classes and failures (after sys.path or installs change)."""
    global _ENTRY_POINTS
    _REGISTRIES.clear()
    _ENTRY_POINTS = None
    importlib.invalidate_caches()


def get(kind: str, name: str) -> type:
    """Shortcut: ``get("activations", "relu")`` is the ReLU class."""
    return registry(kind).get(name)


def build(kind: str, name: str, **kwargs):
    """Shortcut: ``build("optimizers", "adam", lr=1e-3)``."""
    return registry(kind).build(name, **kwargs)


def names(kind: str) -> list[str]:
    """Shortcut: registered names of one kind."""
    return registry(kind).names()
