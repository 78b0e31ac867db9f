"""Issue 3 speed: simulate resnet18 (with data, and --no-data) vs a plain numpy forward pass.

The targets (<= 5 s with data, <= 0.2 s without) are absolute on this 2-core machine; the checks
are ratios to the float forward pass of the same network measured in the same run
(0.21 s here on a quiet machine), so a loaded or faster machine moves both alike:
5 s / 0.21 s -> 24x, 0.2 s / 0.21 s -> 0.95x.
"""

from __future__ import annotations

from benchmarks.common import BenchResult, Check, best_of
from pacim.arch import load_arch
from pacim.pipeline import simulate
from pacim.sched.scheduler import _SCHEDULE_CACHE
from pacim.workloads import load_workload
from pacim.workloads.resnet import resnet18_forward

DATA_RATIO_LIMIT = 24.0  # 5 s target / 0.21 s numpy forward measured on this machine
NODATA_RATIO_LIMIT = 0.95  # 0.2 s target / 0.21 s


def run(quick: bool = False) -> BenchResult:
    """Time build+simulate with data, simulate --no-data, and the numpy forward."""
    arch = load_arch("pacim_65nm")
    wl = load_workload("resnet18")
    x = wl.layers[0].x
    simulate(arch, wl)  # warm numba and caches
    t = best_of(
        {
            "numpy_forward": lambda: resnet18_forward(wl, x),
            "simulate_data": lambda: simulate(arch, load_workload("resnet18")),
            # a cold schedule: the shapes-only schedule cache would otherwise answer
            "simulate_no_data": lambda: (_SCHEDULE_CACHE.clear(),
                                         simulate(arch, "resnet18", data=False)),
        },
        repeat=2 if quick else 4,
    )
    res = BenchResult("simulate_resnet18")
    res.figures = {
        "numpy_forward_s": t["numpy_forward"],
        "simulate_data_s": t["simulate_data"],
        "simulate_no_data_s": t["simulate_no_data"],
        "data_over_forward": t["simulate_data"] / t["numpy_forward"],
        "no_data_over_forward": t["simulate_no_data"] / t["numpy_forward"],
        "gmac_per_s_with_data": wl.macs / t["simulate_data"] / 1e9,
    }
    res.checks = [
        Check("simulate resnet18 with data (build included) / numpy forward",
              res.figures["data_over_forward"], "<=", DATA_RATIO_LIMIT),
        Check("simulate resnet18 --no-data / numpy forward",
              res.figures["no_data_over_forward"], "<=", NODATA_RATIO_LIMIT),
    ]
    return res
