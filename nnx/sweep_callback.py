"""A Hydra callback that gives every sweep one MLflow parent run, nests each job under it, and
ends the sweep with its epilogue (``nnx.sweep_epilogue``).

conf/config.yaml lists it under ``hydra.callbacks``; with ``tracking=none`` (any tracking but
``mlflow``) it opens no parent run and only prints the epilogue, from the jobs' folders.

- ``on_multirun_start`` (the launching process, before any job): create the store, the
  experiment and the parent run, once. Jobs running in parallel on a *fresh* sqlite store would
  otherwise race in its schema migration (DESIGN.md). The ids go to the jobs as environment
  variables: the basic launcher runs jobs in this process, and the joblib launcher's loky
  workers are started after this point and inherit the environment. The callback object is
  also pickled to joblib workers, so ``on_job_start`` re-exports them there as well.
- ``on_job_start`` (each job's process): tell the tracker its output folder, job number and
  overrides; a single run (not a sweep) clears any sweep variables, so it is never nested.
- ``on_multirun_end``: close the parent with the best child's objective and overrides (and
  Optuna's ``optimization_results.yaml`` when there is one), write its report, print the
  epilogue: the ranked jobs, the best, the parent run id, the compare command, the UI address.
- If the sweep dies before ``on_multirun_end`` (a failed job, Ctrl-C, SIGTERM), an ``atexit``
  hook closes the parent as FAILED or KILLED and any child still RUNNING as KILLED, and prints
  the epilogue of what ran.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
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


def _results(info: dict) -> dict | None:
    """The Optuna sweeper's ``optimization_results.yaml`` of this sweep, if it wrote one."""
    path = Path(info["sweep_dir"]) / "optimization_results.yaml"
    if not path.is_file() or path.stat().st_mtime < info.get("started", 0) - 1:
        return None
    import yaml

    return yaml.safe_load(path.read_text()) or None


def finish_sweep(env: dict[str, str] | None, info: dict, status: str | None = None,
                 error: str | None = None) -> None:
    """Close the parent run (a tracked sweep), write its report, print the epilogue."""
    from nnx import sweep_epilogue
    from nnx import sweep_parent as mt
    from nnx import sweep_table as T

    results = _results(info)
    header = [str(line) for line in (results or {}).get("summary", [])]
    if env:
        mt.end_sweep(env, info["direction"], results=results, status=status, error=error)
    GUARD.disarm()  # the parent is closed: what follows is the report
    try:
        if not env:
            rows = T.rows_from_folders(info["sweep_dir"], info["swept"], info.get("started", 0))
            sweep_epilogue.report(rows, info, header)
            return
        from mlflow.tracking import MlflowClient

        client = MlflowClient(env[mt.ENV_SWEEP_URI])
        children = mt.sweep_children(client, env[mt.ENV_EXPERIMENT_ID],
                                     env[mt.ENV_PARENT_RUN_ID])
        store = {"uri": env[mt.ENV_SWEEP_URI], "experiment_id": env[mt.ENV_EXPERIMENT_ID],
                 "parent_run_id": env[mt.ENV_PARENT_RUN_ID]}
        # A killed sweep should end quickly: its epilogue, without the plots.
        sweep_epilogue.report(T.rows_from_runs(children, info["swept"]), info, header, store,
                              client if status != "KILLED" else None)
    except Exception as failure:  # noqa: BLE001 - the runs are stored; only the report is lost
        print(f"nnx: warning: the sweep's epilogue failed: {type(failure).__name__}: {failure}",
              file=sys.stderr)


class _SweepGuard:
    """Closes an open parent run when the launching process exits without on_multirun_end."""

    def __init__(self) -> None:
        self.env: dict[str, str] | None = None  # {} for an untracked sweep
        self.info: dict = {}
        self.armed = False
        self.signalled = ""
        self._registered = False

    def arm(self, env: dict[str, str] | None, info: dict) -> None:
        self.env, self.info, self.signalled, self.armed = env, info, "", True
        if not self._registered:
            atexit.register(self.close)
            self._registered = True
        # The joblib launcher's process has no handler of its own: without this, SIGTERM would
        # end it before atexit runs. (The basic launcher installs nnx.run's handler later.)
        # An untracked sweep has no run to close: SIGTERM ends it as before.
        if env and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.signalled = "stopped by SIGTERM"
        raise KeyboardInterrupt(self.signalled)

    def disarm(self) -> None:
        self.armed, self.env = False, None

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
        if not self.armed:
            return
        env, info = self.env, self.info
        self.disarm()
        from nnx import sweep_parent as mt
        from nnx.trainer import STOP

        killed = (self.signalled or STOP.reason is not None
                  or isinstance(getattr(sys, "last_value", None), KeyboardInterrupt))
        status = "KILLED" if killed else "FAILED"
        reason = self.signalled or STOP.reason or ("interrupted" if killed else
                                                   "a job failed; see the children's error tags")
        try:
            finish_sweep(env, info, status=status,
                         error=f"the sweep stopped before it ended: {reason}")
        except Exception as error:  # noqa: BLE001 - at exit there is nobody left to raise to
            what = (f"close the sweep's MLflow run {env.get(mt.ENV_PARENT_RUN_ID)}" if env
                    else "print the sweep's epilogue")
            print(f"nnx: could not {what}: {type(error).__name__}: {error}", file=sys.stderr)


GUARD = _SweepGuard()


class MlflowSweepCallback(Callback):
    """Opens a sweep's MLflow parent run before its jobs start; closes it when they end, and
    prints the sweep's epilogue (tracked or not)."""

    def __init__(self) -> None:
        self.env: dict[str, str] | None = None  # plain strings: the object is pickled to workers
        self.shared: dict[str, str] = {}  # what every job learns, tracked or not
        self.info: dict = {}

    @staticmethod
    def _tracking(config) -> dict | None:
        tracking = config.get("tracking")
        if tracking is None or tracking.get("name") != "mlflow":
            return None
        return _plain(tracking)

    def on_multirun_start(self, config, **kwargs) -> None:
        from nnx import sweep_parent as mt

        hydra = config.hydra
        tracking = self._tracking(config)
        direction = _direction(config)
        overrides = [str(o) for o in hydra.overrides.task]
        space = swept(overrides)
        params = (hydra.get("sweeper") or {}).get("params") if hydra.get("sweeper") else None
        if params:  # the Optuna sweeper's search space
            space.update({str(k): str(v) for k, v in _plain(params).items()})
        name = str(config.get("name") or "default")
        if tracking is not None:
            name = str(tracking.get("experiment") or name)
        sweeper = str((hydra.get("sweeper") or {}).get("_target_", ""))
        self.info = {"name": name, "objective": str(config.get("objective")),
                     "direction": direction, "swept": sorted(space),
                     "sweep_dir": str(hydra.sweep.dir), "started": time.time()}
        shared = {mt.ENV_SWEEPER: sweeper, mt.ENV_SWEPT: json.dumps(sorted(space))}
        if tracking is not None:
            info = {"sweep_dir": str(hydra.sweep.dir), "objective": str(config.get("objective")),
                    "direction": direction, "overrides": overrides, "search_space": space,
                    "sweeper": sweeper,
                    "launcher": str((hydra.get("launcher") or {}).get("_target_", ""))}
            try:
                self.env = mt.start_sweep(tracking, name, info)
            except Exception as error:  # noqa: BLE001 - Hydra would turn it into a warning
                # Jobs without a parent, racing on a store nobody created, are what this
                # callback exists to prevent: stop the sweep here, with one line.
                print(f"nnx: error: {error}", file=sys.stderr)
                sys.exit(2)
            self.env.update(shared)
            os.environ.update(self.env)
        else:
            self.env = None
            os.environ.update(shared)
        self.shared = shared
        GUARD.arm(self.env, self.info)

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nnx import sweep_parent as mt

        hydra = HydraConfig.get()
        os.environ[mt.ENV_OUTPUT_DIR] = str(hydra.runtime.output_dir)
        if hydra.mode == RunMode.MULTIRUN:
            os.environ.update(self.env or self.shared)
            os.environ[mt.ENV_JOB_NUM] = str(hydra.job.num)
            os.environ[mt.ENV_OVERRIDES] = json.dumps([str(o) for o in hydra.overrides.task])
        else:  # a single run is never a sweep's child, whatever the environment says
            for key in (mt.ENV_JOB_NUM, mt.ENV_OVERRIDES, mt.ENV_SWEEPER, mt.ENV_SWEPT,
                        mt.ENV_PARENT_RUN_ID, mt.ENV_EXPERIMENT_ID, mt.ENV_SWEEP_URI):
                os.environ.pop(key, None)

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.info:
            return
        try:
            finish_sweep(self.env, self.info)
        except Exception as error:  # noqa: BLE001 - the exit hook tries again
            what = "closing the sweep's MLflow run" if self.env else "the sweep's epilogue"
            print(f"nnx: warning: {what} failed: {type(error).__name__}: {error}",
                  file=sys.stderr)
            return
        self.env, self.info = None, {}
