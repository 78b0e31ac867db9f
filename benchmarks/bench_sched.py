"""Issue 4: scheduler speed on ResNet-18 and the PACiM vs D-CiM cycle and memory figures.
Issue 15: steady-state extrapolation (llm-layer at 4096 tokens, extrapolated vs every event
simulated, same counts) and work that does not grow with the events (10^6 tokens, a
10^9-channel conv), as ratios to the resnet18 schedule timed in the same run."""

from __future__ import annotations

from typing import Any

from benchmarks.common import BenchResult, Check, best_of
from pacim.arch import load_arch
from pacim.sched import schedule, summarize
from pacim.workloads import load_workload
from pacim.workloads.ir import Workload, conv_layer
from pacim.workloads.resnet import build_resnet18, resnet18_forward


def resnet18(first_exact: bool = True) -> Workload:
    """The built-in resnet18, shapes only."""
    return build_resnet18("resnet18", data=False, seed=0, first_layer_exact=first_exact)


def _mem(s: dict[str, Any], level: str | None = None) -> int:
    m = s["memory"]
    if level is None:
        return m["reads_bits"] + m["writes_bits"]
    lv = m["by_level"][level]
    return lv["reads_bits"] + lv["writes_bits"]


def run(quick: bool = False) -> BenchResult:
    """Time the whole resnet18 schedule (pacim, dcim, 2x workload) and report the reductions."""
    wl = resnet18()
    wl2 = Workload("resnet18x2", wl.layers + wl.layers)
    pacim, dcim = load_arch("pacim_65nm"), load_arch("dcim_65nm")
    static = load_arch("pacim_65nm", {"pac.dynamic": None})
    static_all = load_arch("pacim_65nm", {"pac.dynamic": None, "pac.first_layer_exact": False})
    fast_pac = load_arch("pacim_65nm", {"pac.engine_ops_per_cycle": 4096})
    schedule(pacim, wl)  # warm imports / numpy paths
    data_wl = load_workload("resnet18")
    x = data_wl.layers[0].x
    llm4k = load_workload("llm-layer", data=False, tokens=4096)
    llm1m = load_workload("llm-layer", data=False, tokens=10**6)
    huge = Workload("huge", (conv_layer("c", (1, 10**9, 32, 32), 64, 3, 1, 1),))
    t = best_of(
        {
            "numpy_forward": lambda: resnet18_forward(data_wl, x),
            "dcim": lambda: schedule(dcim, wl, cache=False),
            "llm4k_full": lambda: schedule(pacim, llm4k, cache=False, steady=False),
            "llm4k": lambda: schedule(pacim, llm4k, cache=False),
            "llm1m": lambda: schedule(pacim, llm1m, cache=False),
            "huge": lambda: schedule(pacim, huge, cache=False),
        },
        repeat=3 if quick else 7,
    )
    # the scaling pair is cheap (~15 + 30 ms): many interleaved repeats, so one noisy sample on
    # a busy CI machine does not decide the ratio (a 3-repeat quick run once read 2.62)
    t |= best_of({"pacim": lambda: schedule(pacim, wl, cache=False),
                  "pacim_x2": lambda: schedule(pacim, wl2, cache=False)},
                 repeat=15 if quick else 21)
    full = schedule(pacim, llm4k, cache=False, steady=False)
    ext = schedule(pacim, llm4k, cache=False)
    differ = sum(a.to_dict() | {"simulated_events": 0} != b.to_dict() | {"simulated_events": 0}
                 for a, b in zip(full, ext, strict=True))
    c1m, ch = schedule(pacim, llm1m, cache=False), schedule(pacim, huge, cache=False)
    s_p, s_d = summarize(schedule(pacim, wl)), summarize(schedule(dcim, wl))
    s_s = summarize(schedule(static, wl))
    s_sa = summarize(schedule(static_all, resnet18(first_exact=False)))
    s_f = summarize(schedule(fast_pac, wl))
    ev = s_p["events"]
    res = BenchResult("sched_resnet18")
    res.figures = {
        "layers": s_p["layers"],
        "events_pacim": ev,
        "events_dcim": s_d["events"],
        "schedule_s_pacim": t["pacim"],
        "schedule_s_dcim": t["dcim"],
        "us_per_event": t["pacim"] / ev * 1e6,
        "numpy_forward_s": t["numpy_forward"],
        "schedule_over_forward": t["pacim"] / t["numpy_forward"],
        "x2_over_x1": t["pacim_x2"] / t["pacim"],
        "cycles_pacim": s_p["cycles"],
        "cycles_dcim": s_d["cycles"],
        "cycles_pacim_engine4096": s_f["cycles"],
        "cycle_reduction": 1 - s_p["cycles"] / s_d["cycles"],
        "bit_serial_reduction_static": s_s["bit_serial_cycles"]["reduction"],
        "bit_serial_reduction_static_all_pac": s_sa["bit_serial_cycles"]["reduction"],
        "bit_serial_reduction_dynamic_nodata": s_p["bit_serial_cycles"]["reduction"],
        "memory_access_reduction": 1 - _mem(s_p) / _mem(s_d),
        "main_memory_reduction": 1 - _mem(s_p, "main") / _mem(s_d, "main"),
        "global_buffer_reduction": 1 - _mem(s_p, "global_buffer") / _mem(s_d, "global_buffer"),
        "bank_buffer_reduction": 1 - _mem(s_p, "bank_buffer") / _mem(s_d, "bank_buffer"),
        "stalls_pacim": s_p["stall_cycles"],
        "stalls_dcim": s_d["stall_cycles"],
        "llm4k_events": sum(c.events for c in full),
        "llm4k_simulated_events": sum(c.simulated_events for c in ext),
        "llm4k_full_s": t["llm4k_full"],
        "llm4k_steady_s": t["llm4k"],
        "llm4k_steady_speedup": t["llm4k_full"] / t["llm4k"],
        "llm1m_events": sum(c.events for c in c1m),
        "llm1m_simulated_events": sum(c.simulated_events for c in c1m),
        "llm1m_s": t["llm1m"],
        "conv_1e9_channels_events": ch[0].events,
        "conv_1e9_channels_simulated_events": ch[0].simulated_events,
        "conv_1e9_channels_s": t["huge"],
    }
    res.checks = [
        # target <= 1 s warm; as a ratio to the numpy forward of resnet18 (0.21 s on a quiet
        # machine here) measured in the same run: 1 s / 0.21 s = 4.8
        Check("resnet18 schedule / numpy forward", t["pacim"] / t["numpy_forward"], "<=", 4.8),
        Check("2x workload / 1x time", t["pacim_x2"] / t["pacim"], "<=", 2.6),
        Check("bit-serial reduction, static, all PAC layers",
              s_sa["bit_serial_cycles"]["reduction"], ">=", 0.7499),
        Check("dynamic reduction - static reduction",
              s_p["bit_serial_cycles"]["reduction"] - s_s["bit_serial_cycles"]["reduction"],
              ">=", 0.0),
        Check("memory-access reduction", 1 - _mem(s_p) / _mem(s_d), ">=", 0.3),
        Check("llm-layer 4096 tokens: layers differing, extrapolated vs full", differ, "<=", 0),
        # the issue-15 target: faster where extrapolation applies (7.4x here, 7.6e5 events)
        Check("llm-layer 4096 tokens: full / extrapolated time", t["llm4k_full"] / t["llm4k"],
              ">=", 3.0),
        # 1.9e8 events (10^6 tokens) and 3.5e8 (10^9 channels) cost what a few 10^4 events do:
        # 7.9x and 0.46x resnet18's 7.4e3 events here; every event would be 5e4x
        Check("llm-layer 10^6 tokens / resnet18 schedule time", t["llm1m"] / t["pacim"],
              "<=", 25.0),
        Check("10^9-channel conv / resnet18 schedule time", t["huge"] / t["pacim"], "<=", 25.0),
    ]
    return res
