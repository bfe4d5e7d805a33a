"""The IDX file format (MNIST's and Fashion-MNIST's), gzip-compressed or raw, read without
pickle and streamed so that the peak memory is the result alone.

    images = read_idx("train-images-idx3-ubyte.gz", np.float32)   # (60000, 28, 28)
    shape, dtype = idx_header(path)                                # the header only

Only NumPy and the standard library.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from nnx.limits import DEFLATE_MAX_RATIO, check_memory, format_bytes

# IDX type code -> big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_idx(path: Path):
    """Open an IDX file (gzip decided by content, not by name) and read its header.

    Returns (stream positioned at the values, shape, big-endian dtype); the stream is closed
    when the header is bad, or when it declares more values than the file can hold: a raw
    file must be exactly header + values, and a gzip stream cannot inflate past deflate's
    limit (``nnx.limits.DEFLATE_MAX_RATIO``), so a forged size never reaches an allocation.
    """
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"  # the gzip magic number
    stream = gzip.open(path, "rb") if gzipped else path.open("rb")  # noqa: SIM115 (returned)
    try:
        head = stream.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise ValueError(f"{path}: not an IDX file (magic number {head.hex() or 'missing'}, "
                             "expected 0000 followed by a type code and a dimension count)")
        code, ndim = head[2], head[3]
        if code not in _IDX_TYPES:
            known = ", ".join(f"0x{c:02x}" for c in _IDX_TYPES)
            raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; known codes: {known}")
        if ndim == 0:
            raise ValueError(f"{path}: IDX header gives 0 dimensions")
        sizes = stream.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header ({4 + len(sizes)} bytes, "
                             f"need {4 + 4 * ndim})")
        shape = struct.unpack(f">{ndim}I", sizes)
        _check_declared_size(path, shape, np.dtype(_IDX_TYPES[code]), gzipped)
    except BaseException:
        stream.close()
        raise
    return stream, shape, np.dtype(_IDX_TYPES[code])


def _check_declared_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, gzipped: bool):
    """A ValueError naming the file when ``shape`` cannot be what the file holds."""
    header = 4 + 4 * len(shape)
    needed = math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if not gzipped and header + needed > size:
        raise ValueError(f"{path}: truncated: shape {shape} needs {needed} bytes of data, "
                         f"found {size - header}")
    if gzipped and header + needed > size * DEFLATE_MAX_RATIO:
        raise ValueError(f"{path}: corrupt or forged: its header declares shape {shape} "
                         f"({format_bytes(needed)}), more than its {format_bytes(size)} of "
                         "gzip data can hold")


def read_idx(path, dtype=None) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or raw.

    Layout, big-endian: bytes 0, 0, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions d; then d uint32
    sizes; then the values in C order. http://yann.lecun.com/exdb/mnist/ (bottom of page).

    Returns an array of those sizes, in the file's type (native byte order) or in ``dtype``.
    The values are streamed through a small buffer into the result, so the peak memory is
    the result alone: neither the compressed nor the decompressed bytes are ever held whole
    (for Fashion-MNIST in float32 that is the difference between 1.0x and 1.35x the dataset).
    Raises ValueError naming the file when it is truncated, has bytes left over, is corrupt
    gzip or its header is not IDX. Never unpickles anything.
    """
    path = Path(path)
    chunk_bytes = 1 << 22  # 4 MiB: large enough that the Python loop is free, small for memory
    with _gzip_errors(path):
        stream, shape, file_dtype = _open_idx(path)
        with stream:
            out_dtype = np.dtype(dtype or file_dtype.newbyteorder("="))
            check_memory(math.prod(shape) * out_dtype.itemsize, str(path),
                         f"shape {shape} of {out_dtype}")
            out = np.empty(shape, out_dtype)
            flat = out.reshape(-1)
            rows = max(1, chunk_bytes // file_dtype.itemsize)
            buffer = np.empty(min(rows, flat.size), file_dtype)
            for start in range(0, flat.size, rows):
                chunk = buffer[: min(rows, flat.size - start)]
                got = stream.readinto(memoryview(chunk).cast("B"))
                if got < chunk.nbytes:
                    found = start * file_dtype.itemsize + got
                    raise ValueError(f"{path}: truncated: shape {shape} needs "
                                     f"{flat.size * file_dtype.itemsize} bytes of data, "
                                     f"found {found}")
                flat[start:start + len(chunk)] = chunk  # converts byte order and type
            if stream.read(1):
                raise ValueError(f"{path}: corrupt (bytes left over): shape {shape} needs "
                                 f"{flat.size * file_dtype.itemsize} bytes of data, found more")
    return out


def idx_header(path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and value type (native byte order) an IDX file declares; reads the header only."""
    path = Path(path)
    with _gzip_errors(path):
        stream, shape, file_dtype = _open_idx(path)
        stream.close()
    return shape, file_dtype.newbyteorder("=")


@contextlib.contextmanager
def _gzip_errors(path: Path):
    """A cut or damaged gzip stream, as a ValueError that names the file."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
