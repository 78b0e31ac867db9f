"""Energy: scheduler counts x the arch's per-event energy table -> pJ by component, TOPS/W.

The model only multiplies counts (pacim.sched.counts.LayerCounts per layer,
pacim.sched.peak.PeakCounts for the macro at full utilization) by table values (arch.energy,
arch.memory); no energy number lives in this package. Table values are pJ per event at
technology.vdd_nom (leakage: mW at vdd_nom). At the operating point technology.vdd:

- dynamic energy scales as (vdd / vdd_nom)^2 (off-chip memories with scales_with_vdd: false
  keep their own supply and do not scale);
- leakage power scales as vdd / vdd_nom and is integrated over time = cycles / freq_hz, the
  clock following the alpha-power law (Technology.freq_hz).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..arch import Arch
from ..sched.counts import LayerCounts
from ..sched.peak import PeakCounts, peak_counts
from .table import (
    BPBS_COMPONENTS,
    MEMORY_COMPONENTS,
    accumulator_bits,
    adder_tree_full_adders,
    bpbs_conversion_pj,
    components,
    cost,
    dcim_column_cycle_pj,
    table_value,
)

# PACiM's reported mean digital bit-serial cycles under dynamic configuration on ResNet-18
# (64 cycles cut by 81%).
PACIM_PAPER_DIGITAL_CYCLES = 64 * (1 - 0.81)
# The operating point pacim_65nm's full_adder is calibrated at: the built-in resnet18 workload's
# mean digital cycles per vector-tile over its PAC layers (seed 0, dynamic configuration), as
# simulate reports it (12.962).
PACIM_CALIBRATION_DIGITAL_CYCLES = 12.96


# --- per layer ------------------------------------------------------------------------------
def layer_time_s(arch: Arch, counts: LayerCounts) -> float:
    """Wall time of the layer: cycles / clock at the operating vdd."""
    return counts.cycles / arch.technology.freq_hz


def layer_energy(arch: Arch, counts: LayerCounts) -> dict[str, float]:
    """Energy of one layer in pJ by component (keys: components(arch)); sums to the total."""
    t = arch.technology
    m = arch.macro
    dyn = t.dynamic_scale
    where = f"layer {counts.name!r}"
    out = dict.fromkeys(components(arch), 0.0)
    if m.kind == "bit_serial":
        arc = counts.active_row_cycles
        what = f"{where} ({arc} active row-cycles)"
        out["dcim_and"] = cost(arch, "and_gate", arc, what)
        tree_per_row = adder_tree_full_adders(m.rows) / m.rows  # tree FA ops per active row
        out["dcim_adder_tree"] = cost(arch, "full_adder", arc * tree_per_row, what)
        acc = accumulator_bits(m.rows, m.xbit, m.wbit)
        out["dcim_accumulate"] = cost(
            arch, "accumulator_bit", counts.column_cycles * acc,
            f"{where} ({counts.column_cycles} column-cycles)",
        )
    else:
        conv = counts.bpbs_conversions
        for c in BPBS_COMPONENTS:
            out[c] = cost(arch, c, conv, f"{where} ({conv} column conversions)")
    out["pac_engine"] = cost(arch, "pac_op", counts.pac_ops, f"{where} ({counts.pac_ops} PAC ops)")
    out["encoder"] = cost(
        arch, "encoder_bit", counts.encoder_bits, f"{where} ({counts.encoder_bits} encoder bits)"
    )
    out["weight_write"] = cost(
        arch, "weight_write_bit", counts.weight_bits_written,
        f"{where} ({counts.weight_bits_written} weight bits written)",
    )
    out["psum"] = cost(
        arch, "psum_bit", counts.psum_bits, f"{where} ({counts.psum_bits} psum bits)"
    )
    if "kv_write" in out:  # attention.mapping set (pacim/sched/attention.py)
        out["kv_write"] = cost(arch, "cell_write_bit", counts.kv_cell_write_bits,
                               f"{where} ({counts.kv_cell_write_bits} K/V cell bits written)")
        out["digital_unit"] = cost(arch, "digital_mac", counts.digital_macs,
                                   f"{where} ({counts.digital_macs} digital-unit MACs)")
        out["periphery"] = sum(cost(arch, f"{op}_op", n, f"{where} ({n} {op} operations)")
                               for op, n in counts.periphery_ops.items())
    elif counts.kv_cell_write_bits or counts.digital_macs or counts.periphery_ops:
        raise ValueError(f"{where}: attention counts on a chip without attention.mapping")
    for k in out:  # everything so far is on-die logic: (vdd / vdd_nom)^2
        out[k] *= dyn
    for level, lv in arch.memory.levels().items():
        rd = sum(counts.reads_bits.get(level, {}).values())
        wr = sum(counts.writes_bits.get(level, {}).values())
        e = rd * lv.read_pj_per_bit + wr * lv.write_pj_per_bit
        out[f"mem_{level}"] = e * (dyn if lv.scales_with_vdd else 1.0)
    time_s = layer_time_s(arch, counts)
    if time_s > 0:
        p_mw = table_value(arch, "leakage_mw", f"{where} ({counts.cycles} cycles of leakage)")
        out["leakage"] = p_mw * (t.vdd / t.vdd_nom) * time_s * 1e9  # mW x s = 1e9 pJ
    return out


# --- peak (macro at full utilization, compute only) -----------------------------------------
def peak_figures(arch: Arch, mean_digital_cycles: float | None = None) -> dict[str, Any]:
    """Peak efficiency and throughput of the macro at full utilization, compute only.

    The counts of one bank's step come from the scheduler side (pacim.sched.peak.peak_counts:
    C = mean_digital_cycles digital cycles per vector-tile, or the static default); see
    peak_energy for what they cost.
    """
    return peak_energy(arch, peak_counts(arch, mean_digital_cycles))


def peak_energy(arch: Arch, counts: PeakCounts) -> dict[str, Any]:
    """Peak figures from the counts of one bank's step at full utilization.

    bit_serial: `cols` columns x C digital cycles of D-CiM column-cycles, the PAC engine's count
    products and the sparsity encoder's counted activation bits. bp_bs: every step converts all
    weight columns. Ops are 2 per MAC at the configured precision; *_1b figures multiply by
    wbit*xbit. peak_digital_cycles is C (bit_serial) or the xbit array steps per MAC (bp_bs).
    """
    m, t = arch.macro, arch.technology
    dyn, f = t.dynamic_scale, t.freq_hz
    bb = m.wbit * m.xbit
    parts: dict[str, float] = {}
    if m.kind == "bit_serial":
        for k, v in dcim_column_cycle_pj(arch).items():
            parts[k] = counts.column_cycles * v
        if arch.pac.enabled:
            parts["pac_engine"] = counts.pac_ops * table_value(arch, "pac_op", "the PAC engine")
        if arch.pac.enabled and arch.pac.sparsity_encoder:
            parts["encoder"] = counts.encoder_bits * table_value(arch, "encoder_bit",
                                                                 "the encoder")
    else:
        for k, v in bpbs_conversion_pj(arch).items():
            parts[k] = counts.bpbs_conversions * v
    step_s = counts.cycles / f
    energy = sum(parts.values()) * dyn
    tops_w = counts.ops / energy  # ops / pJ = TOPS/W
    tops = m.banks * counts.ops / step_s / 1e12
    return {
        "peak_tops_per_w": tops_w,
        "peak_throughput_tops": tops,
        "peak_tops_per_w_1b": tops_w * bb,
        "peak_throughput_tops_1b": tops * bb,
        "peak_digital_cycles": counts.digital_cycles,
        "peak_energy_per_mac_pj": 2.0 * energy / counts.ops,
        "peak_energy_share": {k: v * dyn / energy for k, v in parts.items()},
    }


# --- whole workload -------------------------------------------------------------------------
def energy_report(
    arch: Arch,
    counts_list: Iterable[LayerCounts],
    macs: int,
    mean_digital_cycles: float | None = None,
    breakdowns: Sequence[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Workload energy, latency and TOPS/W (everything counted) plus the macro's peak figures.

    macs: multiply-accumulates of the mapped layers (2 ops each). Layers run one after the other.
    breakdowns: the layers' layer_energy results, in counts order, when already computed.
    """
    keys = components(arch)
    total = dict.fromkeys(keys, 0.0)
    cycles = 0
    counts_list = list(counts_list)
    if breakdowns is None:
        breakdowns = [layer_energy(arch, c) for c in counts_list]
    for c, b in zip(counts_list, breakdowns, strict=True):
        for k in keys:
            total[k] += b[k]
        cycles += c.cycles
    energy = sum(total.values())
    latency = cycles / arch.technology.freq_hz
    ops = 2.0 * macs
    mem = sum(total[k] for k in MEMORY_COMPONENTS)
    out: dict[str, Any] = {
        "energy_pj": energy,
        "energy_breakdown_pj": total,
        "energy_memory_share": mem / energy if energy > 0 else 0.0,
        "tops_per_w": ops / energy if energy > 0 else 0.0,
        "latency_s": latency,
        "throughput_tops": ops / latency / 1e12 if latency > 0 else 0.0,
    }
    out.update(peak_figures(arch, mean_digital_cycles))
    return out


def relative_error(value: float, target: float) -> float:
    """(value - target) / target."""
    return (value - target) / target if target else math.inf
