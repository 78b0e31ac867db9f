"""MacroStats: the record of what the macro did for one layer call (read by the scheduler)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MacroStats:
    """What the macro did for one layer call."""

    macs: int  # multiply-accumulates (outputs x N)
    n: int  # dot-product length N (padding included)
    outputs: int  # dot products computed (positions x K)
    positions: int  # input vectors (output positions / rows)
    xbit: int
    wbit: int
    operand: int
    approx: str
    digital_cycles_mean: float  # digital bit-serial cycles per output
    cycle_hist: dict[int, int]  # digital cycles -> number of outputs
    pac_pairs: int  # approximated bit-pair terms over all outputs
    x_density: tuple[float, ...]  # ones-density of each activation bit-plane (LSB first)
    w_density: tuple[float, ...]  # ones-density of each weight bit-plane (LSB first)

    @property
    def baseline_cycles(self) -> int:
        """Bit-serial cycles per output of the exact bit-serial macro: xbit * wbit."""
        return self.xbit * self.wbit

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        d = dict(self.__dict__)
        d["cycle_hist"] = {str(k): v for k, v in self.cycle_hist.items()}
        d["x_density"] = list(self.x_density)
        d["w_density"] = list(self.w_density)
        return d
