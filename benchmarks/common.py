"""Shared pieces of the benchmarks: timing by interleaved best-of, and target checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def best_of(fns: dict[str, Callable[[], Any]], repeat: int = 5) -> dict[str, float]:
    """Best wall time of each function, runs interleaved so load noise hits all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


@dataclass
class Check:
    """One target: value `op` limit, e.g. ratio <= 8."""

    name: str
    value: float
    op: str  # "<=" or ">="
    limit: float

    @property
    def ok(self) -> bool:
        """True when the target is met."""
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def line(self) -> str:
        """One printable line."""
        mark = "ok  " if self.ok else "FAIL"
        return f"  [{mark}] {self.name}: {self.value:.4g} {self.op} {self.limit:g}"


@dataclass
class BenchResult:
    """Figures a benchmark measured plus the targets it checks."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passes."""
        return all(c.ok for c in self.checks)
