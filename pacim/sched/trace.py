"""The scheduler's event trace: one CSV row per event, layers on one time axis."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

TRACE_COLUMNS = ("start", "end", "resource", "kind", "layer", "tile", "vectors",
                 "pass", "first_vector", "bits")


def write_trace(path: str | Path, rows: Sequence[tuple], offsets: Sequence[int] | None = None
                ) -> None:
    """Write events as CSV (TRACE_COLUMNS). With `offsets` (each layer's cycles, in order),
    layer-relative times are shifted so layers follow one another on one time axis."""
    shift: dict[str, int] = {}
    if offsets is not None:
        t0, seen = 0, []
        for r in rows:
            if r[4] not in shift:
                seen.append(r[4])
                shift[r[4]] = t0
                t0 += offsets[len(seen) - 1] if len(seen) - 1 < len(offsets) else 0
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(TRACE_COLUMNS)
        for r in rows:
            s = shift.get(r[4], 0)
            wr.writerow((r[0] + s, r[1] + s, *r[2:]))
