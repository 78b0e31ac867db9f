"""The main pipeline: per layer quantize -> macro -> stats; scheduler -> counts; energy -> report.

Each stage is a plain function from immutable inputs to an immutable result, so a sweep is just
a loop over `simulate`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arch import Arch, load_arch
from .errors import PacimError
from .macro.analog import AnalogADC
from .macro.kernels import error_sums
from .macro.layer import apply
from .macro.operands import (
    Activations,
    PreparedWeight,
    prepare_weight,
    quantize_activations,
)
from .macro.stats import MacroStats
from .report import REPORT_VERSION, Report
from .workloads.ir import Layer, Workload

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LayerAccuracy:
    """Error of the macro's output against the exact integer macro on the same tensors."""

    sq_err: float  # sum of squared errors
    sq_ref: float  # sum of squared exact outputs
    count: int

    @property
    def rmse(self) -> float:
        """Root-mean-square output error."""
        return math.sqrt(self.sq_err / self.count) if self.count else 0.0

    @property
    def sqnr_db(self) -> float:
        """10 log10(signal / error); inf when the error is zero."""
        if self.sq_err == 0:
            return math.inf
        if self.sq_ref == 0:  # all exact outputs are zero: any error is infinitely worse
            return -math.inf
        return 10.0 * math.log10(self.sq_ref / self.sq_err)

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly dict."""
        return {"output_rmse_vs_exact": self.rmse, "sqnr_db": self.sqnr_db}


def run_layer(arch: Arch, layer: Layer, exact: bool, index: int = 0
              ) -> tuple[MacroStats, LayerAccuracy]:
    """Run one layer's real tensors through the macro, and through the exact macro for error.

    On an analog bp_bs array (arch.analog) every layer goes through the ADC model, its noise
    stream being the layer's index; the error is against exact integer arithmetic.
    """
    m = arch.macro
    full = max(m.xbit, m.wbit)
    act, pw = layer_operands(layer, m.xbit, m.wbit)
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    adc = AnalogADC.from_arch(arch)
    if adc is not None:
        y, stats = apply(act, pw, bias, operand=full, approx=arch.pac.approx,
                         analog=adc.with_stream(index))
        exact = False  # the ADC's error is measured against the exact arithmetic below
    else:
        dyn = arch.dynamic_thresholds if (layer.kind == "conv2d" and not exact) else None
        y, stats = apply(act, pw, bias, operand=full if exact else arch.operand,
                         approx=arch.pac.approx, dynamic=dyn)
    if exact:
        return stats, LayerAccuracy(0.0, float(np.vdot(y, y)), int(y.size))
    ref = apply(act, pw, bias, operand=full, approx="truncate", stats=False)[0]
    sq_err, sq_ref = error_sums(y, ref)  # outputs stay in (rows, K) order: only sums are kept
    return stats, LayerAccuracy(float(sq_err), float(sq_ref), int(y.size))


# Prepared operands per (layer, bits), kept while the layer lives: repeated simulations of one
# workload (sweeps, benchmarks) quantize each weight and input once. The layer's tensors are
# made read-only when first prepared, so the cache cannot go stale.
_OPERANDS: weakref.WeakKeyDictionary[Layer, dict[tuple[int, int], Any]] = (
    weakref.WeakKeyDictionary())


def clear_prepared() -> None:
    """Forget every prepared operand (the next simulation quantizes again)."""
    _OPERANDS.clear()


def layer_operands(layer: Layer, xbit: int, wbit: int) -> tuple[Activations, PreparedWeight]:
    """Quantized operands of a layer carrying data (conv2d or linear), prepared once."""
    if layer.kind not in ("conv2d", "linear"):
        raise PacimError(f"layer {layer.name}: {layer.kind} is not mapped to the macro")
    per_layer = _OPERANDS.setdefault(layer, {})
    if (xbit, wbit) not in per_layer:
        x, w = np.asarray(layer.x), np.asarray(layer.weight)
        for a in (layer.x, layer.weight, layer.bias):
            if isinstance(a, np.ndarray):
                a.setflags(write=False)
        if layer.kind == "conv2d":
            p = layer.padding
            act = quantize_activations(x, xbit, kernel=layer.kernel, stride=layer.stride,
                                       pads=(p, p, p, p), name=f"{layer.name}.x")
        else:
            act = quantize_activations(x, xbit, name=f"{layer.name}.x")
        per_layer[(xbit, wbit)] = (act, prepare_weight(w, wbit, name=f"{layer.name}.w"))
    return per_layer[(xbit, wbit)]


def _stats_fields(stats: MacroStats | None) -> dict[str, Any]:
    if stats is None:
        return {}
    return {
        "digital_cycles_mean": stats.digital_cycles_mean,
        "cycle_hist": {str(k): v for k, v in sorted(stats.cycle_hist.items())},
        "pac_pairs": stats.pac_pairs,
        "x_density": list(stats.x_density),
        "w_density": list(stats.w_density),
        **({"analog": stats.analog.summary()} if stats.analog is not None else {}),
    }


def simulate(
    arch: Arch | str | Path,
    workload: Workload | str | Path,
    data: bool = True,
    *,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    trace_path: str | Path | None = None,
    **workload_options: Any,
) -> Report:
    """Simulate a workload on a chip; returns a Report.

    arch: an Arch or a YAML path; workload: a Workload or a name/path for `load_workload`.
    data=False simulates shapes only, with documented default statistics (fast, for sweeps).
    """
    from .sched import layer_arch, layer_is_exact, schedule
    from .workloads import load_workload

    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    if data:  # refuse what cannot fit, before any tensor is built (pacim.workloads.memory)
        from .workloads import has_shapes_path
        from .workloads.memory import check, estimate

        m = arch.macro
        if isinstance(workload, Workload):
            check(estimate(workload, m.xbit, m.wbit), f"workload {workload.name}", built=True)
        elif has_shapes_path(str(workload)):
            shapes = load_workload(str(workload), data=False, seed=seed, **workload_options)
            check(estimate(shapes, m.xbit, m.wbit), f"workload {shapes.name}")
    if not isinstance(workload, Workload):
        workload = load_workload(str(workload), data=data, seed=seed, **workload_options)
    elif workload_options:
        raise PacimError("workload options need a workload name, not a built Workload")
    if data and not workload.has_data:
        raise PacimError(f"workload {workload.name} carries no data; build it with data=True "
                         "or simulate with data=False")

    mapped = [la for la in workload.layers if la.mapped]
    stats: dict[str, MacroStats] = {}
    accs: dict[str, LayerAccuracy] = {}
    exact_flags: dict[str, bool] = {}
    for i, layer in enumerate(mapped):
        exact_flags[layer.name] = layer_is_exact(arch, layer, first=i == 0)
    total = len(mapped) + 1
    for i, layer in enumerate(mapped):
        if progress is not None:
            progress(i, total, layer.name)
        if data:
            stats[layer.name], accs[layer.name] = run_layer(
                layer_arch(arch, layer, first=i == 0), layer, exact_flags[layer.name], index=i)
    if progress is not None:
        progress(len(mapped), total, "scheduler")
    from .sched.kv_resident import linear_arch

    counts = schedule(linear_arch(arch), workload, stats if data else None,
                      trace_path=trace_path)
    report = counts_report(arch, workload, counts, attention_layer_counts(arch, workload),
                           data=data, stats=stats, accs=accs, exact_flags=exact_flags)
    if progress is not None:
        progress(total, total, "done")
    return report


PERIPHERY = "periphery"  # the report row of the digital periphery's operations


def attention_layer_counts(arch: Arch, workload: Workload) -> dict[str, Any]:
    """Counts of the matmul layers and of the digital periphery (workload meta
    "periphery_ops") when arch.attention.mapping is set, by layer name; else {}."""
    from .sched import attention_counts, check_kv_home, periphery_counts

    if arch.attention.mapping is None:
        return {}
    from .sched.kv_resident import resident_positions

    check_kv_home(arch, workload.layers, f"workload {workload.name}")
    p = resident_positions(arch, workload.layers)
    out = {la.name: attention_counts(arch, la, p) for la in workload.layers
           if la.kind == "matmul"}
    ops = workload.meta.get("periphery_ops")
    if ops:
        out[PERIPHERY] = periphery_counts(arch, PERIPHERY, ops)
    return out


def counts_report(arch: Arch, workload: Workload, counts: list[Any], extra: dict[str, Any], *,
                  data: bool = False, stats: dict[str, MacroStats] | None = None,
                  accs: dict[str, LayerAccuracy] | None = None,
                  exact_flags: dict[str, bool] | None = None,
                  layer_macs: dict[str, int] | None = None) -> Report:
    """The Report of a workload from its scheduler counts (mapped layers, in order) and the
    attention / periphery counts (attention_layer_counts). `layer_macs` overrides layers' MACs
    (a decode phase: its steps' sum)."""
    from . import energy as energy_mod
    from .sched import layer_arch, layer_is_exact, summarize

    stats, accs = stats or {}, accs or {}
    mapped = [la for la in workload.layers if la.mapped]
    if exact_flags is None:
        exact_flags = {la.name: layer_is_exact(arch, la, first=i == 0)
                       for i, la in enumerate(mapped)}
    counts_by_name = {c.name: c for c in counts}
    first_name = mapped[0].name if mapped else None
    first_arch = layer_arch(arch, mapped[0], first=True) if mapped else arch
    all_counts = list(counts) + list(extra.values())
    sched_summary = summarize(all_counts)
    layers_out: list[dict[str, Any]] = []
    breakdowns: dict[str, dict[str, float]] = {}

    def costed(d: dict[str, Any], c: Any) -> None:
        d.update(layer_schedule_fields(c))
        e = breakdowns[c.name] = energy_mod.layer_energy(
            first_arch if c.name == first_name else arch, c)
        d["energy_pj"] = sum(e.values())
        d["energy_breakdown_pj"] = e

    lm = layer_macs or {}
    macs = {la.name: lm.get(la.name, la.macs) for la in workload.layers}
    for layer in workload.layers:
        d = layer.shape_dict()
        d["macs"] = macs[layer.name]
        if layer.mapped:
            d["exact"] = exact_flags[layer.name] and arch.analog is None
            d.update(_stats_fields(stats.get(layer.name)))
            d["accuracy"] = accs[layer.name].to_dict() if layer.name in accs else None
            c = counts_by_name.get(layer.name)
            if c is not None:
                costed(d, c)
        elif layer.name in extra:
            d["attention_mapping"] = arch.attention.mapping
            costed(d, extra[layer.name])
            d.update(attention_layer_fields(extra[layer.name]))
        layers_out.append(d)
    if PERIPHERY in extra:
        d = {"name": PERIPHERY, "kind": PERIPHERY, "macs": 0, "mapped": False}
        costed(d, extra[PERIPHERY])
        d["periphery_ops"] = dict(extra[PERIPHERY].periphery_ops)
        layers_out.append(d)

    mean_cycles = _mean_digital_cycles(arch, mapped, counts_by_name, exact_flags)
    mapped_macs = sum(macs[la.name] for la in workload.layers if la.mapped or la.name in extra)
    total_macs = sum(macs.values())
    summary: dict[str, Any] = {
        "version": REPORT_VERSION,
        "arch": arch.name,
        "workload": workload.name,
        "data": bool(data),
        "macs": total_macs,
        "mapped_macs": mapped_macs,
        "unmapped_macs": total_macs - mapped_macs,
        "ops": 2 * mapped_macs,
        "digital_cycles_mean": mean_cycles,
        "bit_serial_cycles": sched_summary["bit_serial_cycles"],
        "accuracy": _overall_accuracy(accs) if data else None,
    }
    for key in ("cycles", "latency_s", "memory", "stall_cycles", "weight_reloads", "events"):
        if key in sched_summary:
            summary[key] = sched_summary[key]
    if extra:
        summary["attention"] = attention_summary(arch, extra.values())
    summary.update(energy_mod.energy_report(arch, all_counts, mapped_macs, mean_cycles,
                                            [breakdowns[c.name] for c in all_counts]))
    summary.update(energy_mod.area_report(arch, summary))  # geometry x area table
    for d in layers_out:
        d.update(energy_mod.layer_area_fields(arch, d, summary["area_mm2"]))
    summary["arch_config"] = arch.to_dict()
    summary["workload_meta"] = {k: v for k, v in workload.meta.items()
                                if isinstance(v, (str, int, float, bool, type(None)))}
    return Report(summary=summary, layers=layers_out)


def attention_layer_fields(c: Any) -> dict[str, Any]:
    """Report fields of an attention layer's counts (beyond layer_schedule_fields)."""
    return {"kv_cell_write_bits": c.kv_cell_write_bits, "kv_occupancy_bits": c.kv_occupancy_bits,
            "digital_macs": c.digital_macs}


def attention_summary(arch: Arch, counts: Any) -> dict[str, Any]:
    """The report's "attention" block: mapping, KV home and bits, PAC, KV traffic, cell writes,
    the BMMs' bit-serial cycles, periphery."""
    from .sched import KV_KIND
    from .sched.attention import KV_COUNTS, attention_precision

    kinds = (KV_KIND, KV_COUNTS)  # K / V planes and PAC's count words of them at kv_home
    counts = list(counts)
    home = arch.attention.kv_home
    pr = attention_precision(arch)
    ops: dict[str, int] = {}
    for c in counts:
        for k, n in c.periphery_ops.items():
            ops[k] = ops.get(k, 0) + n
    return {
        "mapping": arch.attention.mapping,
        "kv_home": home,
        "kv_bits": pr.kv_bits, "input_bits": pr.in_bits,
        "pac": arch.attention.pac, "operand": arch.pac.operand if arch.attention.pac else None,
        "bit_serial_cycles": sum(c.bit_serial_cycles for c in counts),
        "bit_serial_cycles_baseline": sum(c.bit_serial_cycles_baseline for c in counts),
        "pac_ops": sum(c.pac_ops for c in counts),
        "kv_reads_bits": sum(c.reads_bits.get(home, {}).get(k, 0) for c in counts for k in kinds),
        "kv_writes_bits": sum(c.writes_bits.get(home, {}).get(k, 0) for c in counts
                              for k in kinds),
        "kv_cell_write_bits": sum(c.kv_cell_write_bits for c in counts),
        "kv_occupancy_bits_max": max((c.kv_occupancy_bits for c in counts), default=0),
        "digital_macs": sum(c.digital_macs for c in counts),
        "periphery_ops": ops,
    }


def layer_schedule_fields(c: Any) -> dict[str, Any]:
    """Report fields of one layer's scheduler counts."""
    stalls = dict(c.stall_cycles)
    stalls["total"] = sum(c.stall_cycles.values())
    base = c.bit_serial_cycles_baseline
    return {
        "cycles": c.cycles,
        "compute_cycles": c.compute_cycles,
        "stall_cycles": stalls,
        "bank_utilization": c.bank_utilization,
        "passes": c.passes,
        "weight_reloads": c.weight_reloads,
        "bit_serial_cycles": {
            "baseline": base,
            "actual": c.bit_serial_cycles,
            "reduction": 1.0 - c.bit_serial_cycles / base if base else 0.0,
        },
        "memory": {
            "reads_bits": c.total_reads_bits,
            "writes_bits": c.total_writes_bits,
            "by_level": {lv: {"reads_bits": sum(c.reads_bits[lv].values()),
                              "writes_bits": sum(c.writes_bits[lv].values()),
                              "reads_by_kind": c.reads_bits[lv],
                              "writes_by_kind": c.writes_bits[lv]}
                         for lv in c.reads_bits},
        },
    }


def _mean_digital_cycles(
    arch: Arch, mapped: list[Layer], counts: dict[str, Any], exact: dict[str, bool]
) -> float:
    """Digital bit-serial cycles per vector-tile, averaged over the PAC (non-exact) layers."""
    num = den = 0
    for la in mapped:
        c = counts.get(la.name)
        if c is None or exact[la.name] or not c.vector_tiles:
            continue
        num += c.bit_serial_cycles
        den += c.vector_tiles
    if den == 0:  # nothing approximated: every vector-tile takes all bit-pair cycles
        return float(arch.macro.xbit * arch.macro.wbit)
    return num / den


def _overall_accuracy(accs: dict[str, LayerAccuracy]) -> dict[str, float]:
    """Pooled over all outputs of all mapped layers."""
    tot = LayerAccuracy(
        sum(a.sq_err for a in accs.values()),
        sum(a.sq_ref for a in accs.values()),
        sum(a.count for a in accs.values()),
    )
    return tot.to_dict()
