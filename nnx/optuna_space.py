"""The search space of nnx's Optuna sweeper: Hydra sweep overrides as Optuna distributions.

    hydra.sweeper.params:
      optimizer.lr: tag(log, interval(1e-4, 0.1))    # FloatDistribution(1e-4, 0.1, log=True)
      model.hidden_units: tag(int, interval(16, 256)) # IntDistribution(16, 256)
      model.activation: choice(relu, tanh)           # CategoricalDistribution(("relu", "tanh"))
      trainer.batch_size: range(32, 257, 32)         # IntDistribution(32, 256, step=32)

hydra-optuna-sweeper's syntax, with two deliberate differences: ``range(a, b)`` stops before
``b`` as everywhere else in Hydra, and ``tag(int, interval(a, b))`` asks for integers (Hydra
reads interval bounds as floats). A trial's values go back to the job as overrides that mean
exactly them (``override_text``).
"""

from __future__ import annotations

import difflib
import re

TAGS = ("log", "int")
SPACE_SYNTAX = ("interval(low, high), tag(log, interval(low, high)), tag(int, interval(low, "
                "high)), choice(a, b, ...), range(start, stop[, step]), or a fixed value")


class SweepError(ValueError):
    """A sweeper setting that cannot work; raised before any trial runs."""


def parse_space(params: dict, arguments: list[str], config=None) -> tuple[dict, dict, dict]:
    """``hydra.sweeper.params`` and the command line's sweeps as Optuna distributions.

    Returns (distributions, fixed, literal): key -> distribution for the searched keys,
    key -> override text for fixed ones, and key -> set of choices that are override text
    (lists, dicts) to pass on as they are.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    lines = [(f"hydra.sweeper.params.{k}", f"{k}={v}") for k, v in (params or {}).items()]
    lines += [(f"{a.partition('=')[0].lstrip('+~')} (command line)", a) for a in arguments]
    distributions, fixed, literal = {}, {}, {}
    for where, line in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as error:
            raise SweepError(f"{where}: cannot parse {line.partition('=')[2]!r} "
                             f"({str(error).splitlines()[0]}); valid: {SPACE_SYNTAX}") from error
        key = override.get_key_element()
        if config is not None:
            check_key(override, config, where)
        if override.is_sweep_override():
            distributions[key], texts = distribution(override, where)
            if texts:
                literal[key] = texts
            fixed.pop(key, None)
        else:
            fixed[key] = override.get_value_element_as_str()
            distributions.pop(key, None)
    return distributions, fixed, literal


def check_key(override, config, where: str) -> None:
    """A searched key must be in the config or be a config group (``schedule``); ``+key``
    adds a new one."""
    from omegaconf import OmegaConf

    key = override.key_or_group
    if override.is_add() or override.is_force_add() or key.startswith("hydra."):
        return
    groups = set((config.hydra.runtime.choices or {}).keys())
    missing = object()
    if key in groups or OmegaConf.select(config, key, default=missing) is not missing:
        return
    known = sorted(groups | {k for k in config if k != "hydra"})
    hint = difflib.get_close_matches(key, known + _keys(config), n=1)
    raise SweepError(f"{where}: {key!r} is not a key of the config"
                     + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; add it with +{key} or search one of: {', '.join(known)}")


def _keys(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    for k in node:
        if k == "hydra" and not prefix:
            continue
        value = node._get_node(k)
        out.append(f"{prefix}{k}")
        if isinstance(value, DictConfig):
            out += _keys(value, f"{prefix}{k}.")
    return out


def distribution(override, where: str):
    """One sweep override as an Optuna distribution, and the choices kept as override text."""
    from hydra.core.override_parser.types import Override, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    tags = set(getattr(value, "tags", ()) or ())
    if tags - set(TAGS):
        raise SweepError(f"{where}: {override.input_line.partition('=')[2]!r}: unknown tag "
                         f"{min(tags - set(TAGS))!r} (valid tags: {', '.join(TAGS)}); valid: "
                         f"{SPACE_SYNTAX}")
    try:
        if override.is_interval_sweep():
            low, high = value.start, value.end
            if "int" in tags:
                if low != int(low) or high != int(high):
                    raise ValueError(f"tag(int, ...) needs whole bounds, got {low:g}, {high:g}")
                return IntDistribution(int(low), int(high), log="log" in tags), set()
            return FloatDistribution(float(low), float(high), log="log" in tags), set()
        values = list(override.sweep_iterator(transformer=Transformer.identity))
        if not values:
            raise ValueError("it has no values")
        if override.is_range_sweep() and not value.shuffle:
            low, high = min(values), max(values)
            step = abs(value.step if value.step is not None else 1)
            if all(isinstance(v, int) for v in values):
                return IntDistribution(low, high, log="log" in tags,
                                       step=1 if "log" in tags else step), set()
            return FloatDistribution(low, low + step * (len(values) - 1), step=step), set()
        if "log" in tags:
            raise ValueError("tag(log, ...) applies to interval and range only")
        # Choices: primitives as they are (Optuna stores them); lists and dicts as their text.
        choices = [v if isinstance(v, (str, int, float, bool)) else
                   Override._get_value_element_as_str(v) for v in values]
        texts = {c for c, v in zip(choices, values) if not isinstance(v, (str, int, float, bool))}
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError("a choice is listed twice")
        return CategoricalDistribution(choices), texts
    except ValueError as error:
        raise SweepError(f"{where}: {override.input_line.partition('=')[2]!r}: {error}; "
                         f"valid: {SPACE_SYNTAX}") from error


def grid_of(distributions: dict) -> dict[str, list]:
    """The grid sampler's points: every choice, every value of a range."""
    from optuna.distributions import CategoricalDistribution

    grid = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif getattr(dist, "step", None) is not None and not getattr(dist, "log", False):
            n = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [dist.low + i * dist.step for i in range(n)]
        else:
            raise SweepError(f"hydra.sweeper.params.{key}: the grid sampler needs choice(...) or "
                             "range(...), not an interval; valid: choice(a, b, ...), "
                             "range(start, stop[, step])")
    return grid


def suggest(trial, key: str, dist):
    """``trial.suggest_*`` for one distribution: the sampler picks the value."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    suggest_number = trial.suggest_int if isinstance(dist, IntDistribution) else \
        trial.suggest_float
    return suggest_number(key, dist.low, dist.high, step=dist.step, log=dist.log)


def override_text(key: str, value, literal: dict) -> str:
    """``key=value`` in Hydra's override syntax (strings escaped, lists as written)."""
    from hydra.core.override_parser.types import Override

    if value in literal.get(key, ()):
        return f"{key}={value}"
    if isinstance(value, str) and ("'" in value or '"' in value):
        return f"{key}={quoted(value)}"
    return f"{key}={Override._get_value_element_as_str(value)}"


def quoted(text: str) -> str:
    """A Hydra quoted string holding ``text`` exactly: quotes escaped, and the backslashes
    before a quote or at the end doubled (Hydra reads every other backslash literally)."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"
