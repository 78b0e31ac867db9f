"""Energy: the scheduler's counts x the arch's energy table -> pJ by component, TOPS/W.

table: per-event energies and the D-CiM column structure; model: per layer, peak and whole
workload; text: what `pacim energy` prints. See docs/ENERGY.md.
area: the geometry x the arch's area table -> mm^2 by component, TOPS/mm^2 (docs/AREA.md);
area_text: the area table as `pacim area` / `pacim energy` print it.
"""

from .area import (
    AREA_ENTRY_INFO,
    BANK_COMPONENTS,
    CHIP_COMPONENTS,
    MACRO_COMPONENTS,
    AreaCounts,
    ChipArea,
    area_counts,
    area_report,
    bank_area_um2,
    chip_area,
    layer_area_fields,
    node_scale,
    weight_planes_stored,
)
from .area_text import area_command_text, area_table, format_area_table
from .model import (
    PACIM_CALIBRATION_DIGITAL_CYCLES,
    PACIM_PAPER_DIGITAL_CYCLES,
    energy_report,
    layer_energy,
    layer_time_s,
    peak_energy,
    peak_figures,
    relative_error,
)
from .table import (
    ATTENTION_COMPONENTS,
    BPBS_COMPONENTS,
    COMMON_COMPONENTS,
    COMPUTE_COMPONENTS,
    DCIM_COMPONENTS,
    ENTRY_INFO,
    MEMORY_COMPONENTS,
    accumulator_bits,
    adder_tree_full_adders,
    bpbs_conversion_pj,
    components,
    dcim_column_cycle_pj,
    table_value,
)
from .text import energy_command_text, energy_table, format_energy_table

__all__ = [
    "AREA_ENTRY_INFO",
    "BANK_COMPONENTS",
    "CHIP_COMPONENTS",
    "MACRO_COMPONENTS",
    "AreaCounts",
    "ChipArea",
    "area_command_text",
    "area_counts",
    "area_report",
    "area_table",
    "bank_area_um2",
    "chip_area",
    "format_area_table",
    "layer_area_fields",
    "node_scale",
    "weight_planes_stored",
    "ATTENTION_COMPONENTS",
    "BPBS_COMPONENTS",
    "COMMON_COMPONENTS",
    "COMPUTE_COMPONENTS",
    "DCIM_COMPONENTS",
    "ENTRY_INFO",
    "MEMORY_COMPONENTS",
    "PACIM_CALIBRATION_DIGITAL_CYCLES",
    "PACIM_PAPER_DIGITAL_CYCLES",
    "accumulator_bits",
    "adder_tree_full_adders",
    "bpbs_conversion_pj",
    "components",
    "dcim_column_cycle_pj",
    "energy_command_text",
    "energy_report",
    "energy_table",
    "format_energy_table",
    "layer_energy",
    "layer_time_s",
    "peak_energy",
    "peak_figures",
    "relative_error",
    "table_value",
]
