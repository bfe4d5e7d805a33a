"""Which processes are alive, read from /proc (Linux): a sweep's process group, a process's
children, the processes that carry an environment marker. psutil is not a dependency."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, or None when it is gone (or a zombie)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces or ')'
    state, ppid, pgid = fields[0], int(fields[1]), int(fields[2])
    return None if state in ("Z", "X") else (state, ppid, pgid)


def pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


def group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    return [p for p in pids() if (s := _stat(p)) is not None and s[2] == pgid]


def children(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    return [p for p in pids() if (s := _stat(p)) is not None and s[1] == pid]


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def carrying(key: str, value: str) -> list[int]:
    """Live processes whose environment holds ``key=value`` (inherited from who started them)."""
    needle = f"{key}={value}".encode()
    found = []
    for pid in pids():
        if pid == os.getpid():
            continue
        try:
            env = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in env and alive(pid):
            found.append(pid)
    return found


def wait_gone(list_alive, timeout: float, what: str) -> None:
    """Until ``list_alive()`` is empty; after ``timeout`` seconds fail naming who is left.
    A guard against a hang, not a measure: a busy machine may take long."""
    deadline = time.monotonic() + timeout
    while (left := list_alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise AssertionError(f"{what}: still alive after {timeout:.0f} s: "
                             + "; ".join(f"{p} {command(p)}" for p in left))


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group this test started."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
