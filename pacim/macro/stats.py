"""MacroStats: the record of what the macro did for one layer call (read by the scheduler)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AnalogStats:
    """What the analog BP/BS array's ADCs saw in one layer call (pacim.macro.analog)."""

    adc_bits: int
    rows: int  # rows per tile (the array height)
    tiles: int  # row tiles of the dot product
    full_scale_rows: float  # column sum at the top code
    lsb_rows: float  # one code step, in units of column sum
    noise_lsb: float
    conversions: int  # column conversions (outputs x tiles x wbit x xbit)
    clipped: int  # conversions the ADC's top code clipped
    column_sum_hist: tuple[int, ...]  # conversions per column sum 0, 1, ... (up to the largest)
    datapath_bits: int  # accumulator bits of the shift-added codes

    def summary(self) -> dict[str, Any]:
        """Column-sum statistics and clipping, JSON-friendly."""
        h = np.asarray(self.column_sum_hist, dtype=np.float64)
        tot = h.sum()
        s = np.arange(h.size, dtype=np.float64)
        out: dict[str, Any] = {
            "adc_bits": self.adc_bits, "rows_per_tile": self.rows, "tiles": self.tiles,
            "full_scale_rows": self.full_scale_rows, "lsb_rows": self.lsb_rows,
            "noise_lsb": self.noise_lsb, "adc_conversions": self.conversions,
            "clipped_fraction": self.clipped / self.conversions if self.conversions else 0.0,
            "datapath_bits": self.datapath_bits,
        }
        if tot:
            mean = float(h @ s / tot)
            cdf = np.cumsum(h) / tot
            out["column_sum"] = {
                "mean": mean, "std": float(np.sqrt(max(0.0, h @ (s * s) / tot - mean * mean))),
                "p50": int(np.searchsorted(cdf, 0.5)), "p99": int(np.searchsorted(cdf, 0.99)),
                "p999": int(np.searchsorted(cdf, 0.999)), "max": int(h.size - 1)}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the histogram as a list)."""
        d = dict(self.__dict__)
        d["column_sum_hist"] = list(self.column_sum_hist)
        return d


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
    adc_conversions: int = 0  # column conversions the analog model made (0: no ADC modelled)
    analog: AnalogStats | None = None  # what the ADCs saw (analog BP/BS model only)

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
        d["analog"] = None if self.analog is None else self.analog.to_dict()
        return d
