"""Sweep grids: expansion of {key: values} into override points, and the points' keys.

A point is (arch overrides, run options, workload name); its key hashes the point's full
resolved config, so a resumed sweep recognizes the points it has already run. Grid keys are
dotted arch keys, except RUN_KEYS (phase, context, tokens): the LLM inference phase a point
runs (pacim.phase.simulate_phase) instead of a plain simulate.
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
RUN_KEYS = ("phase", "context", "tokens")  # grid keys that are run options, not arch keys


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


def point_key(arch_dict: Mapping[str, Any], workload: str, data: bool, seed: int,
              run: Mapping[str, Any] | None = None) -> str:
    """Hash of a point's full config: resolved arch dict + workload + data + seed (+ the run
    options of a phase point; without them the key is what it always was)."""
    cfg: dict[str, Any] = {"arch": arch_dict, "workload": workload, "data": bool(data),
                           "seed": int(seed)}
    if run:
        cfg["run"] = dict(run)
    return digest(cfg)


def split_run(ov: Mapping[str, Any], base: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arch overrides, run options) of a grid point; run = base run options + its RUN_KEYS."""
    run = dict(base or {})
    run.update({k: v for k, v in ov.items() if k in RUN_KEYS})
    return {k: v for k, v in ov.items() if k not in RUN_KEYS}, run


def check_run(run: Mapping[str, Any], data: bool) -> dict[str, Any]:
    """Validated run options ({} or phase, context, tokens); PacimError on a bad one."""
    from ..phase import PHASES

    if not run:
        return {}
    bad = sorted(set(run) - set(RUN_KEYS))
    if bad:
        raise PacimError(f"unknown run options {bad}; known: {list(RUN_KEYS)}")
    phase = run.get("phase")
    if phase is None:
        raise PacimError(f"sweep keys {sorted(run)} need a phase (--phase prefill|decode or "
                         "--grid phase=...)")
    if phase not in PHASES:
        raise PacimError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if data:
        raise PacimError("a phase sweep needs --no-data (data=False): the phases are a cost "
                         "model of shapes")
    out: dict[str, Any] = {"phase": phase}
    for k, lo in (("context", 0), ("tokens", 1)):
        v = run.get(k, 0 if k == "context" else None)
        if v is None:
            raise PacimError("a phase sweep needs tokens (--tokens T or --grid tokens=...)")
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise PacimError(f"{k} must be an integer >= {lo}, got {v!r}")
        out[k] = v
    return out


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
    seed: int, simulate_fn: SimulateFn | None = None, run: Mapping[str, Any] | None = None,
) -> list[Point]:
    """Resolve each (workload, overrides) into a Point; invalid overrides become error points.
    `run`: fixed run options (phase, context, tokens) that RUN_KEYS of a point override; bad
    run options raise PacimError (they are the whole sweep's mistake)."""
    base = arch.to_dict()
    ids = {w: workload_id(w) for w in workloads}
    points: list[Point] = []
    for wl in workloads:
        for ov in overrides:
            ov = dict(ov)
            arch_ov, opts = split_run(ov, run)
            opts = check_run(opts, data)
            try:
                resolved = arch.with_overrides(arch_ov).to_dict()
            except (PacimError, ValueError, TypeError) as e:
                key = digest({"base": base, "overrides": ov, "workload": ids[wl],
                               "data": bool(data), "seed": int(seed), "invalid": True,
                               **({"run": opts} if opts else {})})
                points.append(Point(key, ov, wl, None, f"{type(e).__name__}: {e}"))
                continue
            key = point_key(resolved, ids[wl], data, seed, opts)
            task = {"key": key, "arch": resolved, "overrides": ov, "workload": wl,
                    "data": bool(data), "seed": int(seed)}
            if opts:
                task["run"] = opts
            if simulate_fn is not None:
                task["simulate"] = simulate_fn
            points.append(Point(key, ov, wl, task))
    return points
