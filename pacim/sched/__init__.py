"""Cycle-level scheduler: weight-stationary mapping, events on banks, buses and engines.

`schedule(arch, workload, stats)` -> one LayerCounts per mapped layer (the energy model's
only input); `summarize(counts)` -> totals for the report. See docs/SCHEDULER.md.
"""

from .counts import DATA_KINDS, LEVELS, LayerCounts, empty_traffic
from .engine import Engine, Resource, Task
from .mapping import Mapping, Pass, Precision, Tile, map_layer, precision, window_reuse
from .scheduler import (
    DEFAULT_BATCH,
    STALL_CAUSES,
    TRACE_COLUMNS,
    layer_is_exact,
    schedule,
    schedule_layer,
    summarize,
    write_trace,
)
from .timing import DEFAULT_NO_DATA, digital_cycles

__all__ = [
    "DATA_KINDS",
    "DEFAULT_BATCH",
    "DEFAULT_NO_DATA",
    "LEVELS",
    "STALL_CAUSES",
    "TRACE_COLUMNS",
    "Engine",
    "LayerCounts",
    "Mapping",
    "Pass",
    "Precision",
    "Resource",
    "Task",
    "Tile",
    "digital_cycles",
    "empty_traffic",
    "layer_is_exact",
    "map_layer",
    "precision",
    "schedule",
    "schedule_layer",
    "summarize",
    "window_reuse",
    "write_trace",
]
