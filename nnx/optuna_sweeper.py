"""nnx's Optuna sweeper for Hydra: stored, shared, resumable studies with pruning (Optuna >= 4).

    python -m nnx.run -m experiment=spirals hparams_search=optuna hydra.sweeper.n_trials=8 \\
        hydra.sweeper.pruner=median

One sweep, in the launching process:

    study = load or create `study_name` in `storage`    # a journal file beside the MLflow store
    fail the study's stale RUNNING trials                # their sweep died: no heartbeat lately
    while trials are left:
        batch = [study.ask() + suggest each key of `params`, n_jobs of them]
        launch the batch (any Hydra launcher); each job finds its trial through hydra.job.env_set
        tell each trial: PRUNED (the job stopped it), COMPLETE (the job's objective) or FAIL
    write optimization_results.yaml (the sweep callback prints the epilogue from it)

A job opens the study again from the storage URL (``nnx.pruning``): the basic launcher runs it
in this process, joblib in a worker, submitit or Ray on another machine, all the same way. The
search space keeps hydra-optuna-sweeper's syntax (``nnx.optuna_space``). Hydra instantiates
the class from ``hydra_plugins/nnx_optuna_sweeper`` (it accepts plugins from there only).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper

from nnx.metrics import direction as metric_direction
from nnx.optuna_space import (
    SPACE_SYNTAX,
    SweepError,
    grid_of,
    override_text,
    parse_space,
    quoted,
    suggest,
)
from nnx.pruning import (
    ATTR_PRUNED_EPOCH,
    ATTR_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    ENV_TRIAL_ID,
)

log = logging.getLogger("nnx")

# Trial system attributes (Optuna's own place for bookkeeping, not shown as params).
ATTR_HEARTBEAT = "nnx:heartbeat"  # time.time() of the sweep's last sign of life
ATTR_FAIL_REASON = "fail_reason"  # a user attribute: shown with the trial everywhere

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler",
            "cmaes": "CmaEsSampler"}
# name -> (optuna.pruners class, defaults for the arguments it requires)
PRUNERS = {"none": ("NopPruner", {}), "median": ("MedianPruner", {}),
           "percentile": ("PercentilePruner", {"percentile": 25.0}),
           "successive_halving": ("SuccessiveHalvingPruner", {}),
           "hyperband": ("HyperbandPruner", {})}
STORAGE_SYNTAX = ("journal:///<file> (or a plain file path), sqlite:///<file>, "
                  "postgresql://..., mysql://..., grpc://<host>:<port>")
INTERRUPTED = (130, 143)  # nnx.run's exit codes for SIGINT and SIGTERM


# -- settings ----------------------------------------------------------------------------
def spec(value, key: str, table: dict) -> tuple[str, dict]:
    """(name, keyword arguments) from ``name`` or ``{name: ..., **arguments}``."""
    if value is None:
        value = "none"
    if isinstance(value, str):
        name, args = value, {}
    elif isinstance(value, dict) and "name" in value:
        args = {k: v for k, v in value.items() if k != "name"}
        name = value["name"]
    else:
        raise SweepError(f"{key}: expected a name or {{name: ..., <arguments>}}, got {value!r}; "
                         f"valid names: {', '.join(table)}")
    name = str(name).lower().replace("-", "_")
    if name not in table:
        hint = difflib.get_close_matches(name, table, n=1)
        raise SweepError(f"{key}: unknown {key.rsplit('.', 1)[-1]} {name!r}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; valid: {', '.join(table)}")
    return name, args


def build(cls, args: dict, key: str):
    """``cls(**args)``, with an unknown argument or a bad value named with its key."""
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "kwargs")]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise SweepError(f"{key}.{unknown[0]}: {cls.__name__} takes no argument {unknown[0]!r}; "
                         f"valid: {', '.join(accepted) or 'none'}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as error:
        given = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise SweepError(f"{key}: {cls.__name__}({given}): {error}") from error


def make_pruner(value, key: str = "hydra.sweeper.pruner"):
    """An Optuna pruner from ``none``/``median``/... or ``{name: median, n_warmup_steps: 5}``."""
    import optuna

    name, args = spec(value, key, PRUNERS)
    cls, defaults = PRUNERS[name]
    return build(getattr(optuna.pruners, cls), {**defaults, **args}, key)


def open_storage(url: str, key: str = "hydra.sweeper.storage"):
    """An Optuna storage from a URL: a journal file, any SQLAlchemy URL, or a gRPC proxy.

    Fails with the URL and the valid forms when it cannot be opened (a missing folder, an
    unknown scheme, a server that does not answer)."""
    import optuna

    try:
        if url.startswith("journal://") or "://" not in url:
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal://"))
            if not path.parent.is_dir():
                raise FileNotFoundError(f"no folder {path.parent}")
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("grpc://"):
            host, _, port = url[len("grpc://"):].rstrip("/").rpartition(":")
            return optuna.storages.GrpcStorageProxy(host=host or "localhost", port=int(port))
        # Several processes write one sqlite file: wait for its lock instead of failing.
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        from nnx.store import sqlite_path, store_lock

        # Two sweeps creating a fresh sqlite file at once race in its schema migration
        # (a UNIQUE constraint on alembic_version): the first creates it, the second waits.
        # (The lock would make a missing folder; then sqlite's own error says what is wrong.)
        path = sqlite_path(url)
        lock = store_lock(url) if path and path.parent.is_dir() else contextlib.nullcontext()
        with lock:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as error:
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(f"{key}: cannot open {url!r}: {cause}; valid: {STORAGE_SYNTAX}") \
            from error


def default_storage(config) -> str:
    """``optuna.journal`` beside the sqlite MLflow store (whatever ``tracking`` is), else where
    the default store would be: a rerun finds its study again with no setting."""
    from nnx.locations import default_store
    from nnx.store import resolve_uri, sqlite_path

    tracking = config.get("tracking") or {}
    db = sqlite_path(resolve_uri(tracking.get("uri"))) or default_store()
    return f"journal://{Path(db).absolute().parent / 'optuna.journal'}"


def make_sampler(value, distributions: dict, key: str = "hydra.sweeper.sampler",
                 done: int = 0):
    """An Optuna sampler from ``{name: tpe, seed: 0, ...}`` (or a name); grid gets its points.

    ``done``: trials already in the study, added to the seed, so that a rerun does not draw
    its first trials again (a sampler draws the same sequence from the same seed); not for
    grid, whose seed must stay the same.
    """
    import optuna

    if isinstance(value, optuna.samplers.BaseSampler):  # a config that instantiated one itself
        return value
    name, args = spec(value if value is not None else "tpe", key, SAMPLERS)
    cls = getattr(optuna.samplers, SAMPLERS[name])
    if name == "grid":
        # The seed shuffles the grid, and a trial stores its point's index in it: every sweep
        # of the study (a rerun, another machine) must shuffle it the same way.
        args = {"search_space": grid_of(distributions), **args,
                "seed": args.get("seed") if args.get("seed") is not None else 0}
    elif args.get("seed") is not None:
        args["seed"] = int(args["seed"]) + done
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as error:
            raise SweepError(f"{key}: cmaes needs the cmaes package: pip install cmaes") from error
    return build(cls, args, key)


# -- the study ---------------------------------------------------------------------------
def fail_stale_trials(study, storage, grace_period: float) -> list[int]:
    """Fail RUNNING trials whose sweep has been silent for ``grace_period`` seconds (it was
    killed or lost its machine), with the reason; returns their numbers. A trial of a sweep
    still running (another process, another machine) keeps beating and is left alone."""
    import optuna

    now, stale = time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = trial.system_attrs.get(ATTR_HEARTBEAT)
        last = float(beat) if beat is not None else trial.datetime_start.timestamp()
        if now - last < grace_period:
            continue
        reason = (f"stale: its sweep stopped (no heartbeat for {now - last:.0f} s, grace period "
                  f"{grace_period:g} s); failed when the study was next opened")
        storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, reason)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        stale.append(trial.number)
    return stale


class Heartbeat:
    """Marks a batch's trials alive every ``interval`` seconds while the launcher runs them."""

    def __init__(self, storage, trial_ids: list[int], interval: float) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nnx-heartbeat")

    def beat(self) -> None:
        now = time.time()
        for trial_id in self.trial_ids:
            # A trial finished meanwhile, or a busy storage: the next beat will do.
            with contextlib.suppress(Exception):
                self.storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna`` (``conf/hydra/sweeper/optuna.yaml`` lists every setting)."""

    def __init__(self, sampler=None, direction: str | None = None, storage: str | None = None,
                 study_name: str | None = None, n_trials: int = 20, n_jobs: int = 1,
                 max_failure_rate: float = 0.0, pruner: Any = "none",
                 heartbeat_interval: float = 10.0, grace_period: float = 60.0,
                 params: dict | None = None) -> None:
        from omegaconf import DictConfig, OmegaConf

        def plain(value):
            return OmegaConf.to_container(value, resolve=True) \
                if isinstance(value, DictConfig) else value

        self.sampler_spec, self.pruner_spec = plain(sampler), plain(pruner)
        self.direction, self.storage_url, self.study_name = direction, storage, study_name
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.max_failure_rate = max_failure_rate
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.params = plain(params) or {}
        self.config = self.launcher = self.hydra_context = None
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context, self.job_idx = config, hydra_context, 0
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    # -- before any trial: every setting checked ------------------------------------------
    def check(self, arguments: list[str]) -> dict:
        """Every setting checked and built; returns what the sweep needs."""
        for key, value, low in (("n_trials", self.n_trials, 1), ("n_jobs", self.n_jobs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SweepError(f"hydra.sweeper.{key}: expected an integer >= {low}, "
                                 f"got {value!r}")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise SweepError("hydra.sweeper.max_failure_rate: expected a fraction in [0, 1], "
                             f"got {self.max_failure_rate!r}")
        for key in ("heartbeat_interval", "grace_period"):
            if not float(getattr(self, key)) > 0:
                raise SweepError(f"hydra.sweeper.{key}: expected seconds > 0, "
                                 f"got {getattr(self, key)!r}")
        objective = str(self.config.get("objective") or "val_loss")
        expected = metric_direction(objective)
        direction = str(self.direction or expected).lower()
        if direction not in ("minimize", "maximize"):
            raise SweepError(f"hydra.sweeper.direction: expected minimize, maximize or null "
                             f"(follow the objective), got {self.direction!r}")
        if direction != expected:
            raise SweepError(f"hydra.sweeper.direction: {direction} contradicts objective "
                             f"{objective!r}, which is {expected}d; set hydra.sweeper.direction="
                             f"{expected} or null (it follows the objective)")
        pruner_name, _ = spec(self.pruner_spec, "hydra.sweeper.pruner", PRUNERS)
        pruner = make_pruner(self.pruner_spec)
        if pruner_name != "none" and objective.startswith("test_"):
            raise SweepError(f"hydra.sweeper.pruner: {pruner_name} prunes on the objective "
                             f"every epoch, but {objective!r} is measured once, after training; "
                             "pick a val_ objective or hydra.sweeper.pruner=none")
        distributions, fixed, literal = parse_space(self.params, arguments, self.config)
        if not distributions:
            raise SweepError("hydra.sweeper.params: the search space is empty; give each key "
                             f"to search one of: {SPACE_SYNTAX}")
        sampler = make_sampler(self.sampler_spec, distributions)
        name = self.study_name or (self.config.get("tracking") or {}).get("experiment") \
            or self.config.get("name") or "default"
        url = str(self.storage_url or default_storage(self.config))
        return {"objective": objective, "direction": direction, "pruner": pruner,
                "pruner_spec": self.pruner_spec if self.pruner_spec is not None else "none",
                "distributions": distributions, "fixed": fixed, "literal": literal,
                "sampler": sampler, "study_name": str(name), "storage_url": url}

    def open_study(self, plan: dict):
        """Load or create the study; a stored study's direction must match."""
        import optuna

        storage = open_storage(plan["storage_url"])
        name = plan["study_name"]
        try:
            stored = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            stored = None
        if stored is not None and stored.direction.name.lower() != plan["direction"]:
            raise SweepError(
                f"hydra.sweeper.direction: study {name!r} in {plan['storage_url']} is stored "
                f"with direction {stored.direction.name.lower()}, but objective "
                f"{plan['objective']!r} is {plan['direction']}d; name another study "
                "(hydra.sweeper.study_name=...) or storage")
        if stored is not None:
            check_compatible(stored, plan)
            plan["sampler"] = make_sampler(self.sampler_spec, plan["distributions"],
                                           done=len(stored.get_trials(deepcopy=False)))
        # load_if_exists: a second sweep starting at the same moment joins the first's study.
        study = optuna.create_study(study_name=name, storage=storage, sampler=plan["sampler"],
                                    pruner=plan["pruner"], direction=plan["direction"],
                                    load_if_exists=True)
        return study, storage

    # -- the sweep -----------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            plan = self.check(arguments)
            study, storage = self.open_study(plan)
        except SweepError as error:
            stop_before_any_trial(error)
        stale = fail_stale_trials(study, storage, float(self.grace_period))
        if stale:
            log.warning("failed %d stale RUNNING trial(s) of an interrupted sweep: %s",
                        len(stale), ", ".join(map(str, stale)))
        n_trials = self.n_trials
        if isinstance(plan["sampler"], optuna.samplers.GridSampler):
            n_trials = min(n_trials, grid_left(study, plan["distributions"]))
            if n_trials == 0:
                log.info("the grid of study %r is complete: no trial to run", plan["study_name"])
        log.info("study %r in %s: %s, sampler %s, pruner %s, %d trial(s), %d at a time",
                 plan["study_name"], plan["storage_url"], plan["direction"],
                 type(plan["sampler"]).__name__, type(plan["pruner"]).__name__, n_trials,
                 self.n_jobs)
        from nnx import optuna_mlflow

        optuna_mlflow.tag_parent(plan["study_name"], plan["storage_url"], plan["sampler"],
                                 plan["pruner"])
        ran: list[int] = []
        left = n_trials
        while left > 0:
            batch = self.ask(study, storage, plan, min(left, self.n_jobs))
            ran += [t.number for t in batch]
            try:
                returns = self.launch(study, storage, plan, batch)
            except SystemExit as stop:
                if stop.code not in INTERRUPTED:  # a failed batch: say what the sweep did
                    self.finish(study, plan, ran)
                raise
            failures = self.tell(study, storage, batch, returns)
            left -= len(batch)
            if failures and len(failures) / len(batch) > float(self.max_failure_rate):
                log.error("%d of %d trial(s) of the batch failed (max_failure_rate=%g): "
                          "stopping the sweep", len(failures), len(batch), self.max_failure_rate)
                self.finish(study, plan, ran)
                raise failures[0]
        self.finish(study, plan, ran)

    def ask(self, study, storage, plan: dict, size: int) -> list:
        """``size`` new trials with their parameters, marked alive, carrying the pruner."""
        from optuna.trial import TrialState

        batch = []
        for _ in range(size):
            trial = study.ask()
            try:
                for key, dist in plan["distributions"].items():
                    suggest(trial, key, dist)
            except BaseException as error:  # a trial made is never left RUNNING
                storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON,
                                            f"sampling failed: {type(error).__name__}: {error}")
                study.tell(trial, state=TrialState.FAIL)
                raise
            storage.set_trial_system_attr(trial._trial_id, ATTR_PRUNER,
                                          json.loads(json.dumps(plan["pruner_spec"])))
            for key, text in plan["fixed"].items():
                trial.set_user_attr(key, text)
            batch.append(trial)
        return batch

    def job_overrides(self, trial, plan: dict) -> tuple[str, ...]:
        """The trial's parameters as overrides, and where the job finds its trial."""
        overrides = [override_text(k, v, plan["literal"]) for k, v in trial.params.items()]
        overrides += [f"{k}={v}" for k, v in plan["fixed"].items()]
        where = {ENV_STORAGE: plan["storage_url"], ENV_STUDY: plan["study_name"],
                 ENV_TRIAL: str(trial.number), ENV_TRIAL_ID: str(trial._trial_id)}
        overrides += [f"++hydra.job.env_set.{k}={quoted(v)}" for k, v in where.items()]
        return tuple(overrides)

    def launch(self, study, storage, plan: dict, batch: list) -> list:
        """Run the batch on the launcher; its trials are failed if the sweep stops meanwhile."""
        import optuna

        overrides = [self.job_overrides(t, plan) for t in batch]
        try:
            with Heartbeat(storage, [t._trial_id for t in batch], float(self.heartbeat_interval)):
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        except BaseException as stop:
            # The basic launcher runs jobs here: nnx.run's Ctrl-C and error exits arrive as
            # SystemExit. Ctrl-C and SIGTERM end the sweep; any other exit fails the trial.
            code = getattr(stop, "code", None)
            interrupted = not isinstance(stop, SystemExit) or code in INTERRUPTED
            if isinstance(stop, SystemExit):
                reason = (f"the sweep was interrupted (exit status {code})" if interrupted
                          else f"the job exited with status {code}" if len(batch) == 1 else
                          f"a job of its batch exited with status {code} (the launcher "
                          "reports one failure for the whole batch)")
            else:
                reason = f"the sweep stopped: {type(stop).__name__}: {stop}".rstrip(": ")
            for trial in batch:
                if storage.get_trial(trial._trial_id).state.is_finished():
                    continue
                storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, reason)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if interrupted or len(batch) > 1:
                raise
            returns = [stop]
        self.job_idx += len(batch)
        return returns

    def tell(self, study, storage, batch: list, returns: list) -> list[BaseException]:
        """Each trial's state from its job: PRUNED, COMPLETE with its objective, or FAIL."""
        from optuna.trial import TrialState

        failures = []
        for trial, ret in zip(batch, returns):
            stored = storage.get_trial(trial._trial_id)
            if stored.state.is_finished():  # failed above, when its job exited
                failures.append(ret)
                continue
            try:
                value = float(ret.return_value)  # raises the job's exception if it failed
                if not math.isfinite(value):
                    raise ValueError(f"the objective is {value}")
            except Exception as error:  # noqa: BLE001 - a failed job is a failed trial
                storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON,
                                            f"{type(error).__name__}: {error}"[:1000])
                study.tell(trial, state=TrialState.FAIL)
                failures.append(error)
                continue
            pruned = stored.system_attrs.get(ATTR_PRUNED_EPOCH)
            state = TrialState.PRUNED if pruned is not None else TrialState.COMPLETE
            try:
                study.tell(trial, value if state is TrialState.COMPLETE else None, state=state)
            except RuntimeError as error:  # the grid sampler stops a study it sees complete
                if "Study.stop" not in str(error):
                    raise
        return failures

    def finish(self, study, plan: dict, ran: list[int]) -> None:
        """The epilogue, optimization_results.yaml, and the sweep's MLflow summary."""
        from omegaconf import OmegaConf

        summary = epilogue(study, plan, ran)
        # The sweep's epilogue (nnx.sweep_callback, after this) prints these lines above its
        # ranked table: one epilogue for every sweeper.
        results = {"name": "optuna", "study_name": plan["study_name"],
                   "storage": plan["storage_url"], "trials": ran, "counts": summary["counts"],
                   "summary": summary["lines"]}
        if summary["best"] is not None:
            best = summary["best"]
            results.update({"best_trial": best.number, "best_value": best.value,
                            "best_params": dict(best.params)})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        from nnx import optuna_mlflow

        optuna_mlflow.summarise(study, ran, sweep_dir)


def check_compatible(study, plan: dict) -> None:
    """A stored study's keys keep their kind of values and their choices (Optuna refuses a
    trial otherwise, after creating it): a changed search space fails here, before any trial."""
    from optuna.distributions import CategoricalDistribution, check_distribution_compatibility

    stored = {}
    for trial in study.get_trials(deepcopy=False):
        for key, dist in trial.distributions.items():
            stored.setdefault(key, dist)
    for key, dist in plan["distributions"].items():
        if key not in stored:
            continue
        try:
            check_distribution_compatibility(stored[key], dist)
        except ValueError as error:
            was = (f"choice{tuple(stored[key].choices)}"
                   if isinstance(stored[key], CategoricalDistribution) else repr(stored[key]))
            raise SweepError(
                f"hydra.sweeper.params.{key}: study {plan['study_name']!r} in "
                f"{plan['storage_url']} searched it as {was} ({error}); keep that, or start "
                "another study: hydra.sweeper.study_name=<new name>") from error


def grid_left(study, distributions: dict) -> int:
    """Grid points not yet taken by a finished or running trial of the study."""
    import optuna

    total = math.prod(len(v) for v in grid_of(distributions).values())
    taken = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)
             if t.state != optuna.trial.TrialState.FAIL}
    return max(0, total - len(taken - {None}))


def epilogue(study, plan: dict, ran: list[int]) -> dict:
    """What the sweep did (its trials counted by state) and the study's best trial."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    counts = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    for number in ran:
        state = trials[number].state.name.lower()
        counts[state] = counts.get(state, 0) + 1
    span = f"trials {ran[0]}-{ran[-1]}" if len(ran) > 1 else \
        (f"trial {ran[0]}" if ran else "no trial")
    lines = [(f"study {plan['study_name']!r}: {span} in this sweep: {counts['complete']} "
              f"complete, {counts['pruned']} pruned, {counts['fail']} failed ({len(trials)} in "
              "the study)")]
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        best = None
    if best is not None and best.number not in ran:  # this sweep's best is in the epilogue
        lines.append(f"best trial of the study (an earlier sweep's): {best.number}: "
                     f"{plan['objective']} {best.value:.6g}, params {best.params}")
    return {"lines": lines, "counts": counts, "best": best}


def stop_before_any_trial(error: SweepError) -> None:
    """One line and exit status 2, as nnx.run does for any bad setting. A sweep's MLflow parent
    run (opened just before the sweeper starts) is removed: no sweep ever ran."""
    from nnx import optuna_mlflow

    optuna_mlflow.discard_parent(str(error))
    print(f"nnx: error: {error}", file=sys.stderr)
    sys.exit(2)
