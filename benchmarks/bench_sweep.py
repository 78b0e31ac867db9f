"""Issue 7 speed: points/s of a --no-data resnet18 sweep on local workers, 2 vs 1 worker.

Also the sweep machinery alone (a simulate that does nothing) and the workers' CPU time per
point, which, unlike wall-clock figures, does not move when other jobs share the machine.
"""

from __future__ import annotations

import math
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BenchResult, Check
from pacim.arch import load_arch
from pacim.sweeps import default_workers, local_executor, sweep

ARCH = "pacim_65nm"
WORKLOAD = "resnet18"
BASE = {"pac.dynamic": None}  # operand != 4 needs dynamic configuration off


# 240 points of an architect's grid: precision, parallelism, bandwidth, operating point. vdd
# changes the clock and the energy, not the schedule: the sweep groups such points into one task
# and the worker reuses the schedule. The quick 1-worker run times two of the five operands
# (96 points, the same mix of shared schedules).
GRID: dict[str, list[Any]] = {
    "pac.operand": [2, 3, 4, 5, 6],
    "macro.banks": [8, 16, 32, 64],
    "memory.global_buffer.bus_bits": [128, 256, 512],
    "technology.vdd": [0.9, 1.0, 1.1, 1.2],
}


def _noop(arch: Any, workload: str, data: bool, seed: int) -> dict[str, Any]:
    """A simulate that does nothing: measures the sweep machinery alone."""
    return {"arch": arch.name, "workload": workload}


def _timed(workers: int, g: dict[str, list[Any]], tag: str,
           hook: Any = None) -> dict[str, float]:
    """Warm (steady state) points/s with `workers`; startup = pool start + first builds."""
    arch = load_arch(ARCH, BASE)
    forked = threading.active_count() == 1  # local workers are then direct children
    cpu0 = _children_cpu_s()
    with tempfile.TemporaryDirectory() as d:
        ex = local_executor(workers)
        try:
            t0 = time.perf_counter()
            # warm-up: starts the workers and builds the workload once in each
            warm = {"macro.cols": [32, 48, 96, 128][: 2 * workers]}
            sweep(arch, warm, WORKLOAD, data=False, executor=ex)
            t1 = time.perf_counter()
            recs = sweep(arch, g, WORKLOAD, data=False, executor=ex,
                         out=Path(d) / f"{tag}.jsonl", _simulate=hook)
            t2 = time.perf_counter()
        finally:
            ex.shutdown()  # waits for the workers: their CPU time lands in RUSAGE_CHILDREN
    cpu = _children_cpu_s() - cpu0 if forked else math.nan
    n = len(recs)
    bad = [r for r in recs if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} sweep points failed, e.g. {bad[0]['error']}")
    sim = sorted(r["sim_s"] for r in recs)
    return {"points": n, "warm_s": t2 - t1, "startup_s": t1 - t0,
            "points_per_s": n / (t2 - t1), "median_point_ms": 1e3 * sim[n // 2],
            "cpu_ms_per_point": 1e3 * cpu / (n + len(warm["macro.cols"]))}


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(quick: bool = False) -> BenchResult:
    """Sweep >= 200 resnet18 --no-data points on 2 local workers, then on 1."""
    g = GRID
    two = _timed(2, g, "two")
    g1 = dict(g, **{"pac.operand": [2, 4]}) if quick else g  # same structure, 96 points
    one = _timed(1, g1, "one")
    speedup = two["points_per_s"] / one["points_per_s"]
    bare = _timed(2, g, "bare", hook=_noop)
    res = BenchResult("sweep_resnet18_no_data")
    res.figures = {
        "cores": default_workers(),
        "points": two["points"],
        "points_per_s_2_workers": two["points_per_s"],
        "points_per_s_1_worker": one["points_per_s"],
        "speedup_2_over_1": speedup,
        "median_point_ms": two["median_point_ms"],
        # CPU time per point in the workers: with other load on the machine, wall-clock
        # figures drop while this stays put; 2 idle cores would give 2000 / it points/s
        "cpu_ms_per_point": one["cpu_ms_per_point"],
        "idle_2_core_points_per_s": 2e3 / one["cpu_ms_per_point"],
        "wall_s_2_workers": two["warm_s"],
        "startup_s_2_workers": two["startup_s"],
        "points_1_worker": one["points"],
        "sweep_overhead_points_per_s": bare["points_per_s"],
    }
    res.checks = [
        Check("points swept", two["points"], ">=", 200),
        Check("points/s with 2 local workers", two["points_per_s"], ">=", 20.0),
    ]
    # the 2-over-1 speed-up is printed, not checked: on a shared 2-core machine it measures the
    # other load as much as pacim (1.76x measured with one core free, 1.0x with it taken)
    return res
