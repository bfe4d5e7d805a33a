"""The MLflow tracker: every run's config, tags, metrics, weights, plots and model in MLflow.

    tracker = MlflowTracker.from_config(cfg)   # opens (or creates) the store, checks a server
    tracker.start(cfg, trainer, dataset)       # the run: params, tags, config artifacts
    tracker.log_metrics(logs, step=epoch)      # buffered; written with log_batch
    tracker.log_network(network)               # final weights, pyfunc model, plots
    tracker.finish("FINISHED" | "FAILED" | "KILLED", error)

Facts that shape it (see DESIGN.md): the tracking URI is always set explicitly (default: an
absolute ``sqlite:///`` path to ``mlflow.db`` in the project folder); one ``log_metric`` costs
milliseconds while ``log_batch`` costs ~0.1 ms per metric, so metrics are buffered; a fresh sqlite
store must be created by one process at a time (a file lock here, and a sweep's launching process
creates the store and the experiment before any job starts, see ``nnx.sweep_callback``); a dead
server is detected before training, in seconds, instead of after minutes of retries.

``import nnx`` never imports this module; mlflow itself is imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import getpass
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from nnx.config import ConfigError
from nnx.tracking import Tracker

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DB = PROJECT_DIR / "mlflow.db"

# Environment: NNX_TRACKING_URI replaces the default store (handy for tests and CI). The
# others are set by nnx.sweep_callback: the launching process of a sweep passes the store,
# experiment and parent run to its jobs; each job learns its own folder and number.
ENV_URI = "NNX_TRACKING_URI"
ENV_SWEEP_URI = "NNX_MLFLOW_TRACKING_URI"
ENV_EXPERIMENT_ID = "NNX_MLFLOW_EXPERIMENT_ID"
ENV_PARENT_RUN_ID = "NNX_MLFLOW_PARENT_RUN_ID"
ENV_OUTPUT_DIR = "NNX_HYDRA_OUTPUT_DIR"
ENV_JOB_NUM = "NNX_HYDRA_JOB_NUM"
ENV_OVERRIDES = "NNX_HYDRA_OVERRIDES"
ENV_SWEEPER = "NNX_HYDRA_SWEEPER"
ENV_SWEPT = "NNX_HYDRA_SWEPT"  # JSON list of the keys a sweep varies

# tracking.* keys and their defaults (conf/tracking/mlflow.yaml documents each).
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
}
# The pictures drawn at the end of a run and their artifact files, in the order they are
# drawn (tracking.plots picks among them).
PLOT_FILES = {"curves": "plots/learning_curves.png", "histograms": "plots/histograms/final.png",
              "confusion": "plots/confusion_matrix.png",
              "boundary": "plots/decision_boundary.png"}
PLOTS = tuple(PLOT_FILES)
# MLflow's limits (mlflow.utils.validation).
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# Config keys that say where a run is logged or written, not what was trained.
NOT_PARAMS = ("tracking", "trainer.checkpoint_dir")


class TrackingError(ConnectionError):
    """The tracking store cannot be reached or used; the message names the URI."""


# -- the store ---------------------------------------------------------------------------
def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri`` if given, else $NNX_TRACKING_URI, else the project's
    ``sqlite:///<project>/mlflow.db``. Relative sqlite paths and bare ``*.db`` paths become
    absolute ``sqlite:///`` URIs, so every process of a sweep opens the same file."""
    uri = uri or os.environ.get(ENV_URI) or f"sqlite:///{DEFAULT_DB}"
    uri = str(uri)
    if "://" not in uri and uri.endswith(".db"):
        return f"sqlite:///{Path(uri).expanduser().resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock beside a sqlite store while it is created or an experiment is made.

    Several processes creating a fresh sqlite store at once crash in its schema migration, and
    racing to create one experiment can file a run under ``Default``; the lock serialises both.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; sweeps still create the store first
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingError unless the MLflow server at ``uri`` answers ``/health`` in time."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                raise TrackingError(f"MLflow tracking server {uri} answered {url} with HTTP "
                                    f"{response.status}")
    except urllib.error.HTTPError as error:
        raise TrackingError(f"MLflow tracking server {uri} answered {url} with HTTP "
                            f"{error.code}; is it an MLflow server?") from error
    except (urllib.error.URLError, OSError) as error:
        cause = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({cause}). Start it (e.g. `mlflow "
            f"server --host 127.0.0.1 --port 5000`), pick another store with tracking.uri=..., "
            "or train without tracking: tracking=none") from error


_FROZEN = False  # whether _long_lived has run in this process


@contextlib.contextmanager
def _long_lived():
    """A block whose objects live until exit: the first import of mlflow and the first store.

    Those make about a million objects (mlflow, pandas, sqlalchemy's mappers). The cyclic
    collector would walk them while they are made and again at every full collection after,
    half a second of a tutorial run, and never reclaim one. So the collector is off in the
    block and what it built is frozen (``gc.freeze``: skipped by every later collection).
    Once per process; a collector someone turned off is left alone.
    """
    global _FROZEN
    if _FROZEN or not gc.isenabled():
        yield
        return
    _FROZEN = True
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def open_store(uri: str, timeout: float = 5.0):
    """An ``MlflowClient`` for ``uri``, with the store created and reachable.

    Servers are probed first (a dead one fails in ``timeout`` seconds, not after minutes of
    retries); a sqlite store is created under a file lock.
    """
    if is_http(uri):
        check_server(uri, timeout)
        # Later calls retry a little, but a server that dies mid-run must not hang a job
        # for minutes (MLflow's 7 retries with backoff add up to about 4). The user's
        # setting wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    with _long_lived():
        from mlflow.tracking import MlflowClient

        try:
            with store_lock(uri):
                # Constructing the client already creates and migrates a fresh sqlite store:
                # two processes doing that at once corrupt it, so it happens under the lock.
                client = MlflowClient(tracking_uri=uri)
                client.search_experiments(max_results=1)
        except Exception as error:
            raise TrackingError(f"cannot open the MLflow store {uri}: {type(error).__name__}: "
                                f"{_first_line(error)}") from error
    return client


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created if missing (restored if it was deleted).

    In a sqlite store the experiment's artifacts go beside the database, in
    ``mlartifacts/<name>``, rather than wherever the current folder happens to be.
    """
    from mlflow.exceptions import MlflowException

    with store_lock(uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                print(f"nnx: MLflow experiment {name!r} was deleted; restoring it",
                      file=sys.stderr)
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = None
        db = sqlite_path(uri)
        if db is not None:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
            location = (db.parent / "mlartifacts" / slug).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process (servers have no lock)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def experiment_name(cfg: dict) -> str:
    tracking = cfg.get("tracking") or {}
    return str(tracking.get("experiment") or cfg.get("name") or "default")


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
    for key in ("flush_seconds", "timeout"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"tracking.{key}: expected a number of seconds > 0, got {value!r}")
    if not isinstance(settings["log_model"], bool):
        raise ConfigError(f"tracking.log_model: expected true or false, got "
                          f"{settings['log_model']!r}")
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


# -- what a run records ------------------------------------------------------------------
def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``; lists stay whole values."""
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
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
    """The flattened config as params within MLflow's limits (keys 250, values 6000 chars)."""
    params = {}
    for key, value in flatten(config).items():
        if any(key == skip or key.startswith(skip + ".") for skip in NOT_PARAMS):
            continue
        params[_clip(key, MAX_KEY)] = _clip(param_text(value), MAX_PARAM_VALUE)
    return params


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool] | None:
    """(commit, dirty) of the project folder's git checkout, or None outside one."""
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
                                check=False, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(PROJECT_DIR), "status", "--porcelain",
                                 "--untracked-files=no"], check=False, capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip(), bool(status.stdout.strip())


def component_tags(config: dict, network=None) -> dict[str, str]:
    """Where every component came from: ``component.optimizer = nnx 0.1.0``,
    ``component.activation.mish = nnx-example-plugin 0.1.0``, so a plugin's version is on record."""
    from nnx.registry import PluginError, UnknownComponentError, registry

    wanted: list[tuple[str, str, str]] = []  # (tag, kind, name)
    for group, kind in (("dataset", "datasets"), ("loss", "losses"), ("optimizer", "optimizers"),
                        ("schedule", "schedules")):
        node = config.get(group)
        if isinstance(node, dict) and node.get("name"):
            wanted.append((f"component.{group}", kind, str(node["name"])))
    model = config.get("model") or {}
    if model.get("initializer"):
        wanted.append(("component.initializer.{}", "initializers", str(model["initializer"])))
    if network is not None:
        for spec in network.specs():
            name = spec["name"]
            short = name.rpartition(":")[2]
            for kind, label in (("layers", "layer"), ("activations", "activation")):
                if short in registry(kind).names():
                    wanted.append((f"component.{label}.{{}}", kind, name))
                    break
    tags = {}
    for tag, kind, name in wanted:
        try:
            entry = registry(kind).entry(name)
        except (UnknownComponentError, PluginError):
            continue
        tags[_clip(tag.format(entry.name), MAX_KEY)] = f"{entry.distribution} {entry.version}"
    return tags


def hydra_job() -> dict:
    """What the sweep callback told this process about its Hydra job (empty outside Hydra)."""
    info = {}
    if os.environ.get(ENV_OUTPUT_DIR):
        info["output_dir"] = Path(os.environ[ENV_OUTPUT_DIR])
    if os.environ.get(ENV_JOB_NUM, "").isdigit():
        info["job_num"] = int(os.environ[ENV_JOB_NUM])
    if os.environ.get(ENV_OVERRIDES):
        try:
            info["overrides"] = list(json.loads(os.environ[ENV_OVERRIDES]))
        except ValueError:
            pass
    if os.environ.get(ENV_SWEEPER):
        info["sweeper"] = os.environ[ENV_SWEEPER]
    try:
        info["swept"] = list(json.loads(os.environ.get(ENV_SWEPT) or "[]"))
    except ValueError:
        info["swept"] = []
    return info


def override_key(override: str) -> str:
    """``+model.x=1`` -> ``model.x``; ``optimizer=adam`` -> ``optimizer``."""
    return override.partition("=")[0].lstrip("+~")


def sweep_parent(uri: str) -> tuple[str, str] | None:
    """(experiment id, parent run id) when this process is a job of a tracked sweep on ``uri``."""
    parent, experiment = os.environ.get(ENV_PARENT_RUN_ID), os.environ.get(ENV_EXPERIMENT_ID)
    if parent and experiment and os.environ.get(ENV_SWEEP_URI) == uri:
        return experiment, parent
    return None


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


# -- the tracker -------------------------------------------------------------------------
class MetricWriter:
    """Sends metric batches to the store on a background thread, so training does not wait.

    ``log_batch`` costs about 0.1 ms per metric on sqlite (more against a server): a few ms
    per logged epoch, which a small network's epoch notices. The thread writes while the main
    thread trains (NumPy and sqlite both release the GIL). ``drain`` waits until everything
    submitted is stored and re-raises the first error the thread met.
    """

    def __init__(self, client, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._pending: list = []
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, metrics: list) -> None:
        with self._cond:
            self._pending.extend(metrics)
            if self._thread is None:
                # A daemon: a process that dies without finish() must not hang on it.
                self._thread = threading.Thread(target=self._loop, name="nnx-mlflow-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                chunk = self._pending[:MAX_METRICS_PER_BATCH]
                del self._pending[:len(chunk)]
                self._busy = True
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as error:  # noqa: BLE001 - handed to the main thread by drain()
                with self._cond:
                    self._error = self._error or error
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def drain(self) -> None:
        """Block until every submitted metric is written; raise the thread's first error."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise TrackingError(f"writing metrics to {self.client.tracking_uri} failed: "
                                f"{type(error).__name__}: {_first_line(error)}") from error


class MlflowTracker(Tracker):
    """Logs one training run to MLflow (see the module docstring for the calls, in order)."""

    def __init__(self, client, uri: str, experiment_id: str, settings: dict | None = None,
                 parent_run_id: str | None = None) -> None:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self.settings = check_settings(settings or {})
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        self.config: dict = {}
        self.trainer = self.dataset = None
        self.latest: dict[str, float] = {}  # the last value of every metric logged
        self._buffer: list = []
        self._last_flush = time.monotonic()
        self._writer: MetricWriter | None = None
        self._snapshotted = 0  # epoch of the last weights snapshot
        self._histogrammed = 0
        self._finished = False
        self._warnings: list[str] = []

    @classmethod
    def from_config(cls, cfg: dict) -> MlflowTracker:
        """A tracker for the whole resolved config ``cfg`` (its ``tracking`` node picks the
        store and the experiment). Fails here, before training, when the store is unusable."""
        settings = check_settings(dict(cfg.get("tracking") or {}))
        uri = resolve_uri(settings["uri"])
        client = open_store(uri, float(settings["timeout"]))
        sweep = sweep_parent(uri)
        if sweep is not None:
            exp_id, parent = sweep
        else:
            try:
                exp_id, parent = experiment_id(client, experiment_name(cfg), uri), None
            except Exception as error:
                raise TrackingError(f"cannot use MLflow experiment {experiment_name(cfg)!r} in "
                                    f"{uri}: {_first_line(error)}") from error
        return cls(client, uri, exp_id, settings, parent_run_id=parent)

    # -- the run -----------------------------------------------------------------------
    def start(self, config: dict, trainer, dataset) -> None:
        """Create the run; log params, tags, the composed config and Hydra's ``.hydra/``."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        self.config, self.trainer, self.dataset = config, trainer, dataset
        job = hydra_job()
        tags = self.run_tags(config, trainer, dataset, job)
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, start_time=_now_ms(), tags=tags,
                                     run_name=self.run_name(config, job))
        self.run_id = run.info.run_id
        self._writer = MetricWriter(self.client, self.run_id)
        self.log_params(config_params(config))
        with tempfile.TemporaryDirectory(prefix="nnx-mlflow-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(_yaml(config))
            self.client.log_artifact(self.run_id, str(path))
        hydra_dir = job.get("output_dir", Path("/nonexistent")) / ".hydra"
        if hydra_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(hydra_dir), ".hydra")

    def run_name(self, config: dict, job: dict) -> str | None:
        if self.settings["run_name"]:
            return str(self.settings["run_name"])
        if "job_num" in job and self.parent_run_id:
            swept = set(job.get("swept", []))
            shown = [o for o in job.get("overrides", []) if override_key(o) in swept]
            number = os.environ.get("NNX_OPTUNA_TRIAL") or job["job_num"]  # a trial's number
            return _clip(" ".join([f"#{number}", *shown]), MAX_KEY)
        return None  # MLflow picks a name

    def run_tags(self, config: dict, trainer, dataset, job: dict) -> dict[str, str]:
        from nnx import __version__

        network = trainer.network if trainer is not None else None
        tags = {
            "mlflow.user": _user(),
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": "nnx.run" if job else Path(sys.argv[0] or "python").name,
            "nnx.version": __version__,
            "nnx.objective": str(config.get("objective", "val_loss")),
        }
        git = git_state()
        if git is not None:
            tags["nnx.git_commit"] = tags["mlflow.source.git.commit"] = git[0]
            tags["nnx.git_dirty"] = str(git[1]).lower()
        if dataset is not None:
            n_test = 0 if dataset.x_test is None else len(dataset.x_test)
            tags.update({"dataset": dataset.name, "nnx.dataset.task": dataset.task,
                         "nnx.dataset.n_train": str(len(dataset.x_train)),
                         "nnx.dataset.n_test": str(n_test),
                         "nnx.dataset.n_features": str(dataset.n_features)})
            if dataset.n_classes:
                tags["nnx.dataset.n_classes"] = str(dataset.n_classes)
        if network is not None:
            tags["nnx.n_params"] = str(network.n_params)
            tags["mlflow.note.content"] = "```\n" + network.summary() + "\n```"
        tags.update(component_tags(config, network))
        checkpoint_dir = (config.get("trainer") or {}).get("checkpoint_dir")
        if checkpoint_dir:
            tags["nnx.checkpoint_dir"] = str(checkpoint_dir)
        if "output_dir" in job:
            tags["nnx.output_dir"] = str(job["output_dir"])
        if "job_num" in job:
            tags["nnx.job_num"] = str(job["job_num"])
            if "optuna" in job.get("sweeper", ""):
                tags["trial"] = os.environ.get("NNX_OPTUNA_TRIAL") or str(job["job_num"])
        if job.get("overrides"):
            tags["nnx.overrides"] = json.dumps(job["overrides"])
        resume = (config.get("trainer") or {}).get("resume")
        if resume:
            tags["nnx.resumed_from"] = str(resume)
        return {k: _clip(str(v), MAX_TAG_VALUE) for k, v in tags.items()}

    # -- the Tracker interface --------------------------------------------------------
    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        params = {_clip(str(k), MAX_KEY): _clip(param_text(v), MAX_PARAM_VALUE)
                  for k, v in flatten(dict(params)).items()}
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self._run(), params=items[i:i + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_clip(str(k), MAX_KEY), _clip(str(v), MAX_TAG_VALUE))
                 for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self._run(), tags=items[i:i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer ``metrics`` at ``step`` (the epoch); written at least every ``flush_seconds``.

        Also takes the periodic weight snapshots and histograms (``tracking.snapshot_every``,
        ``tracking.histograms_every``) when an interval has passed.
        """
        from mlflow.entities import Metric

        stamp = _now_ms()
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue
            value = float(value)
            self._buffer.append(Metric(_clip(str(key), MAX_KEY), value, stamp, int(step)))
            self.latest[key] = value
        if (len(self._buffer) >= MAX_METRICS_PER_BATCH
                or time.monotonic() - self._last_flush >= self.settings["flush_seconds"]):
            self.flush()
        network = getattr(self.trainer, "network", None)
        if network is None:
            return
        every = self.settings["snapshot_every"]
        if every and step // every > self._snapshotted // every:
            self._snapshotted = step
            self.log_network(network, epoch=step)
        every = self.settings["histograms_every"]
        if (every and "histograms" in self.settings["plots"]
                and step // every > self._histogrammed // every):
            self._histogrammed = step
            self._plot("histograms", f"plots/histograms/epoch_{step:05d}.png")

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered metrics to the background writer (``log_batch``, at most 1000
        per call); with ``wait``, return once they are stored. ``finish`` always waits."""
        self._run()
        if self._buffer:
            self._writer.submit(self._buffer)
            self._buffer = []
        self._last_flush = time.monotonic()
        if wait:
            self._writer.drain()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self._run(), str(path), artifact_path)

    def log_network(self, network, epoch: int | None = None) -> None:
        """A weights snapshot (``weights/epoch_00010.npz``); with ``epoch=None`` the final
        weights (``weights/final.npz``), the pyfunc model and the plots."""
        from nnx.mlflow_model import save_snapshot

        with tempfile.TemporaryDirectory(prefix="nnx-mlflow-") as tmp:
            name = "final.npz" if epoch is None else f"epoch_{epoch:05d}.npz"
            save_snapshot(network, Path(tmp) / name)
            self.client.log_artifact(self._run(), str(Path(tmp) / name), "weights")
        if epoch is not None:
            return
        if self.settings["log_model"]:
            self.log_model(network)
        if self.settings["plots"]:
            self.log_plots(network)

    def log_model(self, network, name: str = "model") -> str:
        """The network as an MLflow pyfunc model, loaded by ``nnx.mlflow_model`` (no pickle);
        returns its ``runs:/<run id>/<name>`` URI."""
        import mlflow
        from mlflow.models import infer_signature

        from nnx import __version__
        from nnx.mlflow_model import save_network

        if self.dataset is not None:
            example = np.asarray(self.dataset.x_train[:5], dtype=network.dtype)
        else:
            example = np.zeros((1, network.in_features), dtype=network.dtype)
        signature = infer_signature(example, network.predict(example))
        with tempfile.TemporaryDirectory(prefix="nnx-model-") as tmp, self._fluent_run():
            data = save_network(network, Path(tmp) / "network")
            mlflow.pyfunc.log_model(
                name=name, loader_module="nnx.mlflow_model", data_path=str(data),
                signature=signature, input_example=example,
                # Given, not inferred: inference loads the model in a subprocess (seconds).
                pip_requirements=[f"nnx=={__version__}", f"numpy=={np.__version__}"])
        return f"runs:/{self.run_id}/{name}"

    def log_plots(self, network) -> None:
        """The plots ``tracking.plots`` picks, of: learning curves, weight/gradient histograms,
        and for classification a confusion matrix (test set, else train) and, on 2-D data, the
        decision boundary."""
        ds = self.dataset
        classification = ds is not None and ds.task == "classification"
        applies = {"curves": True, "histograms": True, "confusion": classification,
                   "boundary": classification and ds.n_features == 2}
        for name in self.settings["plots"]:
            if applies[name]:
                self._plot(name, PLOT_FILES[name])

    def _plot(self, what: str, artifact: str) -> None:
        """Draw one plot and log it; a plot that fails is a warning, never a failed run."""
        from nnx import plots
        from nnx.metrics import labels_from_outputs, labels_from_targets

        trainer, ds = self.trainer, self.dataset
        title = str(self.config.get("name", ""))
        try:
            network, threshold = trainer.network, trainer.config.decision_threshold
            with tempfile.TemporaryDirectory(prefix="nnx-plot-") as tmp:
                path = Path(tmp) / Path(artifact).name
                if what == "curves":
                    plots.learning_curves(trainer.history, path, title)
                elif what == "histograms":
                    plots.weight_histograms(network, path, f"{title} epoch {trainer.epoch}")
                elif what == "confusion":
                    x, y = (ds.x_test, ds.y_test) if ds.x_test is not None else (
                        ds.x_train, ds.y_train)
                    predicted = labels_from_outputs(network.predict(x), threshold)
                    split = "test" if ds.x_test is not None else "train"
                    plots.confusion_matrix(labels_from_targets(y), predicted, path,
                                           f"{title} ({split})", ds.n_classes)
                elif what == "boundary":
                    x = ds.x_train if ds.x_test is None else np.vstack([ds.x_train, ds.x_test])
                    y = ds.y_train if ds.y_test is None else np.concatenate(
                        [labels_from_targets(ds.y_train), labels_from_targets(ds.y_test)])
                    plots.decision_boundary(network, x, labels_from_targets(y), path, threshold,
                                            f"{title}: decision boundary")
                self.client.log_artifact(self._run(), str(path), str(Path(artifact).parent))
        except Exception as error:  # noqa: BLE001 - a picture must not fail a trained run
            message = f"plot {artifact} failed: {type(error).__name__}: {error}"
            self._warnings.append(message)
            print(f"nnx: warning: {message}", file=sys.stderr)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Flush, log the objective, the checkpoint and any error, then set the final status.

        Every step is attempted even when an earlier one fails: the status is always set.
        """
        if self.run_id is None or self._finished:
            return
        self._finished = True
        problems = []

        def attempt(step, *args):
            try:
                step(*args)
            except Exception as exc:  # noqa: BLE001 - keep going: the status must be set
                problems.append(f"{getattr(step, '__name__', step)}: {type(exc).__name__}: {exc}")

        attempt(self.flush, True)
        objective = str(self.config.get("objective", "val_loss"))
        if status == "FINISHED" and objective in self.latest:
            step = self.trainer.epoch if self.trainer is not None else 0
            attempt(self._log_now, {"objective": self.latest[objective]}, step)
        attempt(self._log_checkpoint)
        attempt(self._log_job_logs)
        if error is not None or status != "FINISHED":
            attempt(self._log_error, status, error)
        if self._warnings:
            attempt(self.set_tags, {"nnx.warnings": "\n".join(self._warnings)})
        try:
            self.client.set_terminated(self.run_id, status=status, end_time=_now_ms())
        except Exception as exc:
            message = (f"nnx: could not mark MLflow run {self.run_id} as {status} in {self.uri}: "
                       f"{type(exc).__name__}: {exc}")
            if status == "FINISHED":
                raise TrackingError(message) from exc
            print(message, file=sys.stderr)
        for problem in problems:
            print(f"nnx: warning: tracking at finish: {problem}", file=sys.stderr)

    # -- helpers ----------------------------------------------------------------------
    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker: call start() before logging")
        return self.run_id

    def _log_now(self, metrics: dict, step: int) -> None:
        self.log_metrics(metrics, step)
        self.flush(wait=True)

    def _log_checkpoint(self) -> None:
        """The trainer's last checkpoint as ``checkpoints/last.npz`` (for resume=<run id>)."""
        trainer = self.trainer
        if trainer is None or not trainer.config.checkpoint_dir:
            return
        path = Path(trainer.checkpoint_path)
        if path.is_file():
            self.client.log_artifact(self._run(), str(path), "checkpoints")

    def _log_job_logs(self) -> None:
        output = hydra_job().get("output_dir")
        if output is not None and output.is_dir():
            for log in sorted(output.glob("*.log")):
                self.client.log_artifact(self._run(), str(log), "logs")

    def _log_error(self, status: str, error: str | None) -> None:
        exc = sys.exc_info()[1]  # finish() runs in train()'s finally: the exception is current
        if isinstance(exc, KeyboardInterrupt) and str(exc) and error in (None, "interrupted"):
            error = str(exc)  # e.g. "stopped by SIGTERM after epoch 12; checkpoint ..."
        message = error or status.lower()
        self.set_tags({"error": message})
        text = f"status: {status}\nerror: {message}\n"
        if exc is not None:
            text += "\n" + "".join(traceback.format_exception(exc))
        with tempfile.TemporaryDirectory(prefix="nnx-mlflow-") as tmp:
            path = Path(tmp) / "error.txt"
            path.write_text(text)
            self.client.log_artifact(self._run(), str(path))

    @contextlib.contextmanager
    def _fluent_run(self):
        """This run as mlflow's active run, which ``mlflow.pyfunc.log_model`` logs into."""
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            yield
            return
        # Leaving the block ends the run as FINISHED; finish() sets the true status after
        # (and prints the run's URL for a server, once: not here as well).
        quiet = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
        before = os.environ.get(quiet)
        os.environ[quiet] = "true"
        try:
            with mlflow.start_run(run_id=self.run_id, nested=active is not None):
                yield
        finally:
            if before is None:
                os.environ.pop(quiet, None)
            else:
                os.environ[quiet] = before


def _now_ms() -> int:
    return int(time.time() * 1000)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- resume from a run -------------------------------------------------------------------
def download_checkpoint(run_id: str, cfg: dict) -> Path:
    """The ``checkpoints/last.npz`` artifact of MLflow run ``run_id`` (for trainer.resume),
    downloaded from the store ``cfg.tracking`` names, beside this run's checkpoints."""
    tracking = dict(cfg.get("tracking") or {})
    uri = resolve_uri(tracking.get("uri"))
    client = open_store(uri, float(tracking.get("timeout") or SETTINGS["timeout"]))
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as error:
        raise FileNotFoundError(f"trainer.resume: there is no MLflow run {run_id} in {uri} "
                                f"({_first_line(error)})") from error
    checkpoint_dir = (cfg.get("trainer") or {}).get("checkpoint_dir")
    if checkpoint_dir:
        dest = Path(checkpoint_dir).parent / "resume" / run_id
        dest.mkdir(parents=True, exist_ok=True)
    else:
        dest = Path(tempfile.mkdtemp(prefix=f"nnx-resume-{run_id[:8]}-"))
    try:
        path = client.download_artifacts(run_id, "checkpoints/last.npz", str(dest))
    except (MlflowException, OSError) as error:
        raise FileNotFoundError(
            f"trainer.resume: MLflow run {run_id} in {uri} has no checkpoints/last.npz artifact "
            "(runs log it when they write checkpoints: trainer.checkpoint_dir, set by "
            f"python -m nnx.run) ({_first_line(error)})") from error
    return Path(path)


# -- sweeps (called by nnx.sweep_callback in the launching process) ---------------------
def start_sweep(tracking: dict, name: str, info: dict) -> dict[str, str]:
    """Create the store, the experiment and the sweep's parent run, before any job starts.

    ``info``: sweep_dir, sweeper, launcher, objective, direction, overrides (list of str),
    search_space (dict). Returns the environment the jobs need to log under the parent.
    """
    settings = check_settings(dict(tracking))
    uri = resolve_uri(settings["uri"])
    client = open_store(uri, float(settings["timeout"]))
    exp_id = experiment_id(client, str(settings["experiment"] or name), uri)
    from nnx import __version__

    tags = {"mlflow.user": _user(), "mlflow.source.type": "LOCAL", "mlflow.source.name": "nnx.run",
            "nnx.sweep": "true", "nnx.version": __version__,
            "nnx.objective": str(info.get("objective", "val_loss")),
            "nnx.direction": str(info.get("direction", "")),
            "nnx.sweeper": str(info.get("sweeper", "")),
            "nnx.launcher": str(info.get("launcher", "")),
            "nnx.sweep_dir": str(info.get("sweep_dir", "")),
            "nnx.overrides": json.dumps(list(info.get("overrides", [])))}
    git = git_state()
    if git is not None:
        tags["nnx.git_commit"] = tags["mlflow.source.git.commit"] = git[0]
    run_name = f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}"
    run = client.create_run(exp_id, start_time=_now_ms(), run_name=run_name,
                            tags={k: _clip(v, MAX_TAG_VALUE) for k, v in tags.items()})
    from mlflow.entities import Param

    space = {f"sweep.{k}": _clip(str(v), MAX_PARAM_VALUE)
             for k, v in (info.get("search_space") or {}).items()}
    items = [Param(_clip(k, MAX_KEY), v) for k, v in space.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
    return {ENV_SWEEP_URI: uri, ENV_EXPERIMENT_ID: exp_id, ENV_PARENT_RUN_ID: run.info.run_id}


def sweep_children(client, experiment: str, parent_run_id: str) -> list:
    """Every run whose parent is ``parent_run_id``, oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"],
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def end_sweep(env: dict[str, str], direction: str | None = None, results: dict | None = None,
              status: str | None = None, error: str | None = None) -> None:
    """Close a sweep's parent run: children counted, best value and params recorded.

    ``results``: the Optuna sweeper's ``optimization_results.yaml`` (best_params, best_value),
    when there is one. ``status``: None = FINISHED if every child finished, else FAILED.
    Children still RUNNING (their process was killed) are closed as KILLED.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env[ENV_SWEEP_URI])
    parent = env[ENV_PARENT_RUN_ID]
    children = sweep_children(client, env[ENV_EXPERIMENT_ID], parent)
    orphans = [c for c in children if c.info.status in ("RUNNING", "SCHEDULED")]
    for child in orphans:
        client.set_tag(child.info.run_id, "error", "the sweep stopped while this job ran")
        client.set_terminated(child.info.run_id, "KILLED", end_time=_now_ms())
    if orphans:
        children = sweep_children(client, env[ENV_EXPERIMENT_ID], parent)
    counts: dict[str, int] = {}
    for child in children:
        counts[child.info.status] = counts.get(child.info.status, 0) + 1
    tags = [RunTag("nnx.children", str(len(children)))]
    tags += [RunTag(f"nnx.children.{s.lower()}", str(n)) for s, n in sorted(counts.items())]
    params, metrics = [], []
    direction = direction or client.get_run(parent).data.tags.get("nnx.direction") or "minimize"
    scored = [c for c in children if c.info.status == "FINISHED"
              and math.isfinite(c.data.metrics.get("objective", math.nan))
              and c.data.tags.get("nnx.trial_state") != "pruned"]  # stopped early: not a result
    if scored:
        pick = max if direction.startswith("max") else min
        best = pick(scored, key=lambda c: c.data.metrics["objective"])
        metrics.append(Metric("best_objective", best.data.metrics["objective"], _now_ms(), 0))
        tags += [RunTag("nnx.best_run_id", best.info.run_id),
                 RunTag("nnx.best_run_name", best.info.run_name or "")]
        swept = {k[len("sweep."):] for k in client.get_run(parent).data.params
                 if k.startswith("sweep.")}
        best_params = {}
        for override in json.loads(best.data.tags.get("nnx.overrides", "[]")):
            if override_key(override) in swept:
                best_params[override_key(override)] = override.partition("=")[2]
        if results and results.get("best_params"):
            best_params = {str(k): v for k, v in results["best_params"].items()}
        params += [Param(_clip(f"best.{k}", MAX_KEY), _clip(param_text(v), MAX_PARAM_VALUE))
                   for k, v in best_params.items()]
    if results and results.get("best_value") is not None:
        metrics.append(Metric("optuna_best_value", float(results["best_value"]), _now_ms(), 0))
    if status is None:
        status = "FINISHED" if children and counts.get("FINISHED", 0) == len(children) else "FAILED"
        if status == "FAILED":
            error = error or (f"{len(children) - counts.get('FINISHED', 0)} of {len(children)} "
                              "jobs did not finish" if children else "no job logged a run")
    if error:
        tags.append(RunTag("error", _clip(error, MAX_TAG_VALUE)))
    existing = client.get_run(parent).data.params
    params = [p for p in params if p.key not in existing]
    client.log_batch(parent, metrics=metrics, params=params[:MAX_PARAMS_PER_BATCH], tags=tags)
    client.set_terminated(parent, status=status, end_time=_now_ms())
