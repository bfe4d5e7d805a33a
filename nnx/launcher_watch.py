"""A sweep's worker process stops when the process that launched it is gone.

The joblib launcher runs jobs in loky worker processes. When the launching process ends
normally, or on Ctrl-C or SIGTERM, joblib kills its workers. When it cannot (it was killed with
SIGKILL, or it crashed), the workers are re-parented and would train on, with nobody to report
to: a job of ``trainer.epochs=100000000`` would run for days. So every job in a process other
than the launcher's watches its parent:

    parent gone      ->  a stop request, as a first SIGTERM makes: the epoch under way
                         finishes and is checkpointed, the run is marked KILLED
    GRACE_S later    ->  SIGTERM (nnx.run's handler: a second stop is one at once, mid-epoch)
    the job is over  ->  the process exits (at once when the parent goes between jobs; after
                         GRACE_S more at the latest)

``python -m nnx.run`` puts its process id in ``$NNX_LAUNCHER_PID`` before Hydra starts, so
the workers (started later) inherit it. Jobs in the launcher's own process (the basic launcher,
a single run) are not watched: they end with it.
"""

from __future__ import annotations

import os
import signal
import threading
import time

ENV_LAUNCHER_PID = "NNX_LAUNCHER_PID"
POLL_S = 0.2  # how often the parent is checked: one getppid() call
GRACE_S = 10.0  # how long each stop request may take before the next, harder one
EXIT_CODE = 143  # as after SIGTERM

_lock = threading.Lock()
_watcher: threading.Thread | None = None
_idle = threading.Event()  # set between jobs: a gone parent then means exit at once
_idle.set()


def launcher_pid() -> int | None:
    """The launching ``python -m nnx.run``'s pid, when this process is one of its workers."""
    value = os.environ.get(ENV_LAUNCHER_PID, "")
    if not value.isdigit() or int(value) == os.getpid():
        return None
    return int(value)


def watch() -> bool:
    """Start watching the parent (once per process) if this is a worker of a launcher that is
    its direct parent. Returns whether this process is watched."""
    global _watcher
    launcher = launcher_pid()
    if launcher is None or os.getppid() != launcher:
        return False
    with _lock:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, args=(launcher,), name="nnx-launcher-watch",
                                        daemon=True)
            _watcher.start()
    return True


class job:
    """``with launcher_watch.job(): train(...)``: marks the process busy with a job, so that a
    gone parent gives the job time to close its run before the process exits."""

    def __enter__(self):
        _idle.clear()
        return self

    def __exit__(self, *exc):
        _idle.set()
        return False


def _watch(launcher: int) -> None:
    from nnx.trainer import STOP

    while os.getppid() == launcher:
        time.sleep(POLL_S)
    # The launcher is gone: this process has been given another parent.
    if not _idle.is_set():  # finish the epoch under way (the trainer reads the flag after it)
        STOP.request(f"stopped: the sweep's launcher (pid {launcher}) is gone", EXIT_CODE)
        if not _idle.wait(GRACE_S):  # nnx.run's handler: a second stop is one at once
            os.kill(os.getpid(), signal.SIGTERM)
            _idle.wait(GRACE_S)
    os._exit(EXIT_CODE)
