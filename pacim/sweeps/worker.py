"""The worker side of a sweep: simulate one point (or a group sharing a schedule) into a flat
record. Each worker process builds a workload once and caches it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..arch import Arch
from ..report import flatten, json_safe
from ..sched.scheduler import schedule_signature
from .grid import digest

# Headline figures of a record, in column order (None when the report lacks them).
METRICS = (
    "macs", "mapped_macs", "ops", "cycles", "latency_s", "throughput_tops",
    "peak_throughput_tops", "energy_pj", "tops_per_w", "peak_tops_per_w", "reads_bits",
    "writes_bits", "bit_serial_cycles_baseline", "bit_serial_cycles", "bit_serial_reduction",
    "energy_memory_share", "digital_cycles_mean", "sqnr_db", "output_rmse",
    "area_mm2", "tops_per_mm2", "tops_per_mm2_1b", "peak_tops_per_mm2",
)
# Figures of a phase point (the report's "phase" block), after METRICS; bits are per token.
PHASE_METRICS = (
    "tokens_per_s", "energy_per_token_pj", "latency_per_token_s", "weight_reads_bits_per_token",
    "kv_reads_bits_per_token", "kv_writes_bits_per_token", "weight_reloads_per_step",
    "weight_load_share", "kv_load_share",
)



_WORKLOADS: dict[tuple[str, bool, int], Any] = {}
_SHAPES: dict[tuple[str, int], Any] = {}


def cached_llm(name: str, seed: int) -> Any:
    """An LLM workload's decoder shape as a layer-less Workload, built once per process (what
    pacim.phase.simulate_phase needs of it)."""
    k = (name, int(seed))
    wl = _SHAPES.get(k)
    if wl is None:
        from ..phase import llm_shape
        from ..workloads.ir import Workload

        shape, model = llm_shape(name, seed)
        wl = _SHAPES[k] = Workload(model, (), {"llm": shape.to_dict(), "model": model})
    return wl


def cached_workload(name: str, data: bool, seed: int) -> Any:
    """The workload built once per process (module-level cache keyed by name, data, seed)."""
    k = (name, bool(data), int(seed))
    wl = _WORKLOADS.get(k)
    if wl is None:
        from ..workloads import load_workload

        wl = _WORKLOADS[k] = load_workload(name, data=data, seed=seed)
    return wl


def headline(report: Mapping[str, Any]) -> dict[str, Any]:
    """The flat headline figures of a simulate report dict (None where absent)."""
    bsc = report.get("bit_serial_cycles") or {}
    acc = report.get("accuracy") or {}
    mem = report.get("memory") or {}
    out: dict[str, Any] = {k: report.get(k) for k in METRICS}
    out.update(
        reads_bits=mem.get("reads_bits"),
        writes_bits=mem.get("writes_bits"),
        bit_serial_cycles_baseline=bsc.get("baseline"),
        bit_serial_cycles=bsc.get("actual"),
        bit_serial_reduction=bsc.get("reduction"),
        sqnr_db=acc.get("sqnr_db"),
        output_rmse=acc.get("output_rmse_vs_exact"),
    )
    ph = report.get("phase")
    if isinstance(ph, Mapping):
        t, n = ph["traffic_by_kind"], ph["tokens"]
        out.update({k: ph.get(k) for k in PHASE_METRICS if k in ph})
        out.update(weight_reads_bits_per_token=t["weights"]["reads_bits"] / n,
                   kv_reads_bits_per_token=t["kv_reads_bits"] / n,
                   kv_writes_bits_per_token=t["kv_writes_bits"] / n)
    breakdown = report.get("energy_breakdown_pj")
    if isinstance(breakdown, Mapping):
        out.update(flatten(dict(breakdown), "energy_pj."))
    area = report.get("area_breakdown_mm2")
    if isinstance(area, Mapping):
        out.update(flatten(dict(area), "area_mm2."))
    return out


def base_record(key: str, overrides: Mapping[str, Any], workload: str, arch_name: Any,
                data: bool, seed: int) -> dict[str, Any]:
    """A point's record before its figures: key, status ok, workload, arch, overrides."""
    rec: dict[str, Any] = {"key": key, "status": "ok", "error": None, "workload": workload,
                           "arch": arch_name, "data": data, "seed": seed,
                           "overrides": dict(overrides)}
    for k, v in overrides.items():  # flat copies, for spreadsheets and `pacim plot --color`
        rec.setdefault(k, v)
    return rec


def run_point(task: Mapping[str, Any]) -> dict[str, Any]:
    """Simulate one point (in a worker); errors become an error record, never an exception."""
    t0 = time.perf_counter()
    rec = base_record(task["key"], task["overrides"], task["workload"],
                       task["arch"].get("name"), task["data"], task["seed"])
    run = task.get("run") or {}
    for k, v in run.items():  # fixed run options too (phase, context, tokens), flat
        rec.setdefault(k, v)
    try:
        arch = Arch.model_validate(task["arch"])
        hook = task.get("simulate")
        if hook is not None:  # a test hook replacing load + simulate: gets the workload name
            report = hook(arch, task["workload"], data=task["data"], seed=task["seed"], **run)
        elif run:
            from ..phase import simulate_phase

            report = simulate_phase(arch, cached_llm(task["workload"], task["seed"]),
                                    run["phase"], context=run["context"],
                                    tokens=run["tokens"], seed=task["seed"])
        else:
            from ..pipeline import simulate

            wl = cached_workload(task["workload"], task["data"], task["seed"])
            report = simulate(arch, wl, data=task["data"], seed=task["seed"])
        d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        rec.update(headline(d))
    except Exception as e:  # any failure of a point is that point's record
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["sim_s"] = time.perf_counter() - t0
    return json_safe(rec)


def run_points(group: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Simulate a group of points in one worker, in order (see group_tasks)."""
    return [run_point(t) for t in group]


MAX_GROUP = 8  # points per task: bounds what a killed worker can lose


def _schedule_signature(task: Mapping[str, Any]) -> str:
    """What a point's schedule depends on (pacim.sched.schedule_signature), workload, data."""
    return digest([*schedule_signature(task["arch"]), task["workload"], task["data"],
                   task["seed"], task.get("run")])


def group_tasks(tasks: Sequence[dict[str, Any]], max_group: int = MAX_GROUP
                ) -> list[list[dict[str, Any]]]:
    """Group points that share a schedule (e.g. differ only in VDD or energy values) into
    tasks of at most max_group points, in first-seen order: the worker that runs a group
    schedules it once and reuses the schedule (pacim.sched.schedule's cache)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        groups.setdefault(_schedule_signature(t), []).append(t)
    return [g[i : i + max_group] for g in groups.values() for i in range(0, len(g), max_group)]
