"""The MLflow store: which one (the tracking URI), opening it safely, and the experiment.

    uri = resolve_uri(cfg["tracking"]["uri"])   # always explicit: sqlite file, server, ...
    client = open_store(uri, timeout)            # a server is probed first; sqlite under a lock
    exp_id = experiment_id(client, experiment_name(cfg), uri)

Facts that shape it (see DESIGN.md): the tracking URI is always set explicitly (default: an
absolute ``sqlite:///`` path to ``mlflow.db`` in the working directory, or in the checkout's top
folder inside an nnx checkout: ``nnx.locations.default_store``); a fresh sqlite store must be
created by one process at a time (a file lock here, and a sweep's launching process creates the
store and the experiment before any job starts, see ``nnx.sweep_parent``); a dead server is
detected before training, in seconds, instead of after minutes of retries.

``import nnx`` never imports this module; mlflow itself is imported on first use.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import re
import sys
from pathlib import Path

# NNX_TRACKING_URI replaces the default store (handy for tests and CI).
ENV_URI = "NNX_TRACKING_URI"


class TrackingError(ConnectionError):
    """The tracking store cannot be reached or used; the message names the URI."""


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri`` if given, else $NNX_TRACKING_URI, else
    ``sqlite:///<working directory>/mlflow.db`` (inside an nnx checkout: its top folder's).
    Relative sqlite paths and bare ``*.db`` paths become absolute ``sqlite:///`` URIs, so every
    process of a sweep opens the same file."""
    from nnx.locations import default_store

    uri = uri or os.environ.get(ENV_URI) or f"sqlite:///{default_store()}"
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


def describe(uri: str) -> str:
    """Where a store is, for the line at the end of a run: the file, or the server."""
    path = sqlite_path(uri)
    if path is None:
        return uri
    return f"{path} (browse: mlflow ui --backend-store-uri {uri})"


# errno values that mean "this folder cannot be written", whoever asks.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def not_writable(path: Path, error: OSError) -> TrackingError:
    """The error for a sqlite store whose folder cannot be written: the path and what to do."""
    return TrackingError(
        f"cannot create the MLflow store {path}: {path.parent} is not writable "
        f"({error.strerror or error}). The default store is mlflow.db in the working directory: "
        "run from a writable folder, or pick the store with tracking.uri=sqlite:///"
        "<writable folder>/mlflow.db (or $NNX_TRACKING_URI), or train without tracking: "
        "tracking=none")


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

        quiet_store_errors()

        try:
            with store_lock(uri):
                # Constructing the client already creates and migrates a fresh sqlite store:
                # two processes doing that at once corrupt it, so it happens under the lock.
                client = MlflowClient(tracking_uri=uri)
                client.search_experiments(max_results=1)
        except OSError as error:
            if error.errno in NOT_WRITABLE and sqlite_path(uri) is not None:
                raise not_writable(sqlite_path(uri), error) from error
            raise TrackingError(f"cannot open the MLflow store {uri}: {type(error).__name__}: "
                                f"{first_line(error)}") from error
        except Exception as error:
            raise TrackingError(f"cannot open the MLflow store {uri}: {type(error).__name__}: "
                                f"{first_line(error)}") from error
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


class _NoStoreTracebacks(logging.Filter):
    """Drops MLflow's own log record of a failed sqlite write: the traceback of SQLAlchemy
    and MLflow it prints to stderr is of an error it raises anyway, to nnx, which retries it,
    spools what it could not write and reports it in one paragraph naming the store."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.levelno >= logging.ERROR)


def quiet_store_errors() -> None:
    """Install the filter on the logger of MLflow's sqlalchemy sessions (once)."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _NoStoreTracebacks) for f in logger.filters):
        logger.addFilter(_NoStoreTracebacks())


def first_line(error: BaseException) -> str:
    """The first line of an error's message (MLflow's can run to pages), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def short_error(error: BaseException) -> str:
    """A store's error in a few words: MLflow wraps a refused connection in a line of 400
    characters (URL, pool, retries); the OS's reason (``[Errno 111] Connection refused``) is
    what a reader needs, else the error's type and first line."""
    text = first_line(error)
    found = re.search(r"\[Errno -?\d+\] [^\"')(]+", text)
    if found:
        return found.group(0).strip()
    cause = root_cause(error)
    # MLflow wraps a failed sqlite write in an MlflowException whose first line can be
    # SQLAlchemy's note on autoflush; the database's own words ("database or disk is full")
    # are at the bottom of the chain.
    if cause is not error and (isinstance(cause, OSError)
                               or type(cause).__module__ == "sqlite3"):
        return f"{first_line(cause)} ({type(cause).__module__}.{type(cause).__name__})".replace(
            "builtins.", "")
    return f"{type(error).__name__}: {text[:300]}"


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of ``error``'s chain (``raise ... from``, or raised while
    handling)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error
