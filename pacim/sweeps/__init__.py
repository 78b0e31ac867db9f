"""Parameter sweeps: a loop (or a Dask map) over `simulate`, resumable through a JSONL file.

grid: expansion and point keys; worker: one point -> one flat record; run: executors (local
processes, any concurrent.futures.Executor, Dask) and the sweep loop; store: the JSONL file;
pareto: reading records; plots: `pacim plot` on a sweep (matplotlib, imported when used).

The package is `sweeps`, not `sweep`: a subpackage `pacim.sweep` would replace the public
function `pacim.sweep` as an attribute of `pacim` as soon as it is imported.
"""

from .grid import Point, expand_grid, make_points, parse_grid_option, point_key, split_values
from .pareto import (
    PARETO_FIELD,
    PARETO_OBJECTIVES,
    field_value,
    mark_pareto,
    pareto_front,
    pareto_front_nd,
)
from .run import (
    SerialExecutor,
    dask_client,
    default_workers,
    is_dask_client,
    local_executor,
    shutdown_executor,
    sweep,
)
from .store import Store, check_store_path, iter_records, read_records
from .worker import METRICS, cached_workload, group_tasks, headline, run_point, run_points

__all__ = [
    "METRICS",
    "PARETO_FIELD",
    "PARETO_OBJECTIVES",
    "Point",
    "SerialExecutor",
    "Store",
    "cached_workload",
    "check_store_path",
    "dask_client",
    "default_workers",
    "expand_grid",
    "field_value",
    "group_tasks",
    "headline",
    "is_dask_client",
    "iter_records",
    "local_executor",
    "make_points",
    "mark_pareto",
    "pareto_front",
    "pareto_front_nd",
    "parse_grid_option",
    "point_key",
    "read_records",
    "run_point",
    "run_points",
    "shutdown_executor",
    "split_values",
    "sweep",
]
