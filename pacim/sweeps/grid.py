"""Sweep grids: expansion of {key: values} into override points, and the points' keys.

A point is (arch overrides, workload name); its key hashes the point's full resolved config,
so a resumed sweep recognizes the points it has already run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch import Arch
from ..errors import PacimError

SimulateFn = Callable[..., Any]


def expand_grid(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Cartesian product of {dotted key: values} (first key varies slowest), or a list as is."""
    if isinstance(grid, Mapping):
        keys = list(grid)
        values = []
        for k in keys:
            v = grid[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise PacimError(f"grid {k}: expected a list of values, got {v!r}")
            v = list(v)
            if not v:
                raise PacimError(f"grid {k}: empty list of values")
            values.append(v)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    points = []
    for i, ov in enumerate(grid):
        if not isinstance(ov, Mapping):
            raise PacimError(f"grid point {i}: expected a dict of overrides, got {ov!r}")
        points.append(dict(ov))
    return points


def split_values(text: str) -> list[str]:
    """'1,2,[3, 4]' -> ['1', '2', '[3, 4]']: commas split at bracket depth 0, outside quotes."""
    out: list[str] = []
    depth, quote, cur = 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid_option(item: str) -> tuple[str, list[Any]]:
    """'pac.operand=2,3,4' -> ('pac.operand', [2, 3, 4]) (values parsed as YAML)."""
    from ..arch import parse_value, split_assignment

    key, vals = split_assignment(item, "--grid", "key.path=v1,v2,...")
    parts = split_values(vals)
    if any(p == "" for p in parts):
        raise PacimError(f"--grid {item!r} has an empty value")
    return key, [parse_value(p) for p in parts]



def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def workload_id(name: str) -> str:
    """A workload's identity for the key: the name, plus a content hash when it is a file."""
    p = Path(name)
    if p.is_file():
        return f"{name}#{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}"
    return name


def point_key(arch_dict: Mapping[str, Any], workload: str, data: bool, seed: int) -> str:
    """Hash of a point's full config: resolved arch dict + workload + data + seed."""
    return digest({"arch": arch_dict, "workload": workload, "data": bool(data),
                    "seed": int(seed)})


@dataclass(frozen=True)
class Point:
    """One sweep point: what to run (task) or why it cannot run (error)."""

    key: str
    overrides: dict[str, Any]
    workload: str
    task: dict[str, Any] | None  # None when the overrides do not give a valid arch
    error: str | None = None


def make_points(
    arch: Arch, overrides: Sequence[Mapping[str, Any]], workloads: Sequence[str], data: bool,
    seed: int, simulate_fn: SimulateFn | None = None,
) -> list[Point]:
    """Resolve each (workload, overrides) into a Point; invalid overrides become error points."""
    base = arch.to_dict()
    ids = {w: workload_id(w) for w in workloads}
    points: list[Point] = []
    for wl in workloads:
        for ov in overrides:
            ov = dict(ov)
            try:
                resolved = arch.with_overrides(ov).to_dict()
            except (PacimError, ValueError, TypeError) as e:
                key = digest({"base": base, "overrides": ov, "workload": ids[wl],
                               "data": bool(data), "seed": int(seed), "invalid": True})
                points.append(Point(key, ov, wl, None, f"{type(e).__name__}: {e}"))
                continue
            key = point_key(resolved, ids[wl], data, seed)
            task = {"key": key, "arch": resolved, "overrides": ov, "workload": wl,
                    "data": bool(data), "seed": int(seed)}
            if simulate_fn is not None:
                task["simulate"] = simulate_fn
            points.append(Point(key, ov, wl, task))
    return points
