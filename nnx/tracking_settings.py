"""The ``tracking.*`` settings: their defaults and their checks (conf/tracking/mlflow.yaml
documents each). The tracker and a sweep's parent run both read the tracking node through here.
"""

from __future__ import annotations

from nnx.config import ConfigError
from nnx.plots import RUN_PLOTS

# tracking.* keys and their defaults.
SETTINGS = {
    "name": "mlflow",
    "uri": None,
    "experiment": None,
    "run_name": None,
    "snapshot_every": 0,
    "histograms_every": 0,
    "plots": True,
    "log_model": True,
    "flush_seconds": 10.0,
    "timeout": 5.0,
    "retry_seconds": 120.0,
    "heartbeat_seconds": 30.0,
    "strict": False,
    "system_metrics": True,
    "system_metrics_seconds": 2.0,
    "verbose": False,
}
# The pictures tracking.plots picks among, in the order they are drawn (nnx.plots.RUN_PLOTS).
PLOTS = tuple(RUN_PLOTS)


def check_settings(tracking: dict) -> dict:
    """``tracking.*`` merged over the defaults; unknown keys and bad values are ConfigErrors."""
    unknown = sorted(set(tracking) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"tracking.{unknown[0]}: unknown setting; valid: {', '.join(SETTINGS)}")
    settings = {**SETTINGS, **{k: v for k, v in tracking.items() if v is not None}}
    for key in ("snapshot_every", "histograms_every"):
        value = settings[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"tracking.{key}: expected an integer >= 0 (0 = only at the end), "
                              f"got {value!r}")
    for key in ("flush_seconds", "timeout", "retry_seconds", "heartbeat_seconds",
                "system_metrics_seconds"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"tracking.{key}: expected a number of seconds > 0, got {value!r}")
    for key in ("log_model", "strict", "system_metrics", "verbose"):
        if not isinstance(settings[key], bool):
            raise ConfigError(f"tracking.{key}: expected true or false, got {settings[key]!r}")
    settings["plots"] = plot_names(settings["plots"])
    return settings


def plot_names(value) -> tuple[str, ...]:
    """``tracking.plots`` as the names to draw: true = all of PLOTS, false = none, or a list."""
    if isinstance(value, bool):
        return PLOTS if value else ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in PLOTS]
        if unknown:
            raise ConfigError(f"tracking.plots: unknown plot {unknown[0]!r}; valid: "
                              f"{', '.join(PLOTS)}")
        return tuple(name for name in PLOTS if name in value)
    raise ConfigError(f"tracking.plots: expected true or false, or a list of some of "
                      f"{', '.join(PLOTS)}; got {value!r}")
