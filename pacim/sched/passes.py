"""A layer's passes as runs: periodic blocks of pass kinds, never a list of every pass.

Tiles go column-major onto the banks, `banks` per pass. Inside one column, away from its first
and last row tile, a pass's kind depends only on its row offset modulo the kernel period
(channels and sliding-window rows), so such a stretch is one period of kinds repeated; before the
last column the column offsets repeat every row_tiles / gcd(row_tiles, banks) passes. A 10^9-row
weight matrix is then a handful of runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import TYPE_CHECKING

from ..errors import PacimError

if TYPE_CHECKING:
    from .mapping import Mapping


@dataclass(frozen=True)
class PassKind:
    """What the schedule of a pass depends on (passes of one kind have identical events)."""

    tiles: int  # banks in use
    channels: int
    rows_present: int  # distinct row tiles (count groups under pac.scope bank)
    last_row: bool  # the layer's last row tile is among them
    done_cols: int
    spill_cols: int
    resume_cols: int
    pac_cols: int
    weight_bits: int
    wcount_bits: int
    rows_sum: int  # active rows over the tiles
    new_rows_sum: int  # sliding-window new rows over the tiles
    shapes: tuple[tuple[int, int], ...]  # distinct (rows, new_rows) of the tiles
    last: bool  # the layer's last pass


@dataclass(frozen=True)
class PassRun:
    """`kinds` (one period of passes) repeated `repeat` times."""

    kinds: tuple[PassKind, ...]
    repeat: int

    @property
    def passes(self) -> int:
        """Passes in the run."""
        return len(self.kinds) * self.repeat


MAX_RUNS = 4096  # runs of a compressed pass sequence (each costs a few simulated passes)
MAX_PERIOD = 4096  # passes in one period of a run


def _interior(mp: Mapping, p: int) -> int:
    """Passes from p on that lie inside one column, away from its first and last row tile (their
    kind depends only on p's row offset modulo the kernel period); 0 if p is not such a pass."""
    b, rt = mp.banks, mp.row_tiles
    o = p * b % rt
    if o < 1 or o + b > rt - 1:
        return 0
    return (rt - 1 - b - o) // b + 1


def _walk(mp: Mapping, p0: int, p1: int) -> list[PassRun]:
    """Runs of passes [p0, p1): interior stretches as periodic runs, the rest one by one."""
    runs: list[PassRun] = []
    q = mp.khw // gcd(mp.rows_per_tile, mp.khw)  # row-offset period of channels and new rows
    period = q // gcd(q, mp.banks)  # in passes
    p = p0
    while p < p1:
        m = min(_interior(mp, p), p1 - p)
        if m >= 2 * period:
            block = tuple(mp.kind_of(p + t) for t in range(period))
            runs.append(PassRun(block, m // period))
            rem = m % period
            if rem:
                runs.append(PassRun(block[:rem], 1))
            p += m
        else:
            runs.append(PassRun((mp.kind_of(p),), 1))
            p += 1
        if len(runs) > 4 * MAX_RUNS:
            break  # compress refuses
    return runs


def _merge(runs: list[PassRun]) -> list[PassRun]:
    """Adjacent runs of one and the same kind become one run."""
    out: list[PassRun] = []
    for r in runs:
        if out and len(r.kinds) == 1 and out[-1].kinds == r.kinds:
            out[-1] = PassRun(r.kinds, out[-1].repeat + r.repeat)
        else:
            out.append(r)
    return out


def compress(mp: Mapping, name: str) -> tuple[PassRun, ...]:
    """The pass sequence as runs. Passes before the last column repeat with a period of
    row_tiles / gcd(row_tiles, banks) passes (the column offsets repeat), so that stretch is one
    period's runs repeated."""
    b, rt, ct = mp.banks, mp.row_tiles, mp.col_tiles
    total = mp.pass_count
    sp = rt // gcd(rt, b)  # passes per period of column offsets
    regular = (ct - 1) * rt // b  # passes entirely before the last column
    runs: list[PassRun] = []
    p = 0
    if regular >= 2 * sp:
        one = _merge(_walk(mp, 0, sp))
        reps = regular // sp
        if sp <= MAX_PERIOD:
            block = tuple(k for r in one for _ in range(r.repeat) for k in r.kinds)
            runs.append(PassRun(block, reps))
        elif len(one) * reps <= MAX_RUNS:
            runs.extend(one * reps)
        else:
            runs.extend(one * (MAX_RUNS + 1))
        p = reps * sp
    if len(runs) <= MAX_RUNS:
        runs.extend(_walk(mp, p, total))
    runs = _merge(runs)
    if len(runs) > MAX_RUNS:
        raise PacimError(
            f"layer {name}: its {mp.n} x {mp.k} weight matrix maps to {total} passes with no "
            f"repeating pattern short enough to schedule (more than {MAX_RUNS} runs of passes: "
            f"{rt} row tiles x {ct} column tiles on {b} banks); split the layer")
    return tuple(runs)
