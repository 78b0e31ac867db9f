"""Silicon area: the chip's geometry x the arch's area table -> mm^2 by component, TOPS/mm^2.

Like the energy model, this only multiplies counts by table values (arch.area, um^2 per unit
at area.node_nm, each with its source); the counts come from the geometry alone (macro, pac,
memory sizes), never from a workload. Areas scale to technology.node_nm by
(technology.node_nm / area.node_nm)^2, the rule the sources' own node conversions use.

The chip is, bottom up:

- a **bank**: bit-cells (rows x cols x stored weight planes for bit_serial, rows x cols for
  bp_bs), the D-CiM column logic (an adder tree of 2*rows - log2(rows) - 2 full adders and a
  shift-accumulator per column) or the BP/BS ADCs (cols / columns_per_adc), line drivers
  (rows + cols, when the table has them), and the periphery overhead (a fraction of the
  rest); bank_scale multiplies all of it;
- the **bank group**: macro.banks banks;
- the **macro**: the bank group plus PAC's logic (the engine's count-product units, the
  sparsity encoder's lanes and the column counts S_w beside the engine);
- **chip logic** outside the macro: a near-memory datapath per output, input zero-gating per
  row (both optional);
- **buffers**: size_kib x um^2/KiB per on-die memory level (bank buffers once per bank).

`area_mm2` is the chip; the peak TOPS/mm^2 is over the macro (the MAC hardware). See
docs/AREA.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..arch import Arch, AreaEntry, AreaTable
from ..errors import ConfigError
from ..sched.mapping import precision
from .table import accumulator_bits, adder_tree_full_adders

# area-table entry -> (unit, what one unit is)
AREA_ENTRY_INFO: dict[str, tuple[str, str]] = {
    "bitcell": ("um2/cell", "one weight bit-cell of a bank, with its compute port"),
    "full_adder": ("um2/FA", "one full adder of a D-CiM column adder tree"),
    "accumulator_bit": ("um2/bit", "one bit of a column shift-accumulator (adder + register)"),
    "adc": ("um2/ADC", "one column ADC"),
    "driver": ("um2/line", "one row or column line driver"),
    "pac_unit": ("um2/unit", "one PAC-engine count-product unit (multiply + add)"),
    "encoder_lane": ("um2/lane", "sparsity encoder, per activation bit counted per cycle"),
    "count_bit": ("um2/bit", "one stored bit of a weight-plane column count S_w"),
    "datapath": ("um2/output", "near-memory datapath, per macro output"),
    "input_gating": ("um2/row", "input zero-gating (sparsity controller), per row"),
}
FACTOR_INFO: dict[str, str] = {
    "periphery_overhead": "bank periphery (decoders, drivers, control) / bank logic",
    "bank_scale": "common factor on every bank component",
}
# breakdown components: one bank's, PAC's logic in the macro, chip logic, buffers
BANK_COMPONENTS = ("bitcells", "adder_tree", "accumulator", "adc", "drivers", "periphery")
MACRO_COMPONENTS = ("pac_engine", "encoder", "count_storage")
CHIP_COMPONENTS = ("datapath", "input_gating")
BUFFER_LEVELS = ("main", "global_buffer", "bank_buffer")

_UM2_PER_MM2 = 1e6


@dataclass(frozen=True)
class AreaCounts:
    """How many of each table unit the chip has (from its geometry)."""

    banks: int
    bitcells: int  # per bank
    full_adders: int  # per bank
    accumulator_bits: int  # per bank
    adcs: int  # per bank
    drivers: int  # per bank (rows + cols)
    pac_units: int
    encoder_lanes: int
    count_bits: int
    datapath_outputs: int
    gated_rows: int
    buffer_kib: dict[str, float]  # on-die KiB per level (bank buffers: all banks)


def weight_planes_stored(arch: Arch) -> int:
    """Weight bit-planes a bit_serial bank stores per row x column.

    area.weight_planes when set; else wbit when a layer can run exact (PAC off, or
    pac.first_layer_exact), else the planes PAC keeps, min(pac.operand, wbit)."""
    m, p = arch.macro, arch.pac
    if arch.area is not None and arch.area.weight_planes is not None:
        return arch.area.weight_planes
    if not p.enabled or p.first_layer_exact:
        return m.wbit
    return min(p.operand, m.wbit)


def area_counts(arch: Arch) -> AreaCounts:
    """Units of every table entry on the chip, from the geometry only."""
    m, p = arch.macro, arch.pac
    table = arch.area or AreaTable()
    serial = m.kind == "bit_serial"
    outputs = m.cols if serial else -(-m.cols // table.columns_per_adc)
    pac_counts = p.enabled and serial
    w_count_planes = precision(arch, exact=False).w_count_planes if pac_counts else 0
    kib = {lv: level.size_kib * (m.banks if lv == "bank_buffer" else 1)
           for lv, level in arch.memory.levels().items()}
    return AreaCounts(
        banks=m.banks,
        bitcells=m.rows * m.cols * (weight_planes_stored(arch) if serial else 1),
        full_adders=m.cols * adder_tree_full_adders(m.rows) if serial else 0,
        accumulator_bits=m.cols * accumulator_bits(m.rows, m.xbit, m.wbit) if serial else 0,
        adcs=0 if serial else outputs,
        drivers=m.rows + m.cols,
        pac_units=math.ceil(p.engine_ops_per_cycle) if w_count_planes else 0,
        encoder_lanes=math.ceil(p.encoder_bits_per_cycle)
        if pac_counts and p.sparsity_encoder else 0,
        count_bits=m.banks * m.cols * w_count_planes * table.count_bits,
        datapath_outputs=m.banks * outputs,
        gated_rows=m.banks * m.rows,
        buffer_kib=kib,
    )


def node_scale(arch: Arch) -> float:
    """(technology.node_nm / area.node_nm)^2: the table's um^2 at the chip's node."""
    table = arch.area or AreaTable()
    return (arch.technology.node_nm / table.node_nm) ** 2


def _entry(arch: Arch, name: str) -> AreaEntry | None:
    table = arch.area
    if table is None:
        return None
    if name.startswith("buffers."):
        return getattr(table.buffers, name.split(".", 1)[1])
    return getattr(table, name)


def _cost(arch: Arch, name: str, count: float, what: str, required: bool = True) -> float:
    """count x the entry's um^2 at the chip's node; a missing required entry matters only
    when count > 0 (one ConfigError naming it)."""
    if count <= 0:
        return 0.0
    e = _entry(arch, name)
    if e is None:
        if not required:
            return 0.0
        unit = AREA_ENTRY_INFO.get(name, ("um2/KiB", ""))[0]
        raise ConfigError(
            f"{arch.name}: area.{name} is missing from the area table, but {what} needs it; "
            f"add `{name.split('.')[-1]}: {{value: <{unit}>, source: \"...\"}}` under "
            f"`area:{' buffers:' if name.startswith('buffers.') else ''}` in the arch YAML")
    return count * e.value * node_scale(arch)


def _factor(arch: Arch, name: str, default: float) -> float:
    e = _entry(arch, name)
    return default if e is None else float(e.value)


def bank_area_um2(arch: Arch, counts: AreaCounts | None = None) -> dict[str, float]:
    """One bank's area by component (um^2 at the chip's node), bank_scale applied."""
    c = counts or area_counts(arch)
    m = arch.macro
    where = f"a {m.kind} bank ({m.rows} x {m.cols})"
    serial = m.kind == "bit_serial"
    out = dict.fromkeys(BANK_COMPONENTS, 0.0)
    out["bitcells"] = _cost(arch, "bitcell", c.bitcells, f"{where} ({c.bitcells} bit-cells)")
    out["adder_tree"] = _cost(arch, "full_adder", c.full_adders,
                              f"{where} ({c.full_adders} adder-tree full adders)")
    out["accumulator"] = _cost(arch, "accumulator_bit", c.accumulator_bits,
                               f"{where} ({c.accumulator_bits} accumulator bits)")
    out["adc"] = _cost(arch, "adc", c.adcs, f"{where} ({c.adcs} ADCs)")
    out["drivers"] = _cost(arch, "driver", c.drivers, f"{where} ({c.drivers} line drivers)",
                           required=not serial)  # D-CiM drivers sit in the periphery overhead
    out["periphery"] = _factor(arch, "periphery_overhead", 0.0) * sum(out.values())
    scale = _factor(arch, "bank_scale", 1.0)
    return {k: v * scale for k, v in out.items()}


@dataclass(frozen=True)
class ChipArea:
    """Area of the chip, bottom up (mm^2)."""

    breakdown_mm2: dict[str, float]  # sums to chip_mm2
    bank_mm2: float
    bank_group_mm2: float
    macro_mm2: float
    chip_logic_mm2: float
    buffers_mm2: dict[str, float]
    chip_mm2: float

    def hierarchy(self) -> dict[str, Any]:
        """Report form: bank, bank group, macro, chip logic, buffers by level, chip."""
        return {"bank": self.bank_mm2, "bank_group": self.bank_group_mm2,
                "macro": self.macro_mm2, "chip_logic": self.chip_logic_mm2,
                "buffers": dict(self.buffers_mm2), "chip": self.chip_mm2}


def chip_area(arch: Arch) -> ChipArea | None:
    """The chip's area from its geometry and area table; None when the arch has no table."""
    if arch.area is None:
        return None
    c = area_counts(arch)
    bank = bank_area_um2(arch, c)
    p = arch.pac
    mm2: dict[str, float] = {k: c.banks * v / _UM2_PER_MM2 for k, v in bank.items()}
    macro = {
        "pac_engine": _cost(arch, "pac_unit", c.pac_units,
                            f"the PAC engine ({c.pac_units} count-product units)"),
        "encoder": _cost(arch, "encoder_lane", c.encoder_lanes,
                         f"the sparsity encoder ({p.encoder_bits_per_cycle:g} bits/cycle)"),
        "count_storage": _cost(arch, "count_bit", c.count_bits,
                               f"the PAC column counts ({c.count_bits} bits)"),
    }
    chip_logic = {
        "datapath": _cost(arch, "datapath", c.datapath_outputs, "", required=False),
        "input_gating": _cost(arch, "input_gating", c.gated_rows, "", required=False),
    }
    buffers = {lv: _cost(arch, f"buffers.{lv}", kib, "", required=False) / _UM2_PER_MM2
               for lv, kib in c.buffer_kib.items()
               if _entry(arch, f"buffers.{lv}") is not None}  # no entry: not on the die
    mm2.update({k: v / _UM2_PER_MM2 for k, v in {**macro, **chip_logic}.items()})
    mm2.update({f"buf_{lv}": v for lv, v in buffers.items()})
    bank_mm2 = sum(bank.values()) / _UM2_PER_MM2
    group = c.banks * bank_mm2
    macro_mm2 = group + sum(macro.values()) / _UM2_PER_MM2
    return ChipArea(
        breakdown_mm2=mm2,
        bank_mm2=bank_mm2,
        bank_group_mm2=group,
        macro_mm2=macro_mm2,
        chip_logic_mm2=sum(chip_logic.values()) / _UM2_PER_MM2,
        buffers_mm2=buffers,
        chip_mm2=sum(mm2.values()),
    )


def _per_mm2(tops: Any, mm2: float | None) -> float | None:
    if mm2 is None or mm2 <= 0 or not isinstance(tops, (int, float)):
        return None
    return float(tops) / mm2


def area_report(arch: Arch, figures: Mapping[str, Any]) -> dict[str, Any]:
    """Report keys of the chip's area, from an energy report's throughputs (None without a
    table): area_mm2, area_breakdown_mm2 (sums to it), area_hierarchy_mm2, tops_per_mm2
    (workload throughput / chip) and peak_tops_per_mm2 (peak throughput / macro), with *_1b."""
    a = chip_area(arch)
    bb = arch.macro.wbit * arch.macro.xbit
    chip = None if a is None else a.chip_mm2
    macro = None if a is None else a.macro_mm2
    tops = _per_mm2(figures.get("throughput_tops"), chip)
    peak = _per_mm2(figures.get("peak_throughput_tops"), macro)
    return {
        "area_mm2": chip,
        "area_breakdown_mm2": None if a is None else a.breakdown_mm2,
        "area_hierarchy_mm2": None if a is None else a.hierarchy(),
        "tops_per_mm2": tops,
        "tops_per_mm2_1b": None if tops is None else tops * bb,
        "peak_tops_per_mm2": peak,
        "peak_tops_per_mm2_1b": None if peak is None else peak * bb,
    }


def layer_area_fields(arch: Arch, layer: Mapping[str, Any], chip_mm2: float | None
                      ) -> dict[str, Any]:
    """Per-layer CSV fields: the chip's area and the layer's throughput over it."""
    cycles = layer.get("cycles")
    if chip_mm2 is None or not cycles:
        return {}
    tops = 2.0 * layer["macs"] * arch.technology.freq_hz / cycles / 1e12
    return {"area_mm2": chip_mm2, "tops_per_mm2": tops / chip_mm2}
