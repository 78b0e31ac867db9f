"""Reading sweep records: a field by name, the Pareto front of two figures, and of any number
(energy, latency and area by default) as a field of the records."""

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


# The three objectives a tape-out weighs, all minimized: the sweep's records carry membership.
PARETO_OBJECTIVES = ("energy_pj", "latency_s", "area_mm2")
PARETO_FIELD = "pareto_energy_latency_area"


def pareto_front_nd(
    points: Sequence[Sequence[float]], maximize: Sequence[bool] | None = None,
) -> list[int]:
    """Indices (ascending) of the non-dominated points over any number of objectives.

    A point is dominated when another is no worse in every objective and better in one;
    identical points are all kept. Minimizes every objective unless `maximize` says otherwise.
    """
    import numpy as np

    n = len(points)
    if n == 0:
        return []
    a = np.asarray(points, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError("points must all have the same number of objectives")
    if maximize is not None:
        if len(maximize) != a.shape[1]:
            raise ValueError(f"maximize has {len(maximize)} flags for {a.shape[1]} objectives")
        a = a * np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    front = []
    for i in range(n):  # O(n^2 k) in numpy rows: a sweep holds thousands of points, not millions
        no_worse = np.all(a <= a[i], axis=1)
        better = np.any(a < a[i], axis=1)
        if not np.any(no_worse & better):
            front.append(i)
    return front


def mark_pareto(
    records: Sequence[Mapping[str, Any]], objectives: Sequence[str] = PARETO_OBJECTIVES,
    field: str = PARETO_FIELD,
) -> list[dict[str, Any]]:
    """Copies of the records with `field`: True on the Pareto front of `objectives` (all
    minimized) among the ok records of the same workload, False off it, None when a record
    is not ok or lacks a numeric objective."""
    out = [dict(r) for r in records]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(out):
        r[field] = None
        vals = [field_value(r, o) for o in objectives]
        if r.get("status", "ok") != "ok" or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in vals):
            continue
        groups.setdefault(str(r.get("workload")), []).append(i)
    for idx in groups.values():
        pts = [[float(field_value(out[i], o)) for o in objectives] for i in idx]
        front = set(pareto_front_nd(pts))
        for j, i in enumerate(idx):
            out[i][field] = j in front
    return out
