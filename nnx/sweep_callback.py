"""A Hydra callback that gives every sweep one MLflow parent run and nests each job under it.

conf/tracking/mlflow.yaml lists it under ``hydra.callbacks``; with ``tracking=none`` it is not
configured at all (and it does nothing if ``tracking.name`` is not ``mlflow``).

- ``on_multirun_start`` (the launching process, before any job): create the store, the
  experiment and the parent run, once. Jobs running in parallel on a *fresh* sqlite store would
  otherwise race in its schema migration (DESIGN.md). The ids go to the jobs as environment
  variables: the basic launcher runs jobs in this process, and the joblib launcher's loky
  workers are started after this point and inherit the environment. The callback object is
  also pickled to joblib workers, so ``on_job_start`` re-exports them there as well.
- ``on_job_start`` (each job's process): tell the tracker its output folder, job number and
  overrides; a single run (not a sweep) clears any sweep variables, so it is never nested.
- ``on_multirun_end``: close the parent with the best child's objective and overrides (and
  Optuna's ``optimization_results.yaml`` when there is one).
- If the sweep dies before ``on_multirun_end`` (a failed job, Ctrl-C, SIGTERM), an ``atexit``
  hook closes the parent as FAILED or KILLED and any child still RUNNING as KILLED.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
from pathlib import Path

from hydra.experimental.callback import Callback

from nnx import metrics as M


def _plain(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _direction(config) -> str:
    """minimize or maximize: the Optuna sweeper's direction, else guessed from the objective."""
    sweeper = config.hydra.get("sweeper") or {}
    direction = sweeper.get("direction") if hasattr(sweeper, "get") else None
    if direction is not None and not isinstance(direction, str):
        direction = next(iter(direction))  # several objectives: nnx logs the first
    if direction:
        return str(direction).lower()
    return M.direction(str(config.get("objective", "val_loss")))


def swept(overrides: list[str]) -> dict[str, str]:
    """key -> values of the overrides that sweep (``optimizer=sgd,adam``, ``range(...)``, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override() and not override.key_or_group.startswith("hydra"):
            out[override.key_or_group] = override.input_line.partition("=")[2]
    return out


class _SweepGuard:
    """Closes an open parent run when the launching process exits without on_multirun_end."""

    def __init__(self) -> None:
        self.env: dict[str, str] | None = None
        self.direction = "minimize"
        self.signalled = ""
        self._registered = False

    def arm(self, env: dict[str, str], direction: str) -> None:
        self.env, self.direction, self.signalled = env, direction, ""
        if not self._registered:
            atexit.register(self.close)
            self._registered = True
        # The joblib launcher's process has no handler of its own: without this, SIGTERM would
        # end it before atexit runs. (The basic launcher installs nnx.run's handler later.)
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.signalled = "stopped by SIGTERM"
        raise KeyboardInterrupt(self.signalled)

    def disarm(self) -> None:
        self.env = None

    def interrupted(self, reason: str) -> bool:
        """A signal stopped the launching process: close the parent and its running children
        as KILLED now rather than at exit, so that the line saying so is true when printed.
        A second signal meanwhile waits (``nnx.shield``). Returns whether a sweep was open."""
        if self.env is None:
            return False
        from nnx.shield import shielded

        self.signalled = self.signalled or reason
        with shielded("the sweep's MLflow runs (KILLED)"):
            self.close()
        return True

    def close(self) -> None:
        if self.env is None:
            return
        env, self.env = self.env, None
        from nnx import sweep_parent as mt
        from nnx.trainer import STOP

        killed = (self.signalled or STOP.reason is not None
                  or isinstance(getattr(sys, "last_value", None), KeyboardInterrupt))
        status = "KILLED" if killed else "FAILED"
        reason = self.signalled or STOP.reason or ("interrupted" if killed else
                                                   "a job failed; see the children's error tags")
        try:
            mt.end_sweep(env, self.direction, status=status,
                         error=f"the sweep stopped before it ended: {reason}")
        except Exception as error:  # noqa: BLE001 - at exit there is nobody left to raise to
            print(f"nnx: could not close the sweep's MLflow run {env.get(mt.ENV_PARENT_RUN_ID)}: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)


GUARD = _SweepGuard()


class MlflowSweepCallback(Callback):
    """Opens a sweep's MLflow parent run before its jobs start; closes it when they end."""

    def __init__(self) -> None:
        self.env: dict[str, str] | None = None  # plain strings: the object is pickled to workers
        self.direction = "minimize"

    @staticmethod
    def _tracking(config) -> dict | None:
        tracking = config.get("tracking")
        if tracking is None or tracking.get("name") != "mlflow":
            return None
        return _plain(tracking)

    def on_multirun_start(self, config, **kwargs) -> None:
        tracking = self._tracking(config)
        if tracking is None:
            return
        from nnx import sweep_parent as mt

        hydra = config.hydra
        self.direction = _direction(config)
        overrides = [str(o) for o in hydra.overrides.task]
        space = swept(overrides)
        params = (hydra.get("sweeper") or {}).get("params") if hydra.get("sweeper") else None
        if params:  # the Optuna sweeper's search space
            space.update({str(k): str(v) for k, v in _plain(params).items()})
        info = {"sweep_dir": str(hydra.sweep.dir), "objective": str(config.get("objective")),
                "direction": self.direction, "overrides": overrides, "search_space": space,
                "sweeper": str((hydra.get("sweeper") or {}).get("_target_", "")),
                "launcher": str((hydra.get("launcher") or {}).get("_target_", ""))}
        try:
            self.env = mt.start_sweep(tracking, str(config.get("name") or "default"), info)
        except Exception as error:  # noqa: BLE001 - Hydra would turn it into a warning and go on
            # Jobs without a parent, racing on a store nobody created, are what this callback
            # exists to prevent: stop the sweep here, with one line.
            print(f"nnx: error: {error}", file=sys.stderr)
            sys.exit(2)
        self.env[mt.ENV_SWEEPER] = info["sweeper"]
        self.env[mt.ENV_SWEPT] = json.dumps(sorted(space))
        os.environ.update(self.env)
        GUARD.arm(self.env, self.direction)

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nnx import sweep_parent as mt

        hydra = HydraConfig.get()
        os.environ[mt.ENV_OUTPUT_DIR] = str(hydra.runtime.output_dir)
        if hydra.mode == RunMode.MULTIRUN:
            if self.env:
                os.environ.update(self.env)
            os.environ[mt.ENV_JOB_NUM] = str(hydra.job.num)
            os.environ[mt.ENV_OVERRIDES] = json.dumps([str(o) for o in hydra.overrides.task])
        else:  # a single run is never a sweep's child, whatever the environment says
            for key in (mt.ENV_JOB_NUM, mt.ENV_OVERRIDES, mt.ENV_SWEEPER, mt.ENV_SWEPT,
                        mt.ENV_PARENT_RUN_ID, mt.ENV_EXPERIMENT_ID, mt.ENV_SWEEP_URI):
                os.environ.pop(key, None)

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.env is None:
            return
        from nnx import sweep_parent as mt

        results = None
        path = Path(str(config.hydra.sweep.dir)) / "optimization_results.yaml"
        if path.is_file():
            import yaml

            results = yaml.safe_load(path.read_text()) or None
        try:
            mt.end_sweep(self.env, self.direction, results=results)
        except Exception as error:  # noqa: BLE001 - the exit hook tries again
            print(f"nnx: warning: closing the sweep's MLflow run failed: {type(error).__name__}: "
                  f"{error}", file=sys.stderr)
            return
        GUARD.disarm()
        self.env = None
