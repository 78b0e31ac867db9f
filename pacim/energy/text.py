"""What `pacim energy` prints: the table at the operating point with each value's source,
the derived column-cycle or conversion energy, and the peak figures."""

from __future__ import annotations

import textwrap
from typing import Any

from ..arch import Arch, EnergyEntry
from ..errors import ConfigError
from .model import PACIM_CALIBRATION_DIGITAL_CYCLES, peak_figures
from .table import (
    ENTRY_INFO,
    accumulator_bits,
    adder_tree_full_adders,
    bpbs_conversion_pj,
    dcim_column_cycle_pj,
)


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
