"""The MLflow tracker: every run's config, tags, metrics, weights, plots and model in MLflow.

    tracker = MlflowTracker.from_config(cfg)   # opens (or creates) the store, checks a server
    tracker.start(cfg, trainer, dataset)       # the run: params, tags, config artifacts
    tracker.log_dataset(name, splits)          # the data, as the run's inputs (digests)
    tracker.log_metrics(logs, step=epoch)      # buffered; written with log_batch
    tracker.log_network(network)               # final weights, pyfunc model, plots
    tracker.finish("FINISHED" | "FAILED" | "KILLED", error)

Facts that shape it (see DESIGN.md): one ``log_metric`` costs milliseconds while ``log_batch``
costs ~0.1 ms per metric, so metrics are buffered and written by a background thread. The store
(``nnx.store``), what a run records (``nnx.run_metadata``), the settings
(``nnx.tracking_settings``), the pictures (``nnx.plots.RUN_PLOTS``) and a sweep's parent
run (``nnx.sweep_parent``) live in files of their own.

Metrics arrive under the names users write (``val_loss``) and are stored under their section
(``val/loss``, ``nnx.metrics.stored_key``), which MLflow's UI groups them by; what is measured
once per run (test metrics, the objective, total times) is logged once, at step 0. CPU and
memory go in as MLflow's ``system/...`` metrics (``tracking.system_metrics``). MLflow's own INFO
messages and artifact progress bars stay off the console unless ``tracking.verbose`` is true
(or ``MLFLOW_LOGGING_LEVEL=INFO`` is set).

``import nnx`` never imports this module; mlflow itself is imported on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from nnx import metrics as M
from nnx.metric_writer import HEARTBEAT_TAG, MetricWriter
from nnx.plots import RUN_PLOTS
from nnx.run_metadata import (
    MAX_KEY,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE,
    MAX_PARAMS_PER_BATCH,
    MAX_TAG_VALUE,
    clip,
    component_tags,
    config_params,
    config_yaml,
    flatten,
    git_state,
    now_ms,
    param_text,
    user_name,
)
from nnx.run_names import child_name, single_name
from nnx.shield import shielded
from nnx.spool import Spool
from nnx.store import (
    TrackingError,
    experiment_id,
    experiment_name,
    first_line,
    open_store,
    resolve_uri,
    short_error,
)
from nnx.sweep_parent import hydra_job, sweep_parent
from nnx.tracking import Tracker
from nnx.tracking_settings import SETTINGS, check_settings


def _finish_monitor(system) -> None:
    """Stop MLflow's system-metrics monitor; a run shorter than one sampling interval (or a
    monitor that stopped before its first write) still gets one sample, taken now."""
    first_step = system._logging_step
    system.finish()
    if system._logging_step == first_step == 0:
        with contextlib.suppress(Exception):  # best effort: a store that is down gets none
            system.collect_metrics()
            system.publish_metrics(system.aggregate_metrics())
            system.mlflow_logger.flush()


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
        self._checkpoint_uploaded: int | None = None  # mtime of the checkpoint last uploaded
        self.spool: Spool | None = None
        self._store_failed = self._checkpoint_warned = False
        self._warnings: list[str] = []
        self._system = None  # MLflow's system-metrics monitor, while the run is open

    @classmethod
    def from_config(cls, cfg: dict) -> MlflowTracker:
        """A tracker for the whole resolved config ``cfg`` (its ``tracking`` node picks the
        store and the experiment). Fails here, before training, when the store is unusable."""
        settings = check_settings(dict(cfg.get("tracking") or {}))
        uri = resolve_uri(settings["uri"])
        quiet_mlflow(settings["verbose"])  # before open_store imports mlflow
        client = open_store(uri, float(settings["timeout"]))
        sweep = sweep_parent(uri)
        if sweep is not None:
            exp_id, parent = sweep
        else:
            try:
                exp_id, parent = experiment_id(client, experiment_name(cfg), uri), None
            except Exception as error:
                raise TrackingError(f"cannot use MLflow experiment {experiment_name(cfg)!r} in "
                                    f"{uri}: {first_line(error)}") from error
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
        try:
            run = self.client.create_run(self.experiment_id, start_time=now_ms(), tags=tags,
                                         run_name=self.run_name(config, job))
        except Exception as error:  # a store's error as one paragraph, before any training
            raise TrackingError(
                f"cannot create a run in the MLflow store {self.uri} (experiment "
                f"{self.experiment_id}): {short_error(error)}. Nothing was trained: free the "
                "store's disk, pick another store (tracking.uri=...) or train without "
                "tracking (tracking=none)") from error
        self.run_id = run.info.run_id
        try:
            self._record_start(config, job)
        except Exception as error:  # the same, once the run exists
            raise TrackingError(
                f"recording the params and config of MLflow run {self.run_id} in {self.uri} "
                f"failed: {short_error(error)}. Nothing was trained") from error

    def _record_start(self, config: dict, job: dict) -> None:
        """The rest of ``start``: the writer thread, params, config and ``.hydra/``."""
        self.spool = Spool.for_run(self.run_folder(config, job), self.uri, self.run_id)
        self._writer = MetricWriter(self.client, self.run_id, spool=self.spool, uri=self.uri,
                                    retry_seconds=float(self.settings["retry_seconds"]),
                                    heartbeat_seconds=float(self.settings["heartbeat_seconds"]))
        self._writer.start()  # the heartbeat starts now
        if self.settings["system_metrics"]:
            self._start_system_metrics()
        self.log_params(config_params(config))
        with tempfile.TemporaryDirectory(prefix="nnx-mlflow-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(config_yaml(config))
            self.client.log_artifact(self.run_id, str(path))
        hydra_dir = job.get("output_dir", Path("/nonexistent")) / ".hydra"
        if hydra_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(hydra_dir), ".hydra")

    def _start_system_metrics(self) -> None:
        """MLflow's monitor of CPU, memory, disk and network, as ``system/...`` metrics of
        this run every ``system_metrics_seconds``; a run without psutil trains untracked by it."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._system = SystemMetricsMonitor(
                self.run_id, sampling_interval=float(self.settings["system_metrics_seconds"]),
                tracking_uri=self.uri, resume_logging=self._system is not None)
            self._system.start()
        except ImportError as error:  # psutil is a dependency; a broken install lacks it
            self._system = None
            message = f"no system metrics: {first_line(error)} (tracking.system_metrics=false)"
            self._warnings.append(message)
            print(f"nnx: warning: {message}", file=sys.stderr)

    def _stop_system_metrics(self) -> None:
        """Before the status is set: the monitor stops on its own once the run is not RUNNING,
        and its last samples would be lost. Its last write goes through MLflow's own client,
        whose retries take minutes on a dead server: given ``tracking.timeout`` at most."""
        system, self._system = self._system, None
        if system is None:
            return
        stopping = threading.Thread(target=_finish_monitor, args=(system,),
                                    name="nnx-system-metrics-stop", daemon=True)
        stopping.start()
        stopping.join(float(self.settings["timeout"]))

    @staticmethod
    def run_folder(config: dict, job: dict) -> Path:
        """Where the run's spool goes: Hydra's run folder, else the one above the checkpoints,
        else the current folder."""
        if "output_dir" in job:
            return Path(job["output_dir"])
        checkpoint_dir = (config.get("trainer") or {}).get("checkpoint_dir")
        return Path(checkpoint_dir).parent if checkpoint_dir else Path.cwd()

    def run_name(self, config: dict, job: dict) -> str | None:
        if self.settings["run_name"]:
            return str(self.settings["run_name"])
        if "job_num" in job and self.parent_run_id:
            number = os.environ.get("NNX_OPTUNA_TRIAL") or job["job_num"]  # a trial's number
            return clip(child_name(number, job.get("overrides", []), job.get("swept", [])),
                        MAX_KEY)
        return single_name(experiment_name(config))

    def run_tags(self, config: dict, trainer, dataset, job: dict) -> dict[str, str]:
        from nnx import __version__
        from nnx.experiment import validation_size
        from nnx.metrics import objective_source

        network = trainer.network if trainer is not None else None
        tags = {
            "mlflow.user": user_name(),
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": "nnx.run" if job else Path(sys.argv[0] or "python").name,
            "nnx.version": __version__,
            "nnx.objective": str(config.get("objective", "val_loss")),
            # which set the objective is measured on: val, or train (trainer.val_split=0)
            "nnx.objective_source": objective_source(str(config.get("objective", "val_loss"))),
            # Who runs it, and the heartbeat `python -m nnx.runs` tells a dead run by.
            "nnx.host": socket.gethostname(),
            "nnx.pid": str(os.getpid()),
            "nnx.heartbeat_seconds": str(self.settings["heartbeat_seconds"]),
            HEARTBEAT_TAG: str(now_ms()),
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
                         "nnx.dataset.n_validation": str(validation_size(config, dataset)),
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
        if getattr(trainer, "resume_changes", None):  # applied on resume: old -> new
            tags["nnx.resume_changes"] = json.dumps(trainer.resume_changes)
        return {k: clip(str(v), MAX_TAG_VALUE) for k, v in tags.items()}

    # -- the Tracker interface --------------------------------------------------------
    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        params = {clip(str(k), MAX_KEY): clip(param_text(v), MAX_PARAM_VALUE)
                  for k, v in flatten(dict(params)).items()}
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self._run(), params=items[i:i + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(clip(str(k), MAX_KEY), clip(str(v), MAX_TAG_VALUE))
                 for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self._run(), tags=items[i:i + MAX_PARAMS_PER_BATCH])

    def log_dataset(self, name: str, splits: dict) -> None:
        """Each split as an MLflow dataset input of the run (name, digest, shapes; the context
        tag says the split), which the runs table's Dataset column and the run page show. The
        digest hashes the arrays themselves (``data_digest``): no copy goes to the store."""
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        try:
            for context, (x, y) in ((c, xy) for c, xy in splits.items() if xy is not None):
                labels = self._labels(y)
                dataset = from_numpy(x, targets=labels, name=name,
                                     digest=data_digest(x, labels))
                inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                           [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
            self.client.log_inputs(self._run(), datasets=inputs)
        except Exception as error:  # noqa: BLE001 - a missing input must not fail the run
            message = f"logging the dataset inputs failed: {short_error(error)}"
            self._warnings.append(message)
            print(f"nnx: warning: {message}", file=sys.stderr)

    def _labels(self, y: np.ndarray) -> np.ndarray:
        """Class labels whatever the loss's encoding (one-hot, a 0/1 column), so the digest
        says which data, not which loss; regression targets as they are."""
        if self.dataset is not None and self.dataset.task == "classification":
            return M.labels_from_targets(y)
        return y

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer ``metrics`` at ``step`` (the epoch); written at least every ``flush_seconds``.
        Each is stored under ``nnx.metrics.stored_key`` of its name; what is measured once per
        run (``nnx.metrics.once_per_run``) at step 0.

        Also takes the periodic weight snapshots and histograms (``tracking.snapshot_every``,
        ``tracking.histograms_every``) when an interval has passed.
        """
        from mlflow.entities import Metric

        stamp = now_ms()
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue
            value = float(value)
            at = 0 if M.once_per_run(str(key)) else int(step)
            self._buffer.append(Metric(clip(M.stored_key(str(key)), MAX_KEY), value, stamp, at))
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
        from nnx.network_files import save_snapshot

        with tempfile.TemporaryDirectory(prefix="nnx-mlflow-") as tmp:
            name = "final.npz" if epoch is None else f"epoch_{epoch:05d}.npz"
            save_snapshot(network, Path(tmp) / name)
            with self._store_warning(f"uploading weights/{name}"):
                self.client.log_artifact(self._run(), str(Path(tmp) / name), "weights")
        if epoch is not None or self._store_failed:
            return  # the model and plots wait for no store: the checkpoint has the weights
        if self.settings["log_model"]:
            with self._store_warning("logging the model"):
                self.log_model(network)
        if self.settings["plots"]:
            self.log_plots(network)

    @contextlib.contextmanager
    def _store_warning(self, what: str):
        """A failed upload after training started is a warning, not a failed run: the
        trained network is in the run's checkpoint and folder."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._store_failed = True
            message = f"{what} to {self.uri} failed: {short_error(exc)}"
            self._warnings.append(message)
            print(f"nnx: warning: {message}", file=sys.stderr)

    def log_model(self, network, name: str = "model") -> str:
        """The network as an MLflow pyfunc model, loaded by ``nnx.mlflow_model`` (no pickle);
        returns its ``runs:/<run id>/<name>`` URI."""
        import mlflow
        from mlflow.models import infer_signature

        from nnx import __version__
        from nnx.network_files import requirements, save_network

        if self.dataset is not None:
            example = np.asarray(self.dataset.x_train[:5], dtype=network.dtype)
        else:
            example = np.zeros((1, *network.in_shape), dtype=network.dtype)
        signature = infer_signature(example, network.predict(example))
        with tempfile.TemporaryDirectory(prefix="nnx-model-") as tmp, self._fluent_run():
            data = save_network(network, Path(tmp) / "network")
            mlflow.pyfunc.log_model(
                name=name, loader_module="nnx.mlflow_model", data_path=str(data),
                signature=signature, input_example=example,
                # Given, not inferred: inference loads the model in a subprocess (seconds).
                pip_requirements=[f"nnx=={__version__}", f"numpy=={np.__version__}",
                                  *(f"{d}=={v}" for d, v in requirements(network.specs()).items())])
        return f"runs:/{self.run_id}/{name}"

    def log_plots(self, network) -> None:
        """The plots ``tracking.plots`` picks, of: learning curves, weight/gradient histograms,
        and for classification a confusion matrix (test set, else train) and, on 2-D data, the
        decision boundary."""
        for name in self.settings["plots"]:
            plot = RUN_PLOTS[name]
            if plot.applies(self.dataset):
                self._plot(name, plot.artifact)

    def _plot(self, what: str, artifact: str) -> None:
        """Draw one plot of ``RUN_PLOTS`` and log it as ``artifact``; a plot that fails is a
        warning, never a failed run."""
        title = str(self.config.get("name", ""))
        try:
            with tempfile.TemporaryDirectory(prefix="nnx-plot-") as tmp:
                path = Path(tmp) / Path(artifact).name
                RUN_PLOTS[what].draw(self.trainer, self.dataset, path, title)
                self.client.log_artifact(self._run(), str(path), str(Path(artifact).parent))
        except Exception as error:  # noqa: BLE001 - a picture must not fail a trained run
            message = f"plot {artifact} failed: {type(error).__name__}: {error}"
            self._warnings.append(message)
            print(f"nnx: warning: {message}", file=sys.stderr)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Flush, log the objective, the checkpoint and any error, then set the final status.

        Every step is attempted even when an earlier one fails: the status is always set, or
        spooled with the points the store did not take (``nnx.runs sync`` writes them later).
        A signal arriving meanwhile waits until the status is written (``nnx.shield``).
        """
        if self.run_id is None or self._finished:
            return
        self._finished = True
        self._finish(status, error)

    def _finish(self, status: str, error: str | None) -> None:
        problems = []

        def attempt(step, *args):
            try:
                step(*args)
            except Exception as exc:  # noqa: BLE001 - keep going: the status must be set
                problems.append(f"{getattr(step, '__name__', step).strip('_')}: "
                                f"{short_error(exc)}")

        lost = None
        objective = str(self.config.get("objective", "val_loss"))
        try:
            self.flush(True)
            if status == "FINISHED" and objective in self.latest:
                self._log_now({M.OBJECTIVE: self.latest[objective]}, 0)
        except TrackingError as exc:  # neither stored nor spooled
            lost = exc
        except KeyboardInterrupt:  # a second signal while the store is slow: stop waiting
            self._writer.abandon()
            print(f"nnx: stopped waiting for {self.uri}; the metric points not yet written are "
                  f"kept in {self.spool.path}", file=sys.stderr)
        # A signal from here on would leave the run RUNNING: it waits until the status is
        # written (every step below is bounded by MLflow's own few retries).
        with shielded(f"the final status ({status}) of MLflow run {self.run_id}"):
            self._close(status, error, problems, attempt, lost)

    def _close(self, status: str, error: str | None, problems: list, attempt, lost) -> None:
        """The end of ``finish``: checkpoint, logs, error, tags, status (or the spool)."""
        attempt(self._log_checkpoint)
        attempt(self._log_job_logs)
        tags = {}
        if error is not None or status != "FINISHED":
            attempt(self._log_error, status, error)
        if self._warnings:
            tags["nnx.warnings"] = "\n".join(self._warnings)
        spooled = self._writer.spooled
        if spooled:
            tags["nnx.spooled_points"] = str(spooled)
        store_down = unkept = None  # the store's error on the status; the spool's after it
        attempt(self._stop_system_metrics)
        self._writer.close()  # no heartbeat after the status
        try:
            if tags:
                self.set_tags(tags)
            self.client.set_terminated(self.run_id, status=status, end_time=now_ms())
        except Exception as exc:  # noqa: BLE001 - kept in the spool instead
            store_down = exc
            problems.append(f"setting the status {status}: {short_error(exc)}")
            try:
                self.spool.tags(tags)
                self.spool.status(status, now_ms())
            except OSError as spool_error:
                unkept = spool_error
        failure = self._writer.failure or (problems[-1].partition(": ")[2] if problems else "")
        failed = "; ".join(p.split(":")[0] for p in problems)
        if unkept is not None:  # the run cannot be recorded at all: an error, one paragraph
            kept = (f" The {spooled} metric points it could not write are kept there: once the "
                    f"store answers, python -m nnx.runs sync {self.spool.path.parent}."
                    if spooled else "")
            unrecorded = TrackingError(
                f"the MLflow store {self.uri} failed during this run ({failure}). Not written: "
                f"{failed}. MLflow run {self.run_id} could not be marked {status} there, nor "
                f"could that be kept in the spool {self.spool.path} ({short_error(unkept)}): it "
                f"stays RUNNING until `python -m nnx.runs reap` closes it.{kept}")
            lost = lost or unrecorded
            if lost is not unrecorded:
                print(f"nnx: error: {unrecorded}", file=sys.stderr)
        elif spooled or store_down is not None:  # one paragraph: the store, what, how to recover
            kept = " and ".join(([f"{spooled} metric points"] if spooled else [])
                                + (["the final status"] if store_down is not None else []))
            print(f"nnx: warning: the MLflow store {self.uri} failed during this run "
                  f"({failure}). " + (f"Not written: {failed}. " if failed else "")
                  + f"Kept in {self.spool.path}: {kept}. Once the store answers: "
                  f"python -m nnx.runs sync {self.spool.path.parent}", file=sys.stderr)
        else:
            for problem in problems:
                print(f"nnx: warning: tracking at finish: {problem}", file=sys.stderr)
        if lost is not None:
            if status == "FINISHED":
                raise lost  # the run trained, but its record is not all there, nor spooled
            # The run already fails with its own error (a full disk, a signal), which goes on
            # up and decides the exit code: this one must not take its place.
            print(f"nnx: error: {lost}", file=sys.stderr)
            return
        if (spooled or store_down is not None) and self.settings["strict"] \
                and status == "FINISHED":
            raise TrackingError(f"tracking.strict: MLflow run {self.run_id} in {self.uri} is "
                                f"incomplete ({spooled} metric points spooled"
                                f"{', status not set' if store_down is not None else ''}); the "
                                f"run itself trained to the end. Sync it: python -m nnx.runs sync "
                                f"{self.spool.path.parent}")

    def log_checkpoint(self, path: str | Path) -> None:
        """Upload a checkpoint as ``checkpoints/last.npz`` as soon as it is written, so that
        ``trainer.resume=<run id>`` works after a crash; a failed upload is a warning (the
        file is in the run's folder, and the next checkpoint tries again)."""
        try:
            stamp = Path(path).stat().st_mtime_ns
            # A kill -9 mid-upload must not leave a torn checkpoints/last.npz for resume to
            # read. What is uploaded is whole: checkpoint.save renamed it into place before
            # this call. Where it lands is published whole: MLflow (>= 3.17, our floor) writes
            # a local artifact to a hidden staging file in the destination folder and renames
            # it (a rename within one folder is atomic, so the previous last.npz stays until
            # the new one is complete, and the staging file a kill leaves is not listed); a
            # server and an object store publish an upload once its body is complete. Should a
            # store still hand back a damaged file, resume refuses it (download_checkpoint).
            self.client.log_artifact(self._run(), str(path), "checkpoints")
            self._checkpoint_uploaded = stamp
        except Exception as exc:  # noqa: BLE001 - a checkpoint upload must not stop training
            message = f"uploading checkpoint {path} to {self.uri} failed: {short_error(exc)}"
            if not self._checkpoint_warned:  # once: the store is down, not each checkpoint
                self._checkpoint_warned = True
                self._warnings.append(message)
                print(f"nnx: warning: {message} (later checkpoints try again)",
                      file=sys.stderr)

    # -- helpers ----------------------------------------------------------------------
    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker: call start() before logging")
        return self.run_id

    def _log_now(self, metrics: dict, step: int) -> None:
        self.log_metrics(metrics, step)
        self.flush(wait=True)

    def _log_checkpoint(self) -> None:
        """The trainer's last checkpoint as ``checkpoints/last.npz`` (for resume=<run id>),
        unless that very file was uploaded when it was written."""
        trainer = self.trainer
        if trainer is None or not trainer.config.checkpoint_dir:
            return
        path = Path(trainer.checkpoint_path)
        if path.is_file() and path.stat().st_mtime_ns != self._checkpoint_uploaded:
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
        # Leaving the block ends the run as FINISHED: it is set back to RUNNING at once (the
        # system-metrics monitor stops at a run that is not RUNNING, and so would the UI
        # claim); finish() sets the true status (and prints a server run's URL, once).
        quiet = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
        before = os.environ.get(quiet)
        os.environ[quiet] = "true"
        try:
            # No second system-metrics monitor: this run has its own (start).
            with mlflow.start_run(run_id=self.run_id, nested=active is not None,
                                  log_system_metrics=False):
                yield
            self.client.update_run(self.run_id, status="RUNNING")
            monitor = self._system
            if monitor is not None and not (monitor._process and monitor._process.is_alive()):
                # It looked while the run read FINISHED and stopped: its samples written, a new
                # one goes on from the next step (resume_logging).
                monitor.finish()
                self._start_system_metrics()
        finally:
            if before is None:
                os.environ.pop(quiet, None)
            else:
                os.environ[quiet] = before


def data_digest(x: np.ndarray, y: np.ndarray | None) -> str:
    """12 hex digits of SHA-256 over the arrays' bytes, shapes and dtypes: any changed value
    changes it. Hashed in place (a C-contiguous array is not copied); about 0.25 s for
    Fashion-MNIST's 188 MB of float32 training images here."""
    digest = hashlib.sha256()
    for array in (x, y):
        if array is None:
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:12]


# MLflow's own console output: INFO messages (model validation, system metrics), artifact
# progress bars. Off unless asked for; a value the user set in the environment is kept.
QUIET_MLFLOW = {"MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def quiet_mlflow(verbose: bool = False) -> None:
    """Keep MLflow's INFO chatter and progress bars off the console; ``verbose`` (the
    setting ``tracking.verbose``) lets them through. Call before mlflow is imported (it
    reads ``MLFLOW_LOGGING_LEVEL`` then); set again on the logger if it already is."""
    for key, value in QUIET_MLFLOW.items():
        if not verbose:
            os.environ.setdefault(key, value)
        elif os.environ.get(key) == value:
            del os.environ[key]
    if "mlflow" in sys.modules:
        level = os.environ.get("MLFLOW_LOGGING_LEVEL", "INFO").upper()
        logging.getLogger("mlflow").setLevel(level)
    # MLflow runs `git` for a run's source tags and warns when it fails: where git is missing,
    # and when a Ctrl-C to the process group reaches that git (a sweep stopped while a job
    # starts), which put a second line beside nnx's one-line stop.
    logging.getLogger("mlflow.utils.git_utils").setLevel(logging.NOTSET if verbose
                                                         else logging.ERROR)


# -- resume from a run -------------------------------------------------------------------
def download_checkpoint(run_id: str, cfg: dict) -> Path:
    """The ``checkpoints/last.npz`` artifact of MLflow run ``run_id`` (for trainer.resume),
    downloaded from the store ``cfg.tracking`` names, beside this run's checkpoints."""
    tracking = dict(cfg.get("tracking") or {})
    uri = resolve_uri(tracking.get("uri"))
    quiet_mlflow(bool(tracking.get("verbose")))  # no download progress bar
    client = open_store(uri, float(tracking.get("timeout") or SETTINGS["timeout"]))
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as error:
        raise FileNotFoundError(f"trainer.resume: there is no MLflow run {run_id} in {uri} "
                                f"({first_line(error)})") from error
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
            f"python -m nnx.run) ({first_line(error)})") from error
    from nnx.checkpoint import CheckpointError, read

    try:
        read(path)  # whole, and an nnx checkpoint: checked before anything trains from it
    except CheckpointError as error:
        raise CheckpointError(
            f"trainer.resume: the checkpoints/last.npz artifact of MLflow run {run_id} in {uri} "
            f"cannot be resumed from: {error}. Nothing was trained; resume from the run's "
            "folder instead (trainer.resume=<its run folder>) if its checkpoints/last.npz is "
            "whole") from error
    return Path(path)
