"""The scheduler's event trace: one CSV row per event, layers on one time axis, streamed to disk.

`TraceWriter` receives rows as events retire (`extend`), shifts them by the current layer's
offset and writes them in blocks of `buffer` rows, so a trace of 10^9 events needs the memory of
one block. Row order: per layer, per vector batch, the batch's events in creation order (weight
load, fetches, compute, pac, encode, write-backs).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import PacimError

TRACE_COLUMNS = ("start", "end", "resource", "kind", "layer", "tile", "vectors",
                 "pass", "first_vector", "bits")
TRACE_BUFFER = 8192  # rows held before a write



class TraceWriteError(PacimError):
    """The trace file could not be written (the CLI names its option)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write trace {path}: {reason}")
        self.path, self.reason = path, reason

class TraceWriter:
    """Streams trace rows to a path (or an open text file); use as a context manager.

    A write error (a full disk, a closed pipe) is a PacimError naming the path; the partly
    written regular file is removed (so is it by `abort`, when the run fails).
    """

    def __init__(self, target: str | Path | IO[str], buffer: int | None = None) -> None:
        self.buffer = max(1, TRACE_BUFFER if buffer is None else buffer)
        self.offset = 0  # added to start and end: the current layer's first cycle
        self.rows_written = 0
        self._rows: list[tuple] = []
        self._own = not hasattr(target, "write")
        self.path = str(target) if self._own else getattr(target, "name", "<stream>")
        try:
            if self._own:
                self._file: IO[str] = open(target, "w", newline="")  # type: ignore[arg-type]  # noqa: SIM115
            else:
                self._file = target  # type: ignore[assignment]
            self._csv = csv.writer(self._file)
            self._csv.writerow(TRACE_COLUMNS)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self._own and getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            except OSError:
                pass
            if os.path.isfile(self.path):  # truncated by this writer: no partial trace stays
                os.unlink(self.path)
        raise TraceWriteError(self.path, str(exc.strerror or exc)) from None

    def begin_layer(self, offset: int) -> None:
        """Rows from now on belong to a layer that starts at cycle `offset`."""
        self.offset = offset

    def extend(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add layer-relative rows (TRACE_COLUMNS order)."""
        s = self.offset
        self._rows.extend((r[0] + s, r[1] + s, *r[2:]) for r in rows)
        if len(self._rows) >= self.buffer:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows."""
        if not self._rows:
            return
        try:
            self._csv.writerows(self._rows)
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
        self.rows_written += len(self._rows)
        self._rows.clear()

    def close(self) -> None:
        """Write what is left and close the file (if this writer opened it)."""
        self.flush()
        if self._own:
            try:
                self._file.close()
            except OSError as exc:
                self._fail(exc)

    def abort(self) -> None:
        """Stop without writing the rest: close, and remove a regular file this writer made."""
        if self._own:
            try:
                self._file.close()
            except OSError:
                pass
            if os.path.isfile(self.path):
                os.unlink(self.path)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


def write_trace(path: str | Path, rows: Sequence[tuple], offsets: Sequence[int] | None = None
                ) -> None:
    """Write events as CSV (TRACE_COLUMNS). With `offsets` (each layer's cycles, in order),
    layer-relative times are shifted so layers follow one another on one time axis (rows of
    one layer are contiguous)."""
    with TraceWriter(path) as tw:
        t0, li, layer = 0, -1, object()
        for r in rows:
            if offsets is not None and r[4] != layer:
                if li >= 0 and li < len(offsets):
                    t0 += offsets[li]
                li, layer = li + 1, r[4]
                tw.begin_layer(t0)
            tw.extend((r,))
