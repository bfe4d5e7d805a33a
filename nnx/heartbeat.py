"""When a RUNNING run is stale: its heartbeat stopped (the process died without closing it).

A tracked run renews its tag ``nnx.heartbeat`` (ms since the epoch) every
``tracking.heartbeat_seconds`` (tag ``nnx.heartbeat_seconds``, default 30) from its writer
thread. It is stale once ``MISSED`` beats in a row are missing: 4 x 30 s = 2 minutes by
default. Runs without a heartbeat tag (a sweep's parent run, runs of older nnx versions) are
never called stale. ``python -m nnx.runs`` lists, ``nnx.runs reap`` closes, ``nnx.compare`` shows.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

from nnx.metric_writer import HEARTBEAT_TAG

MISSED = 4  # beats missed in a row before a run is stale
DEFAULT_INTERVAL = 30.0


def last_beat(run) -> float | None:
    """The run's last heartbeat, in seconds since the epoch (None: it has none)."""
    value = run.data.tags.get(HEARTBEAT_TAG)
    try:
        return int(value) / 1000 if value is not None else None
    except ValueError:
        return None


def stale_after(run, override: float | None = None) -> float:
    """Seconds without a beat after which ``run`` is stale (``override`` wins)."""
    if override is not None:
        return float(override)
    try:
        interval = float(run.data.tags.get("nnx.heartbeat_seconds", DEFAULT_INTERVAL))
    except ValueError:
        interval = DEFAULT_INTERVAL
    return MISSED * interval


def is_stale(run, now: float | None = None, override: float | None = None) -> bool:
    """A RUNNING run whose heartbeat is older than ``stale_after``."""
    beat = last_beat(run)
    if run.info.status != "RUNNING" or beat is None:
        return False
    now = time.time() if now is None else now
    return now - beat > stale_after(run, override)


def alive_here(run) -> bool:
    """Whether the run's process is alive on this machine (then it is never reaped, whatever
    its heartbeat says)."""
    if run.data.tags.get("nnx.host") != socket.gethostname():
        return False
    try:
        pid = int(run.data.tags.get("nnx.pid", ""))
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's process with that pid: leave it alone
    return True


def when(seconds: float) -> str:
    """``2026-12-01 09:41:07 UTC``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
