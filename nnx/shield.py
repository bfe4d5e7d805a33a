"""A block that SIGINT and SIGTERM do not interrupt: the final write of a run's status.

    with shielded("the final status of MLflow run 1a2b..."):
        client.set_terminated(run_id, "KILLED")

A second Ctrl-C during clean-up used to stop the process between "the run is marked KILLED" and
the write that marks it, leaving it RUNNING. Inside the block a signal is noted, not acted on
(one line says so); the block always runs to its end. The first signal of a run (finish the
epoch, checkpoint) is handled by the trainer before clean-up starts, so nothing is lost by
deferring later ones: the process exits right after, with the status of the run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def shielded(what: str):
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be changed (and only run) in the main thread
        return
    seen: list[int] = []

    def note(signum, frame):
        seen.append(signum)
        print(f"nnx: {signal.Signals(signum).name} while writing {what}: it is written first",
              file=sys.stderr)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, note)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
