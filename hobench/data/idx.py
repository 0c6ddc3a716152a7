"""Read and write IDX files, the format of the original MNIST distribution.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian. The files are
usually gzip'ed; `read_idx` recognises gzip by its magic bytes rather than by the file name.
"""

import gzip as gzip_lib
import math
import zlib
from pathlib import Path

import numpy as np

from hobench.data.errors import DataError, one_line

# IDX type code -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype, int] = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzip'ed or plain) into an array in native byte order.

    Raises:
        DataError: the file is missing, unreadable, truncated or not IDX.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip_lib.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read IDX file {path} ({one_line(exc)}); delete it and fetch it again"
        ) from exc
    return _parse(raw, path)


def write_idx(path: str | Path, array: np.ndarray, gzip: bool = True) -> Path:
    """Write `array` as an IDX file, gzip'ed by default; returns the path.

    The gzip header carries no timestamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        supported = ", ".join(str(d) for d in _CODES)
        raise DataError(f"IDX cannot store dtype {array.dtype}; use one of {supported}")
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    path.write_bytes(gzip_lib.compress(data, mtime=0) if gzip else data)
    return path


def _parse(raw: bytes, path: Path) -> np.ndarray:
    """Decode the (decompressed) bytes of an IDX file."""
    fix = "delete it and fetch it again"
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path} is not an IDX file (bad magic number); {fix}")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise DataError(f"{path} has unknown IDX type code 0x{code:02x}; {fix}")
    body = 4 + 4 * ndim
    if len(raw) < body:
        raise DataError(f"{path} is truncated inside its IDX header; {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    expected = body + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: {len(raw)} bytes, expected {expected} for shape {shape}; {fix}"
        )
    # astype copies into native byte order, so the result is writable and owns its memory.
    return (
        np.frombuffer(raw, dtype=dtype, offset=body).reshape(shape).astype(dtype.newbyteorder("="))
    )
