"""The IDX format of (Fashion-)MNIST: a reader and a writer, plain or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the data in C order, big-endian: the images files have a 16-byte header
(3 dimensions), the label files an 8-byte one. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import PacimError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 1 << 31  # refuse headers promising more than 2 GiB (a corrupt or hostile file)


def _read_bytes(p: Path) -> bytes:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise PacimError(f"{p}: cannot read: {e.strerror}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise PacimError(f"{p}: corrupt gzip data ({e})") from None


def parse_idx(raw: bytes, where: str = "idx") -> np.ndarray:
    """Decode the bytes of an IDX file (uncompressed) into an array in native byte order."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        got = raw[:4].hex(" ") if raw else "an empty file"
        raise PacimError(f"{where}: not an IDX file (magic number {got}; expected 00 00 <type> "
                         f"<ndim> with type one of {', '.join(f'{t:02x}' for t in IDX_TYPES)})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(raw) < head:
        raise PacimError(f"{where}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if want > MAX_IDX_BYTES:
        raise PacimError(f"{where}: IDX header declares {dims}, {want} bytes: too large")
    have = len(raw) - head
    if have < want:
        raise PacimError(f"{where}: truncated IDX file: dimensions {dims} need {want} data "
                         f"bytes, the file has {have}")
    if have > want:
        raise PacimError(f"{where}: {have - want} bytes of trailing data after an IDX array "
                         f"of dimensions {dims}")
    a = np.frombuffer(raw, dtype, offset=head).reshape(dims)
    return a.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or not: detected from its content)."""
    p = Path(path)
    return parse_idx(_read_bytes(p), str(p))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as IDX (gzip-compressed when compress, default: the name ends in .gz)."""
    a = np.asarray(array)
    code = next((c for c, dt in IDX_TYPES.items() if dt.kind == a.dtype.kind
                 and dt.itemsize == a.dtype.itemsize), None)
    if code is None or a.ndim == 0 or a.ndim > 255:
        raise PacimError(f"IDX cannot hold an array of dtype {a.dtype} with {a.ndim} dimensions")
    data = (bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
            + np.ascontiguousarray(a, IDX_TYPES[code]).tobytes())
    p = Path(path)
    if compress if compress is not None else p.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    p.write_bytes(data)
    return p
