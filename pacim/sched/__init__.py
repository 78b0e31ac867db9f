"""Cycle-level scheduler: weight-stationary mapping, events on banks, buses and engines.

`schedule(arch, workload, stats)` -> one LayerCounts per mapped layer, and
`peak_counts(arch, C)` -> the counts of the macro at full utilization: the energy model's only
inputs. `summarize(counts)` -> totals for the report. See docs/SCHEDULER.md.
"""

from .attention import (
    KV_KIND,
    PERIPHERY_OPS,
    attention_counts,
    check_kv_home,
    kv_bits,
    periphery_counts,
)
from .counts import DATA_KINDS, LEVELS, LayerCounts, combine, empty_traffic, summarize
from .engine import Engine, Resource, Task
from .layer import DEFAULT_BATCH, STALL_CAUSES, schedule_layer
from .mapping import (
    Mapping,
    Pass,
    Precision,
    Tile,
    layer_arch,
    layer_is_exact,
    map_layer,
    precision,
)
from .peak import PeakCounts, default_digital_cycles, peak_counts
from .scheduler import schedule, schedule_signature
from .steady import Steady
from .timing import DEFAULT_NO_DATA, digital_cycles, pac_products, pac_products_at
from .trace import TRACE_COLUMNS, TraceWriter, write_trace
from .vectors import window_reuse

__all__ = [
    "DATA_KINDS",
    "KV_KIND",
    "PERIPHERY_OPS",
    "DEFAULT_BATCH",
    "DEFAULT_NO_DATA",
    "LEVELS",
    "STALL_CAUSES",
    "TRACE_COLUMNS",
    "Engine",
    "LayerCounts",
    "Mapping",
    "PeakCounts",
    "Pass",
    "Precision",
    "Resource",
    "Steady",
    "Task",
    "attention_counts",
    "combine",
    "check_kv_home",
    "kv_bits",
    "periphery_counts",
    "Tile",
    "TraceWriter",
    "default_digital_cycles",
    "digital_cycles",
    "empty_traffic",
    "layer_arch",
    "layer_is_exact",
    "map_layer",
    "pac_products",
    "pac_products_at",
    "peak_counts",
    "precision",
    "schedule",
    "schedule_layer",
    "schedule_signature",
    "summarize",
    "window_reuse",
    "write_trace",
]
