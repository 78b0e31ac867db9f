"""Peak counts: one bank's step with the macro fully used, compute only (no memories, no
stalls). The energy model multiplies them by the table (pacim.energy.peak_energy).

bit_serial: every bank computes one `rows`-long dot product per column for `cols` columns; a
vector-tile takes C digital bit-serial cycles (the workload's mean, or the static default), the
PAC engine computes the count products of every column at C, and the sparsity encoder counts
the rows*xbit activation bits. bp_bs: every step converts all weight columns; a multi-bit MAC
takes xbit steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import Arch
from .timing import pac_products_at


@dataclass(frozen=True)
class PeakCounts:
    """Counts of one bank's step at full utilization (a vector-tile, or a bp_bs array step)."""

    digital_cycles: float  # C: digital cycles per vector-tile (bit_serial), xbit steps (bp_bs)
    column_cycles: float  # D-CiM column-cycles: cols x C (bit_serial)
    pac_ops: float  # PAC-engine count products: cols x products per output at C (bit_serial)
    encoder_bits: int  # activation bits counted by the sparsity encoder (bit_serial)
    bpbs_conversions: int  # column conversions: the columns holding weight bits (bp_bs)
    ops: float  # 2 x MACs of the step, at the configured precision
    cycles: float  # clock cycles of the step


def default_digital_cycles(arch: Arch) -> float:
    """Digital bit-serial cycles per output without a workload: operand^2 with PAC, else xbit*wbit.

    Dynamic configuration needs a workload's mean (pass mean_digital_cycles).
    """
    m = arch.macro
    if arch.pac.enabled:
        return float(min(arch.pac.operand, m.wbit) * min(arch.pac.operand, m.xbit))
    return float(m.wbit * m.xbit)


def peak_counts(arch: Arch, mean_digital_cycles: float | None = None) -> PeakCounts:
    """The counts of one bank's step at full utilization, at C = mean_digital_cycles (bit_serial;
    default: default_digital_cycles). ValueError when C is outside (0, wbit*xbit]."""
    m = arch.macro
    bb = m.wbit * m.xbit
    if m.kind != "bit_serial":
        wcols = (m.cols // m.wbit) * m.wbit  # columns holding weight bits
        return PeakCounts(
            digital_cycles=float(m.xbit), column_cycles=0.0, pac_ops=0.0, encoder_bits=0,
            bpbs_conversions=wcols, ops=2.0 * m.rows * (m.cols // m.wbit) / m.xbit,
            cycles=float(m.cycles_per_step))
    c = default_digital_cycles(arch) if mean_digital_cycles is None else mean_digital_cycles
    c = float(c)
    if not 0 < c <= bb:
        raise ValueError(f"mean_digital_cycles must be in (0, {bb}], got {c}")
    if not arch.pac.enabled:
        c = float(bb)  # exact: every pair runs in the banks
    pac = arch.pac.enabled
    return PeakCounts(
        digital_cycles=c,
        column_cycles=m.cols * c,
        pac_ops=m.cols * pac_products_at(arch, c) if pac else 0.0,
        encoder_bits=m.rows * m.xbit if pac and arch.pac.sparsity_encoder else 0,
        bpbs_conversions=0,
        ops=2.0 * m.rows * m.cols,
        cycles=c * m.cycles_per_step,
    )
