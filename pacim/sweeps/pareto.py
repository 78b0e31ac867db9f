"""Reading sweep records: a field by name, and the Pareto front of two figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def field_value(rec: Mapping[str, Any], name: str) -> Any:
    """A record's field: a top-level key, else an override (dotted arch key)."""
    if name in rec:
        return rec[name]
    return (rec.get("overrides") or {}).get(name)


def pareto_front(
    points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (False, False),
) -> list[int]:
    """Indices of the non-dominated points (minimizing both by default), sorted along x."""
    sx = -1.0 if maximize[0] else 1.0
    sy = -1.0 if maximize[1] else 1.0
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], sy * points[i][1]))
    front: list[int] = []
    best = math.inf
    for i in order:
        y = sy * points[i][1]
        if y < best:
            front.append(i)
            best = y
    return front
