"""Checks a composed configuration before anything is built or trained.

Every message names the config key, the value given, and what is allowed, e.g.
``optimizer.lr: lr must be in (0.0, inf), got -1.0``. Components' keyword arguments are
checked against their constructor's signature, so a plugin's component is checked exactly
like a built-in without any schema written for it.

One schema for the whole config: every node's keys are checked before anything is built
(``+``-added keys included). Components answer with their signature; the nodes nnx reads
itself declare their keys here (``TOP_LEVEL_KEYS``, ``TRAINER_KEYS``, ``MODEL_TYPES`` per
model type, ``DATASET_KEYS``; tracking's in ``nnx.tracking_settings``). An unknown key is
``<node>.<key>: <what> has no key '<key>'. Did you mean '<closest>'? Valid keys: ...``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers

from nnx.registry import KINDS, PluginError, UnknownComponentError, registry

# config group -> registry kind, for the kinds that a top-level config node names
GROUP_KINDS = {k.config_group: k.name for k in KINDS if k.config_group}
# keys of a dataset node that nnx handles itself, not the dataset class
DATASET_KEYS = {"name", "standardize"}
# The top level of a config: the nodes and the run's own settings. ``search`` holds free
# values that other keys interpolate (``model.hidden: ["${search.width}"]``, a search preset).
TOP_LEVEL_KEYS = ("name", "seed", "dtype", "objective", "print_predictions", "search",
                  "dataset", "model", "loss", "optimizer", "schedule", "trainer", "tracking")
# trainer.* (conf/trainer/default.yaml documents each); early_stopping.* is EarlyStopping's
# own signature (nnx.trainer), so that node is checked like a component.
TRAINER_KEYS = ("epochs", "batch_size", "shuffle", "val_split", "limit_batches", "log_every",
                "progress", "early_stopping", "checkpoint_every", "checkpoint_dir", "resume",
                "divergence_factor")


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


def unknown_key(node: str, key: str, what: str, valid) -> ConfigError:
    """The one message for a key that its node does not take: the node and the key, the
    valid keys and the closest of them."""
    valid = list(valid)
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"{node}.{key}" if node else str(key)
    return ConfigError(f"{where}: {what} has no key {key!r}.{hint} "
                       f"Valid keys: {', '.join(valid) or 'none'}")


def check_keys(node: str, values: dict, what: str, valid) -> None:
    """Every key of ``values`` is one of ``valid``, or the first that is not fails."""
    for key in values:
        if key not in valid:
            raise unknown_key(node, key, what, valid)


def check_component(group: str, node: dict, kind: str | None = None, skip=("name",)):
    """Check ``node``'s keys and value types against the class signature; returns the class."""
    cls = component_class(group, node.get("name"), kind)
    kwargs = {k: v for k, v in node.items() if k not in skip}
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    valid = [*skip, *(k for k, p in params.items()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))]
    singular = registry(kind or GROUP_KINDS[group]).singular
    for key, value in kwargs.items():
        if key not in params and not accepts_any:
            raise unknown_key(group, key, f"{singular} {node['name']!r}", valid)
        if key in params:
            p = params[key]
            expected = _expected_type(p.default, p.annotation)
            if expected and value is not None and not _type_ok(value, expected):
                if expected == "number" and isinstance(value, numbers.Integral) \
                        and not isinstance(value, bool):
                    continue
                raise ConfigError(f"{group}.{key}: expected {'a ' if expected != 'int' else 'an '}"
                                  f"{expected}, got {value!r}")
    return cls


def build_component(group: str, node: dict, kind: str | None = None, skip=("name",)):
    """Check ``node``'s keyword arguments against the class signature, then build it."""
    cls = check_component(group, node, kind, skip)
    kwargs = {k: v for k, v in node.items() if k not in skip}
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


def check_mlp(model: dict) -> dict:
    """The mlp model node: hidden sizes, activations, initializer, dropout, bias."""
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


# model.name -> (the keys that model's node takes, the function that checks their values and
# returns the node to build from). A new model type adds its row here.
MODEL_TYPES = {
    "mlp": (("name", "hidden", "activation", "output_activation", "initializer", "bias",
             "dropout", "in_features", "out_features"), check_mlp),
    "sequential": (("name", "layers"),
                   lambda model: {**model, "layers": check_layers(model.get("layers"))}),
}


def check_model(model: dict) -> dict:
    """The model node, by its type (``model.name``, ``MODEL_TYPES``): keys, then values."""
    name = model.get("name", "mlp")
    if name not in MODEL_TYPES:
        close = difflib.get_close_matches(str(name), list(MODEL_TYPES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"model.name: unknown model type {name!r}.{hint} "
                          f"Valid types: {', '.join(MODEL_TYPES)}")
    keys, check = MODEL_TYPES[name]
    if name == "mlp" and "layers" in model:  # the likeliest mix-up of the two forms
        raise ConfigError("model.layers: the mlp model is built from model.hidden; for a list "
                          "of layers use model=sequential")
    check_keys("model", model, f"model {name!r}", keys)
    return check(model)


def check_trainer(trainer: dict) -> None:
    from nnx.trainer import EarlyStopping

    check_keys("trainer", trainer, "the trainer", TRAINER_KEYS)
    check_int("trainer.epochs", trainer.get("epochs"), 1)
    check_int("trainer.batch_size", trainer.get("batch_size"), 0)
    check_number("trainer.val_split", trainer.get("val_split", 0.0), 0.0, 1.0)
    check_int("trainer.limit_batches", trainer.get("limit_batches", 0), 0)
    check_int("trainer.log_every", trainer.get("log_every", 1), 1)
    check_int("trainer.checkpoint_every", trainer.get("checkpoint_every", 0), 0)
    stopping = trainer.get("early_stopping") or {}
    if not isinstance(stopping, dict):
        raise ConfigError(f"trainer.early_stopping: expected a node (patience, monitor, ...), "
                          f"got {stopping!r}")
    valid = [k for k in inspect.signature(EarlyStopping).parameters]
    check_keys("trainer.early_stopping", stopping, "early stopping", valid)
    check_int("trainer.early_stopping.patience", stopping.get("patience", 0), 0)
    check_number("trainer.early_stopping.min_delta", stopping.get("min_delta", 0.0), 0.0, math.inf)
    if not isinstance(stopping.get("monitor", "val_loss"), str):
        raise ConfigError(f"trainer.early_stopping.monitor: expected a metric name, "
                          f"got {stopping['monitor']!r}")
    check_choice("trainer.early_stopping.mode", stopping.get("mode", "auto"),
                 ("auto", "min", "max"))
    for key in ("shuffle", "progress"):
        if not isinstance(trainer.get(key, True), bool):
            raise ConfigError(f"trainer.{key}: expected true or false, got {trainer[key]!r}")
    if not isinstance(stopping.get("restore_best", True), bool):
        raise ConfigError(f"trainer.early_stopping.restore_best: expected true or false, got "
                          f"{stopping['restore_best']!r}")
    for key in ("checkpoint_dir", "resume"):  # an all-digit run id reaches us as an int
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise ConfigError(f"trainer.{key}: expected a path, got {value!r}")


def check_tracking(tracking) -> None:
    """tracking.name picks mlflow (its settings: nnx.tracking_settings) or none (no keys)."""
    from nnx.tracking_settings import SETTINGS, check_settings

    tracking = tracking if tracking is not None else {"name": "none"}
    if not isinstance(tracking, dict):
        raise ConfigError(f"tracking: expected a config node with a 'name', got {tracking!r}")
    name = tracking.get("name", "none")
    check_choice("tracking.name", name, ("mlflow", "none"))
    # tracking=none keeps the settings a preset gives for mlflow (unused), and no others
    check_keys("tracking", tracking, f"tracking {name!r}", SETTINGS)
    check_settings(tracking)


def check_metrics(cfg: dict, task: str | None = None) -> None:
    """``objective`` and the early-stopping monitor are metrics this run will have: training
    metrics, or validation ones when there is a validation set; never test metrics (the test
    set is evaluated once, at the end, and nothing selects on it). ``task`` None: either task."""
    from nnx.metrics import epoch_metrics, user_name

    validation = cfg["trainer"].get("val_split", 0.0) > 0
    tasks = (task,) if task else ("classification", "regression")
    valid = sorted({m for t in tasks for m in epoch_metrics(t, validation)})
    for_task = f" for {task}" if task else ""
    stopping = cfg["trainer"].get("early_stopping") or {}
    keys = [("objective", cfg.get("objective", "val_loss"))]
    if stopping.get("patience", 0) > 0:
        keys.append(("trainer.early_stopping.monitor", stopping.get("monitor", "val_loss")))
    for key, metric in keys:
        if not isinstance(metric, str):
            raise ConfigError(f"{key}: expected a metric name, got {metric!r}")
        if metric in valid:
            continue
        if metric.startswith("test_"):
            raise ConfigError(
                f"{key}: {metric!r} is a test-set metric; the test set is evaluated once, at "
                "the end, and never selects anything. Use "
                f"{'val_' + metric[5:]!r} (a validation split, trainer.val_split > 0) "
                f"or {metric[5:]!r} (training)")
        if metric.startswith("val_") and not validation and metric[4:] in valid:
            raise ConfigError(
                f"{key}: {metric!r} needs a validation set, but trainer.val_split is 0 (no "
                f"validation); set trainer.val_split (e.g. 0.2), or {key}={metric[4:]} to "
                "use the training metric")
        if user_name(metric) in valid:  # a stored key, as MLflow's UI shows it
            raise ConfigError(f"{key}: {metric!r} is how MLflow stores the metric; name it "
                              f"as the trainer does: {key}={user_name(metric)}")
        close = difflib.get_close_matches(metric, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}: {metric!r} is not a metric of this run{for_task}.{hint} "
                          f"Valid: {', '.join(valid)}")


def check_config(cfg: dict) -> None:
    """Everything that can be checked before data is loaded: every node's keys against what
    its component takes, then the values."""
    check_keys("", cfg, "the config", TOP_LEVEL_KEYS)
    for node in ("model", "trainer", *GROUP_KINDS):
        if not isinstance(cfg.get(node), dict):
            raise ConfigError(f"{node}: expected a config node, got {cfg.get(node)!r}")
    for group in GROUP_KINDS:
        if "name" not in cfg[group]:
            raise ConfigError(f"{group}: expected a config node with a 'name', got {cfg[group]!r}")
        skip = tuple(DATASET_KEYS) if group == "dataset" else ("name",)
        check_component(group, cfg[group], skip=skip)
    check_int("seed", cfg.get("seed"), 0)
    check_choice("dtype", cfg.get("dtype"), ("float32", "float64"))
    check_tracking(cfg.get("tracking"))
    check_trainer(cfg["trainer"])
    cfg["model"] = check_model(cfg["model"])
    if not isinstance(cfg["dataset"].get("standardize", False), bool):
        raise ConfigError(f"dataset.standardize: expected true or false, got "
                          f"{cfg['dataset']['standardize']!r}")
    check_metrics(cfg)
