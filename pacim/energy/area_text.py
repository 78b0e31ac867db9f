"""What `pacim area` (and `pacim energy`) print: the area table at the chip's node with each
value's source, how many units the chip has, their mm^2, the hierarchy and TOPS/mm^2."""

from __future__ import annotations

import textwrap
from typing import Any

from ..arch import Arch, AreaEntry
from ..errors import ConfigError
from .area import (
    AREA_ENTRY_INFO,
    BUFFER_LEVELS,
    FACTOR_INFO,
    area_counts,
    chip_area,
    node_scale,
)
from .model import PACIM_CALIBRATION_DIGITAL_CYCLES, peak_figures

# table entry -> (breakdown component, AreaCounts field, per bank?)
_USE: dict[str, tuple[str, str, bool]] = {
    "bitcell": ("bitcells", "bitcells", True),
    "full_adder": ("adder_tree", "full_adders", True),
    "accumulator_bit": ("accumulator", "accumulator_bits", True),
    "adc": ("adc", "adcs", True),
    "driver": ("drivers", "drivers", True),
    "pac_unit": ("pac_engine", "pac_units", False),
    "encoder_lane": ("encoder", "encoder_lanes", False),
    "count_bit": ("count_storage", "count_bits", False),
    "datapath": ("datapath", "datapath_outputs", False),
    "input_gating": ("input_gating", "gated_rows", False),
}


def area_table(arch: Arch) -> list[dict[str, Any]]:
    """Rows (entry, value at the chip's node, unit, count, mm2, calibrated, source)."""
    if arch.area is None:
        return []
    c = area_counts(arch)
    try:
        a = chip_area(arch)
        mm2 = a.breakdown_mm2 if a is not None else {}
    except ConfigError:  # an incomplete table still prints; simulate names the missing entry
        mm2 = {}
    s = node_scale(arch)
    rows: list[dict[str, Any]] = []
    for name, (unit, _) in AREA_ENTRY_INFO.items():
        e: AreaEntry | None = getattr(arch.area, name)
        if e is None:
            continue
        comp, field, per_bank = _USE[name]
        n = getattr(c, field) * (c.banks if per_bank else 1)
        rows.append({"entry": name, "value": e.value * s, "unit": unit, "count": n,
                     "mm2": mm2.get(comp) if n else 0.0, "calibrated": e.calibrated,
                     "source": e.source})
    for lv in BUFFER_LEVELS:
        e = getattr(arch.area.buffers, lv)
        if e is not None:
            rows.append({"entry": f"buffers.{lv}", "value": e.value * s, "unit": "um2/KiB",
                         "count": c.buffer_kib[lv], "mm2": mm2.get(f"buf_{lv}"),
                         "calibrated": e.calibrated, "source": e.source})
    for name in FACTOR_INFO:
        e = getattr(arch.area, name)
        if e is not None:
            rows.append({"entry": name, "value": e.value, "unit": "factor", "count": None,
                         "mm2": mm2.get("periphery") if name == "periphery_overhead" else None,
                         "calibrated": e.calibrated, "source": e.source})
    return rows


def _num(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return format(v, spec)


def format_area_table(arch: Arch, width: int = 110) -> str:
    """The area table as aligned text; sources wrap onto indented lines within `width`."""
    rows = area_table(arch)
    if not rows:
        return f"{arch.name}: no area table (add an `area:` section, see docs/AREA.md)"
    head = ("entry", "value", "unit", "count", "mm2", "cal")
    cells = [(r["entry"], _num(r["value"], ".5g"), r["unit"], _num(r["count"]),
              _num(r["mm2"]) if r["count"] != 0 else "unused", "yes" if r["calibrated"] else "")
             for r in rows]
    w = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(6)]
    right = (False, True, False, True, True, False)

    def line(c: tuple[str, ...]) -> str:
        return "  ".join(f"{c[i]:>{w[i]}}" if right[i] else f"{c[i]:<{w[i]}}"
                         for i in range(6)) + "  "

    out = [line(head) + "source"]
    for c, r in zip(cells, rows, strict=True):
        left = line(c)
        wrapped = textwrap.wrap(r["source"] or "-", max(width - len(left), 30)) or ["-"]
        out.append(left + wrapped[0])
        out.extend(" " * len(left) + more for more in wrapped[1:])
    return "\n".join(out)


def area_command_text(arch: Arch, mean_digital_cycles: float | None = None) -> str:
    """What `pacim area --arch FILE` prints: table, hierarchy, peak TOPS/mm^2."""
    t, m = arch.technology, arch.macro
    lines = [f"{arch.name}: area at {t.node_nm:g} nm (table at "
             f"{arch.area.node_nm if arch.area else 65:g} nm, x{node_scale(arch):.4g}), "
             f"{m.banks} banks of {m.rows} x {m.cols}", "", format_area_table(arch)]
    if arch.area is None:
        return "\n".join(lines)
    try:
        a = chip_area(arch)
    except ConfigError as e:
        lines += ["", f"area unavailable: {e}"]
        return "\n".join(lines)
    assert a is not None
    bufs = ", ".join(f"{lv} {v:.4g}" for lv, v in a.buffers_mm2.items()) or "none on die"
    lines += ["", f"bank {a.bank_mm2:.4g} mm2 x {m.banks} = bank group {a.bank_group_mm2:.4g}"
              f" mm2; macro (MAC hardware) {a.macro_mm2:.4g} mm2",
              f"chip logic {a.chip_logic_mm2:.4g} mm2; buffers {bufs}; chip {a.chip_mm2:.4g} mm2"]
    bb = m.wbit * m.xbit
    try:
        cases = [(mean_digital_cycles, peak_figures(arch, mean_digital_cycles))]
        if mean_digital_cycles is None and arch.dynamic_thresholds is not None:
            c = PACIM_CALIBRATION_DIGITAL_CYCLES
            cases.append((c, peak_figures(arch, c)))
    except ConfigError as e:
        lines.append(f"peak TOPS/mm2 unavailable: {e}")
        return "\n".join(lines)
    for c, p in cases:
        tops = p["peak_throughput_tops"] / a.macro_mm2
        when = (f"at {p['peak_digital_cycles']:.4g} digital cycles" if m.kind == "bit_serial"
                else f"{m.wbit}b/{m.xbit}b")
        if c is not None and mean_digital_cycles is None:
            when += " (resnet18's)"
        lines.append(f"peak {when}: {tops:.4g} TOPS/mm2 over the macro, 1b-normalized "
                     f"{tops * bb:.4g}")
    return "\n".join(lines)
