"""``python -m nnx.run``: Hydra composes the config, ``nnx.experiment.train`` runs it.

    python -m nnx.run experiment=tutorial
    python -m nnx.run optimizer=adam optimizer.lr=0.01 model.hidden=[64,32]
    python -m nnx.run -m optimizer=sgd,adam optimizer.lr=0.1,0.01      # a sweep

The only module that knows Hydra. Components without a YAML file in ``conf/`` (a plugin's)
get a config node generated from their constructor's defaults, so ``optimizer=<any name>``
works for every registered optimizer. nnx's configs come from ``nnx.locations.conf_dir()``
(the package ``nnx.conf``); ``--config-dir <folder>`` adds a user's own.
"""

from __future__ import annotations

import atexit
import difflib
import errno
import gc
import logging
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import hydra
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf

from nnx import launcher_watch
from nnx.config import GROUP_KINDS, ConfigError, constructor_defaults
from nnx.locations import conf_dir, plugin_conf_dirs
from nnx.registry import PluginError, registry
from nnx.user_configs import fail

CONF_DIR = conf_dir()
log = logging.getLogger("nnx")


def register_generated_configs() -> None:
    """A ConfigStore node ``{name, **defaults}`` for every registered component with no YAML
    in nnx's conf/ or a plugin's tree (a node beside a file of the same name would make Hydra
    validate the file against it, with a deprecation warning)."""
    store = ConfigStore.instance()
    folders = [CONF_DIR, *(folder for _, folder in plugin_conf_dirs())]
    for group, kind in GROUP_KINDS.items():
        for entry in registry(kind).entries():
            if any((folder / group / f"{entry.name}.yaml").exists() for folder in folders):
                continue
            try:
                cls = registry(kind).get(entry.name)
            except PluginError:
                continue  # broken or ambiguous plugins are reported when chosen, not here
            store.store(group=group, name=entry.name, node={"name": entry.name,
                                                             **constructor_defaults(cls)})


class PluginConfigs(SearchPathPlugin):
    """The config trees that plugins ship (entry points ``nnx.configs``, see nnx.locations) on
    Hydra's search path, after nnx's conf/: ``optimizer=lion`` then comes with the plugin's
    tuned values. Hydra searches, first match winning: nnx's conf/, the plugins' trees, a
    user's ``--config-dir``, the generated nodes (``structured://``). Registered here rather
    than in ``hydra_plugins/`` (which an editable install hides from Hydra's scan), and it
    changes nothing in a search path that does not hold nnx's conf/ (another application)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        ours = {str(CONF_DIR), f"file://{CONF_DIR}"}
        if not any(element.path in ours for element in search_path.get_path()):
            return
        for dist, folder in plugin_conf_dirs():
            search_path.append(provider=f"nnx.configs {dist}", path=f"file://{folder}")


def _install_signal_handlers() -> None:
    """First SIGINT/SIGTERM: finish the epoch, checkpoint, exit 130/143. Second: stop at once."""
    from nnx.trainer import STOP, TrainingInterrupted

    def handler(signum, frame):
        name, code = ("SIGINT", 130) if signum == signal.SIGINT else ("SIGTERM", 143)
        if STOP.reason is not None:
            raise TrainingInterrupted(f"{name} again: stopped at once, mid-epoch", code)
        STOP.request(f"stopped by {name}", code)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def compose(overrides: list[str] = (), config_dir: str | Path | None = None) -> dict:
    """The config ``python -m nnx.run <overrides>`` would run, as a plain dict.

    For notebooks and tests: ``nnx.experiment.train(compose(["experiment=digits_mlp"]))``
    trains it in this process (without Hydra's run folder and logging). ``config_dir``: a
    folder of the user's own configs, as ``--config-dir`` adds on the command line.
    """
    overrides = list(overrides)
    if config_dir is not None:
        folder = Path(config_dir).expanduser().absolute()
        if not folder.is_dir():
            raise FileNotFoundError(f"config_dir: no such folder {folder}")
        overrides.append(f"hydra.searchpath=[file://{folder}]")
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


class SweepJob:
    """A job of a sweep, as ``main`` sees it: it leaves ``result.json`` in its folder (what the
    sweep's epilogue ranks when nothing is tracked) and, in a worker process of a parallel
    launcher (joblib, submitit), prints one line when it ends instead of a progress bar and the
    summary, which would interleave with the other jobs'."""

    def __init__(self) -> None:
        from hydra.types import RunMode

        from nnx.sweep_parent import hydra_job

        hydra_config = HydraConfig.get()
        self.output_dir = Path(hydra_config.runtime.output_dir)
        self.sweep = hydra_config.mode == RunMode.MULTIRUN
        self.parallel = self.sweep and launcher_watch.launcher_pid() is not None
        self.number, self.varied = None, []
        if not self.sweep:
            return
        from nnx.sweep_parent import override_key

        job = hydra_job()
        trial = os.environ.get("NNX_OPTUNA_TRIAL", "")
        self.number = int(trial) if trial.isdigit() else job.get("job_num", hydra_config.job.num)
        swept = set(job.get("swept", []))
        self.varied = [o for o in (str(o) for o in hydra_config.overrides.task)
                       if override_key(o) in swept]

    def ended(self, status: str, objective_name: str, value: float | None = None,
              metrics: dict | None = None, run_id: str | None = None, error: str = "") -> None:
        if not self.sweep:
            return
        import json

        record = {"job": self.number, "status": status, "objective_name": objective_name,
                  "objective": value, "metrics": {k: float(v) for k, v in (metrics or {}).items()
                                                  if isinstance(v, (int, float))},
                  "run_id": run_id, "error": error}
        try:
            (self.output_dir / "result.json").write_text(json.dumps(record, indent=1))
        except OSError:  # the epilogue then reports the job as one that left no result
            pass
        if self.parallel:  # the whole error follows on stderr: here its start
            why = error if len(error) <= 80 else error[:77] + "..."
            shown = f"{objective_name} {value:.4g} ({status})" if value is not None else \
                f"{status}" + (f" ({why})" if why else "")
            print(f"job #{self.number} {' '.join(self.varied)}".rstrip() + f": {shown}",
                  flush=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from nnx import experiment

    config = OmegaConf.to_container(cfg, resolve=True)
    sweep_job = SweepJob()
    if not config["trainer"].get("checkpoint_dir"):
        config["trainer"]["checkpoint_dir"] = str(sweep_job.output_dir / "checkpoints")
    if sweep_job.parallel:
        config["trainer"]["progress"] = False  # one line per job instead (SweepJob)
    objective = str(config.get("objective", "val_loss"))
    _install_signal_handlers()
    launcher_watch.watch()  # a sweep's worker stops if its launcher dies without stopping it
    debug = os.environ.get("NNX_DEBUG", "") not in ("", "0")
    try:
        with launcher_watch.job():
            result = experiment.train(config)
    except KeyboardInterrupt as stop:
        sweep_job.ended("KILLED", objective, error=str(stop) or "interrupted")
        print(f"nnx: stopped: {stop or 'interrupted (Ctrl-C)'}; the run is marked KILLED",
              file=sys.stderr)
        sys.exit(getattr(stop, "exit_code", 130))
    except (ConfigError, PluginError, ValueError, FileNotFoundError, FloatingPointError,
            ConnectionError, OSError) as error:
        sweep_job.ended("FAILED", objective, error=f"{type(error).__name__}: {error}")
        if debug:
            raise
        print(f"nnx: error: {error}\n(set NNX_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # not foreseen (a plugin's, a library's, a bug): one paragraph too
        sweep_job.ended("FAILED", objective, error=f"{type(error).__name__}: {error}")
        if debug:
            raise
        print(f"nnx: error: {type(error).__name__}: {error}\n(unexpected; NNX_DEBUG=1 prints "
              "the traceback to report)", file=sys.stderr)
        sys.exit(1)
    trainer, tracker = result["trainer"], result["trainer"].tracker
    run_id = getattr(tracker, "run_id", None)
    pruned = any(getattr(cb, "pruned_epoch", None) is not None for cb in trainer.callbacks)
    sweep_job.ended("PRUNED" if pruned else "FINISHED", objective,
                    float(result["metrics"]["objective"]), result["metrics"], run_id)
    # A parallel job's summary goes to its run.log only: its console line was printed above.
    report = _to_log_file if sweep_job.parallel else log.info
    # "In all" is the whole process for a single run, what `time python -m nnx.run` would say
    # (importing Hydra, nnx and mlflow takes seconds); a sweep's job gets its own run's time.
    in_all = None if sweep_job.sweep else process_seconds()
    report(experiment.summary(config, result, in_all=in_all))
    if config.get("print_predictions"):
        ds, net = result["dataset"], trainer.network
        x = ds.x_test if ds.x_test is not None else ds.x_train
        report("predictions: " + " ".join(f"{v:.4f}" for v in net.predict(x).ravel()))
    if run_id and getattr(tracker, "uri", None):
        from nnx.store import describe

        report(f"MLflow run {run_id} in {describe(tracker.uri)}")
        if not sweep_job.sweep:  # a sweep's epilogue gives its parent's address
            from nnx.ui_address import ui_line

            report(ui_line(tracker.uri, tracker.experiment_id, run_id))
    return float(result["metrics"]["objective"])


# The fallback start of this process where the kernel's record cannot be read: this module's
# import, which misses the interpreter's start-up and the imports before it.
_IMPORTED = time.monotonic()


def process_seconds() -> float:
    """Wall-clock seconds since this process started, interpreter start-up and imports
    included: ``CLOCK_BOOTTIME`` now less the process's start time in ``/proc/self/stat``
    (field 22, in clock ticks since boot, so exact to 10 ms). Not psutil's ``create_time``: it
    adds that to the boot time in whole seconds, up to a second off. Elsewhere than Linux:
    since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        # The command name (field 2) is in parentheses and may hold spaces: count after it.
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def _to_log_file(message: str) -> None:
    """``message`` to the job's log file (Hydra's file handler), not to the console."""
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _check_output_dir(argv: list[str]) -> None:
    """Check that a run folder given on the command line can be made: Hydra makes it before
    ``main`` and reports a failure with a traceback; here it gets one line. Nothing is left
    behind (a folder made to probe is removed)."""
    key = "hydra.sweep.dir=" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir="
    given = [a.lstrip("+")[len(key):] for a in argv if a.lstrip("+").startswith(key)]
    folder = given[-1].strip("'\"") if given else ""
    if not folder and not WRITES_NOTHING & set(argv):
        _check_working_directory()
    if not folder or "${" in folder:
        return
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        if existing != path:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".nnx-probe-"))
    except OSError as error:
        fail(f"{key[:-1]}: cannot create the output folder {folder} "
             f"({error.strerror or error}); pick a writable folder")


def _check_group_choices(argv: list[str]) -> None:
    """A config group's option given on the command line (``optimizer=adma``) that no YAML
    file and no registered name provides: nnx's message, with the valid names and the closest
    one, instead of Hydra's search path; a registered plugin that fails to load: its real
    error, not "Could not find". Sweeps (``optimizer=sgd,adam``) are checked name by name."""
    from nnx.user_configs import config_folders, options

    folders = config_folders(argv)  # nnx's conf/, the plugins' trees, the user's --config-dir
    groups = {p.name for f in folders if f.is_dir() for p in f.iterdir()
              if p.is_dir() and p.name != "hydra"}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in groups or any(c in value for c in "()[]{}$"):
            continue
        kind = GROUP_KINDS.get(key)
        valid = options(key, folders)  # YAML files and, for component groups, registered names
        names = set(registry(kind).names()) if kind else set()
        for choice in (v.strip().strip("'\"") for v in value.split(",")):
            if choice == "null" or (choice in valid and choice not in names):
                continue
            if choice in names:
                try:
                    registry(kind).get(choice)
                except PluginError as error:
                    fail(f"{key}={choice}: {error}")
                continue
            close = difflib.get_close_matches(choice, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            singular = registry(kind).singular if kind else key.replace("_", " ")
            fail(f"{key}={choice}: unknown {singular} {choice!r}.{hint} "
                  f"Valid names: {', '.join(valid)}.")


# Hydra flags after which nothing is written (the config, help or search path is printed).
WRITES_NOTHING = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i",
                  "--shell-completion", "-sc"}


def _check_working_directory() -> None:
    """With no run folder on the command line, Hydra makes one under the working directory
    (``outputs/``, ``multirun/``), where the default store ``mlflow.db`` also goes: check that
    it can be written, or say what to do in one paragraph (Hydra's own failure is a traceback)."""
    cwd = Path.cwd()
    try:
        os.rmdir(tempfile.mkdtemp(dir=cwd, prefix=".nnx-probe-"))
    except OSError as error:
        fail(f"the working directory {cwd} is not writable ({error.strerror or error}), and by "
             "default nnx writes there: the run folders (outputs/, multirun/) and the MLflow "
             "store mlflow.db. Run from a writable folder, or give both places: "
             "hydra.run.dir=<writable folder> (hydra.sweep.dir=... with -m) and "
             "tracking.uri=sqlite:///<writable folder>/mlflow.db (or tracking=none)")


def run_command_line(argv: list[str]) -> None:
    """``python -m nnx.run ARGS`` and ``nnx run ARGS``: Hydra's command line, untouched."""
    from nnx.user_configs import check_config_dir, check_experiments

    check_config_dir(argv)
    check_experiments(argv)
    _check_output_dir(argv)
    _check_group_choices(argv)
    # Inherited by the sweep's worker processes, which watch it (nnx.launcher_watch).
    os.environ[launcher_watch.ENV_LAUNCHER_PID] = str(os.getpid())
    # Exit without the interpreter's last garbage collections: with mlflow loaded they walk a
    # million objects, about a second of every tracked run, to free memory that the process's
    # end frees anyway. Frozen objects are skipped. Registered before mlflow is imported, so it
    # runs after mlflow's exit hooks (the run itself is closed before main returns).
    atexit.register(gc.freeze)
    sys.argv[1:] = argv  # what Hydra parses
    # Hydra prints an exception raised outside any job as a traceback and exits 1: in a sweep,
    # joblib's TerminatedWorkerError when a worker is killed (the OOM killer, kill -9). Told
    # HYDRA_FULL_ERROR, it lets the exception through to _sweep_failed, which says it in one
    # paragraph. A user's own setting wins.
    sweep = bool({"-m", "--multirun"} & set(argv))
    ours = sweep and "HYDRA_FULL_ERROR" not in os.environ
    if ours:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except KeyboardInterrupt as stop:  # outside a job: a sweep's launcher (see _sweep_stopped)
        _sweep_stopped(stop, sweep)
    except Exception as error:
        if not ours or os.environ.get("NNX_DEBUG", "") not in ("", "0"):
            raise
        _sweep_failed(error)


def _sweep_failed(error: Exception) -> None:
    """A sweep stopped by an exception outside its jobs, in one paragraph, exit 1 (as Hydra's
    own exit): Hydra's config errors as Hydra prints them, anything else (a killed worker) with
    the sweep's runs closed first: the parent FAILED, jobs still running KILLED."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, CompactHydraException):
        print(error, file=sys.stderr)
        if isinstance(error.__cause__, OmegaConfBaseException):
            print(error.__cause__, file=sys.stderr)
        sys.exit(1)
    from nnx.store import first_line
    from nnx.sweep_callback import GUARD

    closed = GUARD.env is not None
    GUARD.close()
    codes = re.search(r"exit codes? of the workers? (?:is|are) \{[^}]*\}", str(error))
    print(f"nnx: error: the sweep stopped: {type(error).__name__}: {first_line(error)}"
          + (f" ({codes.group(0)})" if codes else "")
          + ("; its MLflow runs are closed (the sweep FAILED, jobs still running KILLED)"
             if closed else "") + "\n(set NNX_DEBUG=1 for the traceback)", file=sys.stderr)
    sys.exit(1)


def _sweep_stopped(stop: KeyboardInterrupt, sweep: bool) -> None:
    """Ctrl-C or SIGTERM reached the launching process outside any job: the joblib launcher
    waits for its workers (and kills them on the way out), the basic launcher was between two
    jobs (or a single run had not started yet). Hydra lets the KeyboardInterrupt through, which
    would end the process with a traceback and exit 1: instead the sweep's runs are closed
    KILLED, one line says so, and the exit status is the signal's, 130 or 143, as for a run."""
    from nnx.sweep_callback import GUARD

    sigterm = GUARD.signalled == "stopped by SIGTERM" or getattr(stop, "exit_code", 130) == 143
    name, code = ("SIGTERM", 143) if sigterm else ("SIGINT", 130)
    closed = GUARD.interrupted(f"stopped by {name}")
    print(f"nnx: stopped by {name}: "
          + ("the sweep ended before its jobs did" if sweep else "before training started")
          + ("; its MLflow runs are marked KILLED" if closed else ""), file=sys.stderr)
    sys.exit(code)


def register_plugins() -> None:
    """Hydra finds plugins by scanning the ``hydra_plugins`` namespace, which misses those of an
    editable install (its import hook is no folder to scan): register nnx's own explicitly."""
    from hydra_plugins.nnx_optuna_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(PluginConfigs)
    Plugins.instance().register(OptunaSweeper)


register_generated_configs()
register_plugins()

if __name__ == "__main__":
    run_command_line(sys.argv[1:])
