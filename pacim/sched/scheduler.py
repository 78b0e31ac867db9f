"""Scheduling a workload: its mapped layers one after another, with a cache of shapes-only
schedules (a sweep over VDD or the energy table reuses them) and an optional event trace.

One layer's events are built in layer.py; totals in counts.summarize; the trace in trace.py.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..arch import Arch
from ..macro.stats import MacroStats
from ..workloads.ir import Layer, Workload
from .counts import LayerCounts
from .layer import DEFAULT_BATCH, check_work, plan_layer, schedule_plan
from .mapping import layer_arch, layer_is_exact
from .steady import Steady
from .trace import TraceWriter


def schedule(
    arch: Arch,
    workload: Workload,
    stats: Mapping[str, MacroStats] | None = None,
    *,
    trace_path: str | Path | IO[str] | None = None,
    batch: int = DEFAULT_BATCH,
    cache: bool = True,
    steady: Steady | bool = True,
) -> list[LayerCounts]:
    """Schedule every mapped layer in order (matmul layers are skipped: not on the macro).

    Layers run one after another; the first mapped layer reads the network input from main
    memory and, if it is a conv, is exact when pac.first_layer_exact. `trace_path` (a path or
    an open text file) streams every event as CSV while the layers run (trace.TraceWriter).
    `cache` reuses an identical shapes-only schedule (same macro/pac/memory sections and layers)
    computed earlier in this process. `steady` extrapolates periodic stretches exactly
    (steady.py; off with a trace).
    """
    layers = [la for la in workload.layers if la.mapped]
    stats = stats or {}
    # Shapes-only schedules are pure functions of the chip's macro/pac/memory sections and the
    # layer shapes (not of technology or energy values): a sweep over VDD or the energy table
    # reuses them. Schedules driven by measured stats are not cached.
    key = None
    if cache and not stats and trace_path is None:
        key = (_schedule_key(arch), tuple(_layer_key(la) for la in layers), batch, steady)
        hit = _SCHEDULE_CACHE.get(key)
        if hit is not None:
            _SCHEDULE_CACHE.move_to_end(key)
            return list(hit)
    opts = steady if isinstance(steady, Steady) else Steady(enabled=bool(steady))
    exact = [layer_is_exact(arch, la, first=(i == 0)) for i, la in enumerate(layers)]
    plans = []
    archs = [layer_arch(arch, la, first=(i == 0)) for i, la in enumerate(layers)]
    for i, la in enumerate(layers):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        last = i + 1 == len(layers)
        plans.append(plan_layer(archs[i], la, stats.get(la.name), layers[i - 1] if i else None,
                                None if last else layers[i + 1], exact[i],
                                None if last else exact[i + 1], batch))
        check_work(plans[-1], opts, trace_path is not None)  # refused before any work
    writer = TraceWriter(trace_path) if trace_path is not None else None
    out: list[LayerCounts] = []
    t0 = 0
    try:
        for plan, a in zip(plans, archs, strict=True):
            if writer is not None:
                writer.begin_layer(t0)
            out.append(schedule_plan(a, plan, writer, opts))
            t0 += out[-1].cycles
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    if key is not None:
        _SCHEDULE_CACHE[key] = tuple(out)
        while len(_SCHEDULE_CACHE) > _SCHEDULE_CACHE_SIZE:
            _SCHEDULE_CACHE.popitem(last=False)
    return out


_SCHEDULE_CACHE: OrderedDict[tuple, tuple[LayerCounts, ...]] = OrderedDict()
_SCHEDULE_CACHE_SIZE = 64


def _schedule_key(arch: Arch) -> str:
    """The arch fields a schedule depends on (schedule_signature), as a cache key."""
    return json.dumps(schedule_signature(arch.to_dict()), sort_keys=True)


def _layer_key(la: Layer) -> tuple:
    return (la.name, la.kind, la.n, la.k, la.vectors, la.in_shape, la.kernel, la.stride,
            la.padding, la.exact)


def schedule_signature(arch: Mapping[str, Any]) -> list[Any]:
    """The fields of a resolved arch dict a schedule depends on: the macro and pac sections and
    the memories' sizes and buses (not technology or energy values)."""
    mem = {lv: {k: v for k, v in cfg.items() if k in ("size_kib", "bus_bits")}
           for lv, cfg in arch.get("memory", {}).items()}
    return [arch.get("macro"), arch.get("pac"), mem]
