"""Checks a composed configuration before anything is built or trained.

Every message names the config key, the value given, and what is allowed, e.g.
``optimizer.lr: lr must be in (0.0, inf), got -1.0``. Components' keyword arguments are
checked against their constructor's signature, so a plugin's component is checked exactly
like a built-in without any schema written for it.
"""

from __future__ import annotations

import inspect
import math
import numbers

from nnx.registry import KINDS, PluginError, UnknownComponentError, registry

# config group -> registry kind, for the kinds that a top-level config node names
GROUP_KINDS = {k.config_group: k.name for k in KINDS if k.config_group}
# keys of a dataset node that nnx handles itself, not the dataset class
DATASET_KEYS = {"name", "standardize"}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with its key."""


def constructor_defaults(cls) -> dict:
    """Keyword arguments of ``cls`` that have plain defaults (int, float, bool, str, None)."""
    out = {}
    for p in inspect.signature(cls).parameters.values():
        if p.default is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is None or isinstance(p.default, (bool, int, float, str)):
            out[p.name] = p.default
    return out


def _expected_type(default, annotation) -> str | None:
    if isinstance(default, bool) or annotation in (bool, "bool"):
        return "bool"
    if isinstance(default, int) or annotation in (int, "int"):
        return "int"
    if isinstance(default, float) or annotation in (float, "float"):
        return "number"
    if isinstance(default, str) or annotation in (str, "str"):
        return "str"
    return None


def _type_ok(value, expected: str) -> bool:
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if expected == "str":
        return isinstance(value, str)
    return True


def component_class(group: str, name, kind: str | None = None):
    """The registered class for ``group.name``, or a ConfigError listing the valid names."""
    kind = kind or GROUP_KINDS[group]
    if not isinstance(name, str):
        raise ConfigError(f"{group}.name: expected a registered name, got {name!r}")
    try:
        return registry(kind).get(name)
    except UnknownComponentError as error:
        raise ConfigError(f"{group}: {error}") from error
    except PluginError as error:
        raise ConfigError(f"{group}: {error}") from error


def build_component(group: str, node: dict, kind: str | None = None, skip=("name",)):
    """Check ``node``'s keyword arguments against the class signature, then build it."""
    cls = component_class(group, node.get("name"), kind)
    kwargs = {k: v for k, v in node.items() if k not in skip}
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key, value in kwargs.items():
        if key not in params and not accepts_any:
            valid = ", ".join(k for k in params if k not in ("self", "args", "kwargs"))
            raise ConfigError(f"{group}.{key}: {node['name']!r} takes no argument {key!r}; "
                              f"valid: {valid or 'none'}")
        if key in params:
            p = params[key]
            expected = _expected_type(p.default, p.annotation)
            if expected and value is not None and not _type_ok(value, expected):
                if expected == "number" and isinstance(value, numbers.Integral) \
                        and not isinstance(value, bool):
                    continue
                raise ConfigError(f"{group}.{key}: expected {'a ' if expected != 'int' else 'an '}"
                                  f"{expected}, got {value!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{group}.{_guess_key(error, kwargs)}: {error}") from error


def _guess_key(error: Exception, kwargs: dict) -> str:
    text = str(error)
    for key in kwargs:
        if text.startswith(key) or f" {key} " in text or f"{key} must" in text:
            return key
    return "name"


def check_int(key: str, value, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key}: expected an integer >= {low}, got {value!r}")
    return int(value)


def check_number(key: str, value, low: float, high: float, high_open=True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        right = ")" if high_open else "]"
        raise ConfigError(f"{key}: expected a number in [{low}, {high}{right}, got {value!r}")
    return float(value)


def check_choice(key: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_name(key: str, value, kind: str) -> str:
    """A registered name of ``kind`` (activations, initializers, ...)."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a registered name, got {value!r}")
    try:
        registry(kind).get(value)
    except (UnknownComponentError, PluginError) as error:
        raise ConfigError(f"{key}: {error}") from error
    return value


def check_layers(layers, key: str = "model.layers") -> list:
    """A list of layer specs (a registered name, or ``{name: ..., **kwargs}``), each built
    once to check it; composite blocks' own ``layers`` are checked the same way. Messages name
    the position and the key: ``model.layers.0.unit: 'dense' takes no argument 'unit'; did you
    mean 'units'? valid: units, bias, initializer, bias_initializer``."""
    import difflib

    from nnx.blocks import Block, spec_kind, unknown_name_message

    if isinstance(layers, (str, dict)) or not isinstance(layers, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of layer specs (a name, or {{name: ..., "
                          f"**kwargs}}), got {layers!r}")
    if not layers:
        raise ConfigError(f"{key}: expected at least one layer, got []")
    for i, spec in enumerate(layers):
        where = f"{key}.{i}"
        node = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            raise ConfigError(f"{where}: expected a registered name or {{name: ..., **kwargs}}, "
                              f"got {spec!r}")
        kind = spec_kind(node["name"])
        if kind is None:
            raise ConfigError(f"{where}: {unknown_name_message(node['name'])}")
        try:
            cls = registry(kind).get(node["name"])
        except (UnknownComponentError, PluginError) as error:
            raise ConfigError(f"{where}: {error}") from error
        params = inspect.signature(cls).parameters
        valid = [k for k in params if k not in ("self", "args", "kwargs")]
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in node.items() if k != "name"}
        for arg in kwargs:
            if arg not in params and not accepts_any:
                close = difflib.get_close_matches(arg, valid, n=1)
                hint = f"; did you mean {close[0]!r}? Valid" if close else "; valid"
                raise ConfigError(f"{where}.{arg}: {node['name']!r} takes no argument {arg!r}"
                                  f"{hint}: {', '.join(valid) or 'none'}")
        if isinstance(cls, type) and issubclass(cls, Block) and "layers" in kwargs:
            check_layers(kwargs["layers"], f"{where}.layers")
        try:
            cls(**kwargs)
        except (ValueError, TypeError) as error:
            arg = _guess_key(error, kwargs)
            raise ConfigError(f"{where}{'' if arg == 'name' else '.' + arg}: {error}") from error
    return list(layers)


def check_model(model: dict) -> dict:
    """The model node: a list of layers (``model=sequential``), or the MLP short form's hidden
    sizes, activations, initializer, dropout, bias."""
    if model.get("name") == "sequential":
        return {**model, "layers": check_layers(model.get("layers"))}
    if model.get("layers") is not None:
        raise ConfigError("model.layers: the mlp model is built from model.hidden; for a list "
                          "of layers use model=sequential")
    hidden = model.get("hidden", [])
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = [hidden]
    if not isinstance(hidden, (list, tuple)):
        raise ConfigError(f"model.hidden: expected a list of positive integers, got {hidden!r}")
    for size in hidden:
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
            raise ConfigError(
                f"model.hidden: expected a list of positive integers, got {list(hidden)!r}")
    check_name("model.activation", model.get("activation"), "activations")
    check_name("model.output_activation", model.get("output_activation"), "activations")
    check_name("model.initializer", model.get("initializer"), "initializers")
    check_number("model.dropout", model.get("dropout", 0.0), 0.0, 1.0)
    if not isinstance(model.get("bias", True), bool):
        raise ConfigError(f"model.bias: expected true or false, got {model.get('bias')!r}")
    for key in ("in_features", "out_features"):
        if model.get(key) is not None:
            check_int(f"model.{key}", model[key], 1)
    return {**model, "hidden": [int(h) for h in hidden]}


def check_trainer(trainer: dict) -> None:
    check_int("trainer.epochs", trainer.get("epochs"), 1)
    check_int("trainer.batch_size", trainer.get("batch_size"), 0)
    check_number("trainer.val_split", trainer.get("val_split", 0.0), 0.0, 1.0)
    check_int("trainer.limit_batches", trainer.get("limit_batches", 0), 0)
    check_int("trainer.log_every", trainer.get("log_every", 1), 1)
    check_int("trainer.checkpoint_every", trainer.get("checkpoint_every", 0), 0)
    stopping = trainer.get("early_stopping") or {}
    check_int("trainer.early_stopping.patience", stopping.get("patience", 0), 0)
    check_number("trainer.early_stopping.min_delta", stopping.get("min_delta", 0.0), 0.0, math.inf)
    if not isinstance(stopping.get("monitor", "val_loss"), str):
        raise ConfigError(f"trainer.early_stopping.monitor: expected a metric name, "
                          f"got {stopping['monitor']!r}")
    for key in ("shuffle", "progress"):
        if not isinstance(trainer.get(key, True), bool):
            raise ConfigError(f"trainer.{key}: expected true or false, got {trainer[key]!r}")
    for key in ("checkpoint_dir", "resume"):  # an all-digit run id reaches us as an int
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise ConfigError(f"trainer.{key}: expected a path, got {value!r}")


def check_config(cfg: dict) -> None:
    """Everything that can be checked before data is loaded."""
    check_int("seed", cfg.get("seed"), 0)
    check_choice("dtype", cfg.get("dtype"), ("float32", "float64"))
    check_trainer(cfg["trainer"])
    cfg["model"] = check_model(cfg["model"])
    for group in GROUP_KINDS:
        if not isinstance(cfg.get(group), dict) or "name" not in cfg[group]:
            raise ConfigError(f"{group}: expected a config node with a 'name', got {cfg.get(group)!r}")
        component_class(group, cfg[group]["name"])
