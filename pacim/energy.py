"""Energy: scheduler counts x the arch's per-event energy table -> pJ by component, TOPS/W.

The model only multiplies counts (pacim.sched.counts.LayerCounts) by table values (arch.energy,
arch.memory); no energy number lives in this file. Table values are pJ per event at
technology.vdd_nom (leakage: mW at vdd_nom). At the operating point technology.vdd:

- dynamic energy scales as (vdd / vdd_nom)^2 (off-chip memories with scales_with_vdd: false
  keep their own supply and do not scale);
- leakage power scales as vdd / vdd_nom and is integrated over time = cycles / freq_hz, the
  clock following the alpha-power law (Technology.freq_hz).

D-CiM (macro.kind bit_serial) column-cycle energy is built from gate-level events, so it scales
with the column height `rows` and the accumulated width:

- one AND per active row (the 1b x 1b product in the bit-cell);
- an adder tree summing `rows` one-bit products: a balanced tree of ripple adders, level l of
  which has rows / 2^l adders of l bits, i.e. sum_l l * rows / 2^l = 2*rows - log2(rows) - 2
  full-adder operations (~2*rows), charged per active row;
- a shift-accumulator of ceil(log2(rows + 1)) + xbit + wbit bits per column-cycle.

BP/BS (macro.kind bp_bs, Jia et al.) charges array + drivers, ADC and near-memory datapath per
column conversion. See docs/ENERGY.md for the table's sources and the calibration.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .arch import Arch, EnergyEntry
from .errors import ConfigError
from .macro.core import pac_products_by_cycles
from .sched.counts import LayerCounts

# PACiM's reported mean digital bit-serial cycles under dynamic configuration on ResNet-18
# (64 cycles cut by 81%).
PACIM_PAPER_DIGITAL_CYCLES = 64 * (1 - 0.81)
# The operating point pacim_65nm's full_adder is calibrated at: the built-in resnet18 workload's
# mean digital cycles per vector-tile over its PAC layers (seed 0, dynamic configuration), as
# simulate reports it (12.962).
PACIM_CALIBRATION_DIGITAL_CYCLES = 12.96

# breakdown components, by macro kind, then the ones every chip has
DCIM_COMPONENTS = ("dcim_and", "dcim_adder_tree", "dcim_accumulate")
BPBS_COMPONENTS = ("bpbs_array", "bpbs_adc", "bpbs_datapath")
COMMON_COMPONENTS = ("pac_engine", "encoder", "weight_write", "psum")
MEMORY_COMPONENTS = ("mem_main", "mem_global_buffer", "mem_bank_buffer")
COMPUTE_COMPONENTS = DCIM_COMPONENTS + BPBS_COMPONENTS + ("pac_engine", "encoder")

# energy-table entry -> (unit, what one event is)
ENTRY_INFO: dict[str, tuple[str, str]] = {
    "and_gate": ("pJ/AND", "1b x 1b AND in a D-CiM bit-cell"),
    "full_adder": ("pJ/FA op", "one full-adder operation in a column adder tree"),
    "accumulator_bit": ("pJ/bit", "shift-accumulate, per accumulated bit per column-cycle"),
    "bpbs_array": ("pJ/conv", "BP/BS array + drivers, per column conversion"),
    "bpbs_adc": ("pJ/conv", "BP/BS ADC, per column conversion"),
    "bpbs_datapath": ("pJ/conv", "BP/BS near-memory datapath, per column conversion"),
    "pac_op": ("pJ/pair", "PAC engine, per approximated bit-pair term"),
    "encoder_bit": ("pJ/bit", "sparsity encoder, per activation bit counted"),
    "weight_write_bit": ("pJ/bit", "weight bit written into the bank arrays"),
    "psum_bit": ("pJ/bit", "partial-sum accumulation across row tiles, per bit"),
    "leakage_mw": ("mW", "static power"),
}


# --- structure of the D-CiM column --------------------------------------------------------
@lru_cache(maxsize=256)
def adder_tree_full_adders(rows: int) -> int:
    """Full-adder operations of a balanced ripple-adder tree summing `rows` one-bit inputs.

    The root adds two halves of ceil(rows/2) and floor(rows/2) inputs, whose sums need
    bit_length(ceil(rows/2)) bits: that many full adders. For rows = 2^L this is
    2*rows - L - 2 (502 for 256 rows).
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if rows == 1:
        return 0
    hi = (rows + 1) // 2
    return adder_tree_full_adders(hi) + adder_tree_full_adders(rows - hi) + hi.bit_length()


def accumulator_bits(rows: int, xbit: int, wbit: int) -> int:
    """Shift-accumulator width: ceil(log2(rows + 1)) + xbit + wbit."""
    return rows.bit_length() + xbit + wbit


# --- table access ---------------------------------------------------------------------------
def _entry(arch: Arch, name: str, used_by: str) -> float:
    e: EnergyEntry | None = getattr(arch.energy, name, None)
    if e is None:
        raise ConfigError(
            f"{arch.name}: energy.{name} is missing from the energy table, but {used_by} needs it;"
            f" add `{name}: {{value: <{ENTRY_INFO[name][0]}>, source: \"...\"}}` under `energy:`"
            " in the arch YAML"
        )
    return float(e.value)


def _cost(arch: Arch, name: str, count: float, what: str) -> float:
    """count x table value (pJ at vdd_nom); a missing entry only matters when count > 0."""
    if count <= 0:
        return 0.0
    return count * _entry(arch, name, what)


def dcim_column_cycle_pj(arch: Arch) -> dict[str, float]:
    """D-CiM energy of one fully active column-cycle at vdd_nom, by component (pJ)."""
    m = arch.macro
    what = f"a D-CiM column-cycle ({m.rows} rows)"
    return {
        "dcim_and": m.rows * _entry(arch, "and_gate", what),
        "dcim_adder_tree": adder_tree_full_adders(m.rows) * _entry(arch, "full_adder", what),
        "dcim_accumulate": accumulator_bits(m.rows, m.xbit, m.wbit)
        * _entry(arch, "accumulator_bit", what),
    }


def bpbs_conversion_pj(arch: Arch) -> dict[str, float]:
    """BP/BS energy of one column conversion at vdd_nom, by component (pJ)."""
    what = "a BP/BS column conversion"
    return {c: _entry(arch, c, what) for c in BPBS_COMPONENTS}


def components(arch: Arch) -> tuple[str, ...]:
    """Breakdown keys for this chip, in report order."""
    macro = DCIM_COMPONENTS if arch.macro.kind == "bit_serial" else BPBS_COMPONENTS
    return macro + COMMON_COMPONENTS + MEMORY_COMPONENTS + ("leakage",)


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
        out["dcim_and"] = _cost(arch, "and_gate", arc, what)
        tree_per_row = adder_tree_full_adders(m.rows) / m.rows  # tree FA ops per active row
        out["dcim_adder_tree"] = _cost(arch, "full_adder", arc * tree_per_row, what)
        acc = accumulator_bits(m.rows, m.xbit, m.wbit)
        out["dcim_accumulate"] = _cost(
            arch, "accumulator_bit", counts.column_cycles * acc,
            f"{where} ({counts.column_cycles} column-cycles)",
        )
    else:
        conv = counts.bpbs_conversions
        for c in BPBS_COMPONENTS:
            out[c] = _cost(arch, c, conv, f"{where} ({conv} column conversions)")
    out["pac_engine"] = _cost(arch, "pac_op", counts.pac_ops, f"{where} ({counts.pac_ops} PAC ops)")
    out["encoder"] = _cost(
        arch, "encoder_bit", counts.encoder_bits, f"{where} ({counts.encoder_bits} encoder bits)"
    )
    out["weight_write"] = _cost(
        arch, "weight_write_bit", counts.weight_bits_written,
        f"{where} ({counts.weight_bits_written} weight bits written)",
    )
    out["psum"] = _cost(
        arch, "psum_bit", counts.psum_bits, f"{where} ({counts.psum_bits} psum bits)"
    )
    for k in out:  # everything so far is on-die logic: (vdd / vdd_nom)^2
        out[k] *= dyn
    for level, lv in arch.memory.levels().items():
        rd = sum(counts.reads_bits.get(level, {}).values())
        wr = sum(counts.writes_bits.get(level, {}).values())
        e = rd * lv.read_pj_per_bit + wr * lv.write_pj_per_bit
        out[f"mem_{level}"] = e * (dyn if lv.scales_with_vdd else 1.0)
    time_s = layer_time_s(arch, counts)
    if time_s > 0:
        p_mw = _entry(arch, "leakage_mw", f"{where} ({counts.cycles} cycles of leakage)")
        out["leakage"] = p_mw * (t.vdd / t.vdd_nom) * time_s * 1e9  # mW x s = 1e9 pJ
    return out


# --- peak (macro at full utilization, compute only) -----------------------------------------
def default_digital_cycles(arch: Arch) -> float:
    """Digital bit-serial cycles per output without a workload: operand^2 with PAC, else xbit*wbit.

    Dynamic configuration needs a workload's mean (pass mean_digital_cycles).
    """
    m = arch.macro
    if arch.pac.enabled:
        return float(min(arch.pac.operand, m.wbit) * min(arch.pac.operand, m.xbit))
    return float(m.wbit * m.xbit)


def pac_products_at(arch: Arch, digital_cycles: float) -> float:
    """PAC-engine count products per output at a (mean) digital cycle count.

    Exact at the configuration's levels (pacim.macro.core.pac_products_by_cycles), linear in
    between for a mean over a dynamic mix.
    """
    m = arch.macro
    table = pac_products_by_cycles(m.xbit, m.wbit, arch.pac.operand)
    xs = sorted(table)
    return float(np.interp(digital_cycles, xs, [table[x] for x in xs]))


def peak_figures(arch: Arch, mean_digital_cycles: float | None = None) -> dict[str, Any]:
    """Peak efficiency and throughput of the macro at full utilization, compute only.

    bit_serial: every bank computes one `rows`-long dot product per column for `cols` columns;
    per vector-tile C = mean_digital_cycles digital cycles (D-CiM), pac_products_at(C) count
    products per column (PAC engine), rows*xbit activation bits counted (sparsity encoder).
    bp_bs: every step converts all weight columns; a multi-bit MAC takes xbit steps.
    Ops are 2 per MAC at the configured precision; *_1b figures multiply by wbit*xbit.
    peak_digital_cycles is C (bit_serial) or the xbit array steps per MAC (bp_bs).
    """
    m, t = arch.macro, arch.technology
    dyn, f = t.dynamic_scale, t.freq_hz
    bb = m.wbit * m.xbit
    parts: dict[str, float] = {}
    if m.kind == "bit_serial":
        c = default_digital_cycles(arch) if mean_digital_cycles is None else mean_digital_cycles
        c = float(c)
        if not 0 < c <= bb:
            raise ValueError(f"mean_digital_cycles must be in (0, {bb}], got {c}")
        if not arch.pac.enabled:
            c = float(bb)  # exact: every pair runs in the banks
        for k, v in dcim_column_cycle_pj(arch).items():
            parts[k] = m.cols * c * v
        if arch.pac.enabled:
            parts["pac_engine"] = m.cols * pac_products_at(arch, c) * _entry(
                arch, "pac_op", "the PAC engine")
        if arch.pac.enabled and arch.pac.sparsity_encoder:
            parts["encoder"] = m.rows * m.xbit * _entry(arch, "encoder_bit", "the encoder")
        ops = 2.0 * m.rows * m.cols  # per bank and vector-tile
        step_s = c * m.cycles_per_step / f
    else:
        c = float(m.xbit)
        wcols = (m.cols // m.wbit) * m.wbit  # columns holding weight bits
        for k, v in bpbs_conversion_pj(arch).items():
            parts[k] = wcols * v
        ops = 2.0 * m.rows * (m.cols // m.wbit) / m.xbit  # per bank and step
        step_s = m.cycles_per_step / f
    energy = sum(parts.values()) * dyn
    tops_w = ops / energy  # ops / pJ = TOPS/W
    tops = m.banks * ops / step_s / 1e12
    return {
        "peak_tops_per_w": tops_w,
        "peak_throughput_tops": tops,
        "peak_tops_per_w_1b": tops_w * bb,
        "peak_throughput_tops_1b": tops * bb,
        "peak_digital_cycles": c,
        "peak_energy_per_mac_pj": 2.0 * energy / ops,
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


# --- the table, for `pacim energy` ----------------------------------------------------------
def energy_table(arch: Arch) -> list[dict[str, Any]]:
    """Rows (component, value at the operating vdd, unit, source, calibrated) of the table."""
    t = arch.technology
    dyn = t.dynamic_scale
    rows: list[dict[str, Any]] = []
    for name, (unit, _) in ENTRY_INFO.items():
        e: EnergyEntry | None = getattr(arch.energy, name, None)
        if e is None:
            continue
        scale = t.vdd / t.vdd_nom if name == "leakage_mw" else dyn
        rows.append({"component": name, "value": e.value * scale, "unit": unit,
                     "source": e.source, "calibrated": e.calibrated})
    for level, lv in arch.memory.levels().items():
        s = dyn if lv.scales_with_vdd else 1.0
        rows.append({"component": f"mem_{level}.read", "value": lv.read_pj_per_bit * s,
                     "unit": "pJ/bit", "source": lv.source, "calibrated": False})
        rows.append({"component": f"mem_{level}.write", "value": lv.write_pj_per_bit * s,
                     "unit": "pJ/bit", "source": "see read", "calibrated": False})
    try:
        if arch.macro.kind == "bit_serial":
            v = sum(dcim_column_cycle_pj(arch).values()) * dyn
            m = arch.macro
            src = (f"derived: {m.rows} AND + {adder_tree_full_adders(m.rows)} FA + "
                   f"{accumulator_bits(m.rows, m.xbit, m.wbit)} accumulator bits")
            rows.append({"component": "dcim_column_cycle", "value": v, "unit": "pJ",
                         "source": src, "calibrated": False})
        else:
            v = sum(bpbs_conversion_pj(arch).values()) * dyn
            rows.append({"component": "bpbs_conversion", "value": v, "unit": "pJ",
                         "source": "derived: array + ADC + datapath", "calibrated": False})
    except ConfigError:
        pass  # an incomplete table still prints; simulate reports the missing entry
    return rows


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def format_energy_table(arch: Arch, width: int = 100) -> str:
    """The energy table as aligned text; sources wrap onto indented lines within `width`."""
    rows = energy_table(arch)
    head = ("component", "value", "unit", "cal")
    cells = [(r["component"], _fmt(r["value"]), r["unit"], "yes" if r["calibrated"] else "")
             for r in rows]
    w = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(4)]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:>{w[1]}}  {head[2]:<{w[2]}}  {head[3]:<{w[3]}}  source"]
    for c, r in zip(cells, rows, strict=True):
        left = f"{c[0]:<{w[0]}}  {c[1]:>{w[1]}}  {c[2]:<{w[2]}}  {c[3]:<{w[3]}}  "
        wrapped = textwrap.wrap(r["source"] or "-", max(width - len(left), 30)) or ["-"]
        lines.append(left + wrapped[0])
        lines.extend(" " * len(left) + more for more in wrapped[1:])
    return "\n".join(lines)


def energy_command_text(arch: Arch, mean_digital_cycles: float | None = None) -> str:
    """What `pacim energy --arch FILE` prints: operating point, table, peak figures."""
    t, m = arch.technology, arch.macro
    head = (f"{arch.name}: {m.kind} {m.banks}x{m.rows}x{m.cols}, {m.wbit}b/{m.xbit}b, "
            f"{t.node_nm:g} nm at {t.vdd:g} V (table at {t.vdd_nom:g} V, dynamic x"
            f"{t.dynamic_scale:.3f}), clock {t.freq_hz / 1e6:.4g} MHz")
    lines = [head, "", format_energy_table(arch), ""]
    try:
        p = peak_figures(arch, mean_digital_cycles)
    except ConfigError as e:
        lines.append(f"peak figures unavailable: {e}")
        return "\n".join(lines)
    when = (f"{p['peak_digital_cycles']:.4g} digital cycles per vector-tile"
            if m.kind == "bit_serial" else f"{m.xbit} array steps per MAC")
    lines.append(
        f"peak (compute only, {when}): "
        f"{p['peak_tops_per_w']:.4g} TOPS/W, {p['peak_throughput_tops']:.4g} TOPS at "
        f"{m.wbit}b/{m.xbit}b; 1b-normalized {p['peak_tops_per_w_1b']:.4g} TOPS/W, "
        f"{p['peak_throughput_tops_1b']:.4g} TOPS"
    )
    if mean_digital_cycles is None and arch.dynamic_thresholds is not None:
        c = PACIM_CALIBRATION_DIGITAL_CYCLES
        pd = peak_figures(arch, c)
        lines.append(
            f"dynamic configuration: the peak depends on the workload's mean digital cycles "
            f"(simulate reports it); at resnet18's {c:.2f}: {pd['peak_tops_per_w']:.4g} "
            f"TOPS/W, {pd['peak_throughput_tops']:.4g} TOPS"
        )
    return "\n".join(lines)


def relative_error(value: float, target: float) -> float:
    """(value - target) / target."""
    return (value - target) / target if target else math.inf
