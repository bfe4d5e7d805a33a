"""What a tracked run records besides its metrics: the config as params, where its code and
components came from (git commit, component versions), who ran it and when, all within
MLflow's limits on keys and values.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import subprocess
import time

# MLflow's limits (mlflow.utils.validation).
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# Config keys that say where a run is logged or written, not what was trained.
NOT_PARAMS = ("tracking", "trainer.checkpoint_dir")


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``; lists stay whole values.

    A list that holds dicts (``model.layers``) is also given item by item, ``model.layers.0.units``,
    so that a sweep over one layer's argument shows as a param of its own (as Hydra names it).
    """
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
            if isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value):
                out.update(flatten({str(i): v for i, v in enumerate(value)}, name + "."))
    return out


def param_text(value) -> str:
    """A config value as MLflow param text: YAML-like scalars, lists as ``[64, 32]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def config_params(config: dict) -> dict[str, str]:
    """The flattened config as params within MLflow's limits (keys 250, values 6000 chars);
    the top-level ``objective`` (a metric's name) is the param ``objective_name``."""
    from nnx.metrics import OBJECTIVE, OBJECTIVE_PARAM

    params = {}
    for key, value in flatten(config).items():
        if any(key == skip or key.startswith(skip + ".") for skip in NOT_PARAMS):
            continue
        if key == OBJECTIVE:  # its name; the metric "objective" holds its value
            key = OBJECTIVE_PARAM
        params[clip(key, MAX_KEY)] = clip(param_text(value), MAX_PARAM_VALUE)
    return params


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def git_state() -> tuple[str, bool] | None:
    """(commit, dirty) of the git repository the working directory is in, or None outside one:
    the code the user works on (their project, or an nnx checkout), not where nnx is installed."""
    try:
        return _git_state(os.getcwd())
    except OSError:  # the working directory was removed
        return None


@functools.lru_cache(maxsize=4)
def _git_state(folder: str) -> tuple[str, bool] | None:
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"],
                                check=False, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain",
                                 "--untracked-files=no"], check=False, capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip(), bool(status.stdout.strip())


def component_tags(config: dict, network=None) -> dict[str, str]:
    """Where every component came from: ``component.optimizer = nnx 0.1.0``,
    ``component.activation.mish = nnx-example-plugin 0.1.0``, so a plugin's version is on record."""
    from nnx.config import GROUP_KINDS
    from nnx.registry import MODULE_KINDS, SINGULAR, PluginError, UnknownComponentError, registry

    wanted: list[tuple[str, str, str]] = []  # (tag, kind, name)
    for group, kind in GROUP_KINDS.items():
        node = config.get(group)
        if isinstance(node, dict) and node.get("name"):
            wanted.append((f"component.{group}", kind, str(node["name"])))
    model = config.get("model") or {}
    if model.get("initializer"):
        wanted.append(("component.initializer.{}", "initializers", str(model["initializer"])))
    if network is not None:
        from nnx.blocks import all_specs

        for spec in all_specs(network.specs()):
            name = spec["name"]
            short = name.rpartition(":")[2]
            for kind in MODULE_KINDS:
                if short in registry(kind).names():
                    wanted.append((f"component.{SINGULAR[kind]}.{{}}", kind, name))
                    break
    tags = {}
    for tag, kind, name in wanted:
        try:
            entry = registry(kind).entry(name)
        except (UnknownComponentError, PluginError):
            continue
        tags[clip(tag.format(entry.name), MAX_KEY)] = f"{entry.distribution} {entry.version}"
    return tags


def config_yaml(data: dict) -> str:
    """The config as the text of the run's ``config.yaml``."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def now_ms() -> int:
    return int(time.time() * 1000)


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"