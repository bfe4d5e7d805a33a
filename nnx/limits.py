"""What a run may ask of the machine, and what a file may declare, checked before allocating.

    available_memory()                 # bytes this process can still get, or None if unknown
    check_memory(nbytes, "model.hidden", "a network of 3,000,000,006 parameters", fix)
    read_json(data, "ckpt.npz")        # json.loads with a nesting limit (no RecursionError)
    check_npz(path)                    # every .npy member's declared size fits the file

A forged header (an IDX file claiming 22.8 TiB, an .npz member of shape (10**12,)) or a
config asking for a billion units must end in a message naming the file or the key and the
figure, not in ``MemoryError`` or ``RecursionError``. Only NumPy and the standard library.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

# json.loads recurses once per level; nothing nnx writes nests deeper than a handful.
MAX_JSON_DEPTH = 100
# Deflate cannot compress better than about 1032:1, so a compressed stream of n bytes never
# inflates to more than this many times n (RFC 1951; zlib's technical details).
DEFLATE_MAX_RATIO = 1032


def available_memory() -> int | None:
    """Bytes of memory available to this process: the smaller of MemAvailable (Linux) or the
    free physical pages, and what a cgroup v2 limit leaves; None when neither can be read."""
    found = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:  # a container's own limit, when it is lower than the machine's free memory
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            found = min(found, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return found


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; 25069340000000 -> '22.8 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class TooLarge(ValueError):
    """Something asks for more memory than the machine has available."""


def check_memory(nbytes: int, key: str, what: str, fix: str = "") -> None:
    """A TooLarge naming ``key`` when ``nbytes`` exceed the memory available (unknown: pass)."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise TooLarge(f"{key}: {what} needs about {format_bytes(nbytes)}, more than the "
                       f"{format_bytes(free)} of memory available" + (f"; {fix}" if fix else ""))


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    depth = deepest = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def read_json(data: bytes | str, source, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (ValueError)."""
    text = data.decode() if isinstance(data, bytes) else data
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"{source}: JSON nested {depth} levels deep, more than the "
                         f"{max_depth} allowed")
    return json.loads(text)


def check_npz(path) -> None:
    """Check an ``.npz`` archive's members before NumPy allocates them: each ``.npy`` header's
    shape and dtype must take exactly the bytes the member holds, no member may inflate past
    deflate's limit, and the whole must fit in memory. ValueError naming the file and member."""
    path = Path(path)
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            where = f"{path}: member {info.filename!r}"
            ratio = 1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_MAX_RATIO
            if info.file_size > max(info.compress_size, 1) * ratio:
                raise ValueError(f"{where} claims {format_bytes(info.file_size)} from "
                                 f"{format_bytes(info.compress_size)} of data: corrupt or forged")
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(member)
                except (ValueError, OSError, EOFError) as error:
                    raise ValueError(f"{where}: not a valid .npy header ({error})") from error
                header = member.tell()
            if dtype.hasobject:  # said before np.load does, in its words, never unpickled
                raise ValueError(f"{where} holds Python objects: Object arrays cannot be "
                                 "loaded when allow_pickle=False (nnx never unpickles)")
            count = 1
            for size in shape:
                count *= int(size)
            nbytes = count * dtype.itemsize
            if header + nbytes != info.file_size:
                raise ValueError(f"{where} declares shape {tuple(shape)} of {dtype} "
                                 f"({format_bytes(nbytes)}) but holds "
                                 f"{format_bytes(info.file_size - header)} of data")
            total += nbytes
    check_memory(total, str(path), "reading this archive")
