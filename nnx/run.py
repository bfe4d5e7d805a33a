"""``python -m nnx.run``: Hydra composes the config, ``nnx.experiment.train`` runs it.

    python -m nnx.run experiment=tutorial
    python -m nnx.run optimizer=adam optimizer.lr=0.01 model.hidden=[64,32]
    python -m nnx.run -m optimizer=sgd,adam optimizer.lr=0.1,0.01      # a sweep

The only module that knows Hydra. Components without a YAML file in ``conf/`` (a plugin's)
get a config node generated from their constructor's defaults, so ``optimizer=<any name>``
works for every registered optimizer.
"""

from __future__ import annotations

import atexit
import errno
import gc
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nnx import launcher_watch
from nnx.config import GROUP_KINDS, ConfigError, constructor_defaults
from nnx.registry import PluginError, registry

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("nnx")


def register_generated_configs() -> None:
    """A ConfigStore node ``{name, **defaults}`` for every registered component with no YAML."""
    store = ConfigStore.instance()
    for group, kind in GROUP_KINDS.items():
        for entry in registry(kind).entries():
            if (CONF_DIR / group / f"{entry.name}.yaml").exists():
                continue
            try:
                cls = registry(kind).get(entry.name)
            except PluginError:
                continue  # broken or ambiguous plugins are reported when chosen, not here
            store.store(group=group, name=entry.name, node={"name": entry.name,
                                                             **constructor_defaults(cls)})


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


def compose(overrides: list[str] = ()) -> dict:
    """The config ``python -m nnx.run <overrides>`` would run, as a plain dict.

    For notebooks and tests: ``nnx.experiment.train(compose(["experiment=digits_mlp"]))``
    trains it in this process (without Hydra's run folder and logging).
    """
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra.compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from nnx import experiment

    config = OmegaConf.to_container(cfg, resolve=True)
    if not config["trainer"].get("checkpoint_dir"):
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        config["trainer"]["checkpoint_dir"] = str(output_dir / "checkpoints")
    _install_signal_handlers()
    launcher_watch.watch()  # a sweep's worker stops if its launcher dies without stopping it
    debug = os.environ.get("NNX_DEBUG", "") not in ("", "0")
    try:
        with launcher_watch.job():
            result = experiment.train(config)
    except KeyboardInterrupt as stop:
        print(f"nnx: stopped: {stop or 'interrupted (Ctrl-C)'}; the run is marked KILLED",
              file=sys.stderr)
        sys.exit(getattr(stop, "exit_code", 130))
    except (ConfigError, PluginError, ValueError, FileNotFoundError, FloatingPointError,
            ConnectionError, OSError) as error:
        if debug:
            raise
        print(f"nnx: error: {error}\n(set NNX_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # not foreseen (a plugin's, a library's, a bug): one paragraph too
        if debug:
            raise
        print(f"nnx: error: {type(error).__name__}: {error}\n(unexpected; NNX_DEBUG=1 prints "
              "the traceback to report)", file=sys.stderr)
        sys.exit(1)
    log.info(experiment.summary(config, result))
    if config.get("print_predictions"):
        ds, net = result["dataset"], result["trainer"].network
        x = ds.x_test if ds.x_test is not None else ds.x_train
        log.info("predictions: %s", " ".join(f"{v:.4f}" for v in net.predict(x).ravel()))
    return float(result["metrics"]["objective"])


def _check_output_dir(argv: list[str]) -> None:
    """Check that a run folder given on the command line can be made: Hydra makes it before
    ``main`` and reports a failure with a traceback; here it gets one line. Nothing is left
    behind (a folder made to probe is removed)."""
    key = "hydra.sweep.dir=" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir="
    given = [a.lstrip("+")[len(key):] for a in argv if a.lstrip("+").startswith(key)]
    folder = given[-1].strip("'\"") if given else ""
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
        print(f"nnx: error: {key[:-1]}: cannot create the output folder {folder} "
              f"({error.strerror or error}); pick a writable folder", file=sys.stderr)
        sys.exit(2)


register_generated_configs()

if __name__ == "__main__":
    _check_output_dir(sys.argv[1:])
    # Inherited by the sweep's worker processes, which watch it (nnx.launcher_watch).
    os.environ[launcher_watch.ENV_LAUNCHER_PID] = str(os.getpid())
    # Exit without the interpreter's last garbage collections: with mlflow loaded they walk a
    # million objects, about a second of every tracked run, to free memory that the process's
    # end frees anyway. Frozen objects are skipped. Registered before mlflow is imported, so it
    # runs after mlflow's exit hooks (the run itself is closed before main returns).
    atexit.register(gc.freeze)
    main()
