"""Run Python code with a folder on a small tmpfs of its own, so that writes there really fail
with "No space left on device": no mocked file system.

The tmpfs is mounted in a private mount namespace (``unshare --mount --map-root-user``: root is
not needed where user namespaces are allowed), so nothing outside the child process sees it and
nothing is left mounted when it ends. Where that is not possible the caller skips, saying why.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@functools.cache
def unavailable() -> str | None:
    """Why a private tmpfs cannot be mounted here, or None when it can."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux's unshare(1) to mount a private tmpfs"
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True,
                           text=True, check=False, timeout=60)
    if probe.returncode != 0:
        return f"cannot mount a private tmpfs here: {probe.stderr.strip()}"
    return None


def run(folder: Path, module: str, function: str, size: str = "1m", timeout: float = 300):
    """``module.function(folder)`` in a child process where ``folder`` is a fresh tmpfs of
    ``size``; returns the CompletedProcess. Skips the calling test where that cannot be done."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from pathlib import Path; "
            f"import {module}; {module}.{function}(Path({str(folder)!r}))")
    mount = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", mount, "sh",
                           size, str(folder), sys.executable, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL)


def fill(folder: Path) -> None:
    """Write a file in ``folder`` until the disk is full."""
    chunk = b"\0" * 4096
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as error:
            if error.errno != 28:  # ENOSPC
                raise
