"""Reader and writer for the IDX format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <type code> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then ``prod(dims)`` big-endian items of the type:

    0x08 uint8   0x09 int8   0x0B int16   0x0C int32   0x0D float32   0x0E float64

`read_idx` accepts the file raw or gzip-compressed, deciding by the gzip magic bytes
(``1f 8b``), not the file name. It validates the magic number, the type code, the
header length and that the payload holds exactly ``prod(dims) * itemsize`` bytes, and
returns a writable array in native byte order. Any problem raises ValueError naming the
file and what is wrong. `write_idx` is its inverse (gzip when the name ends in ``.gz``),
used to build small fixtures.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["parse_idx", "read_idx", "write_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_SIZE_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode the bytes of an IDX file (raw or gzip); `name` is used in error messages.

    Args:
        raw: the file's bytes, raw IDX or gzip-compressed.
        name: the file's name, for error messages.

    Returns:
        A writable numpy array in native byte order, of the header's dims and type.

    Example:
        >>> from fnn.data.idx import parse_idx
        >>> raw = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9])  # uint8, 1 dim of size 3
        >>> parse_idx(raw, "example").tolist()
        [7, 8, 9]
    """
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{name}: corrupt gzip stream ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{name}: too short for an IDX header (expected at least 4 bytes, found {len(raw)})")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: bad IDX magic number {raw[:4].hex()} (expected 0000<type><ndim>)")
    code, ndim = raw[2], raw[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions (expected at least 1)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{name}: truncated header (expected {header} bytes for {ndim} dimensions, found {len(raw)})"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise ValueError(
            f"{name}: dims {dims} of {dtype.name} expected {expected} bytes of data, found {found}"
        )
    # astype copies: the result is writable and in native byte order.
    return np.frombuffer(raw, dtype, offset=header).astype(dtype.newbyteorder("=")).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian numpy array.

    Args:
        path: the file's path.

    Returns:
        A writable numpy array in native byte order.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from fnn import data
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "a.idx.gz")
        >>> data.write_idx(path, np.array([[1.5, -2.0]], np.float32))
        >>> a = data.read_idx(path)
        >>> a.tolist(), a.dtype
        ([[1.5, -2.0]], dtype('float32'))
        >>> tmp.cleanup()
    """
    with open(path, "rb") as f:
        raw = f.read()
    return parse_idx(raw, os.fspath(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as an IDX file; gzip-compressed when `path` ends in ``.gz``.

    Args:
        path: the file's path; a name ending in ``.gz`` gets gzip compression.
        array: uint8, int8, int16, int32, float32 or float64, with 1 to 255 dims.

    Returns:
        None.

    Example:
        >>> import os, pathlib, tempfile, numpy as np
        >>> from fnn import data
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "labels.idx")
        >>> data.write_idx(path, np.array([3, 1], np.uint8))
        >>> pathlib.Path(path).read_bytes().hex(" ")  # magic 00 00 08 01, dim 2, then the items
        '00 00 08 01 00 00 00 02 03 01'
        >>> tmp.cleanup()
    """
    a = np.asarray(array)
    code = _KIND_SIZE_TO_CODE.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"array dtype must be one of uint8, int8, int16, int32, float32, float64, got {a.dtype}"
        )
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions for IDX, got shape {a.shape}")
    if any(d >= 2**32 for d in a.shape):
        raise ValueError(f"array dimensions must fit in uint32 for IDX, got shape {a.shape}")
    data = (
        bytes([0, 0, code, a.ndim])
        + struct.pack(f">{a.ndim}I", *a.shape)
        + a.astype(_CODE_TO_DTYPE[code], copy=False).tobytes()
    )
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
