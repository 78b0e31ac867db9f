"""LLM inference phases on the chip: prefill (T tokens at once) and decode (T steps of one token).

Prefill after a context of L runs one step: T new tokens through every layer against a KV cache
of L + T positions. Decode runs T steps of one token against a cache growing from L + 1 to
L + T. Every decode step's linear layers are the same (one token, the same weights), so they
are scheduled once and counted T times (exact: the scheduler is deterministic in the shapes);
the steps differ only in the KV length, and the attention and periphery counts, closed forms
in it (pacim/sched/attention.py, workloads/llm_shape.py), are summed over the T lengths.
`decode_steps` is the step-by-step reference the tests compare this with. Shapes only (no
numerics): see docs/LLM.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .arch import Arch, load_arch
from .errors import PacimError
from .pipeline import PERIPHERY, attention_layer_counts, counts_report
from .report import Report
from .workloads.ir import Workload
from .workloads.llm_shape import LlmShape, periphery_ops, step_layers

PHASES = ("prefill", "decode")
MAX_DECODE_TOKENS = 1 << 20  # decode steps are summed one KV length at a time (O(T) work)
# data kinds of the report's "by kind" traffic
WEIGHT_KINDS = ("weights", "w_counts")
ACTIVATION_KINDS = ("act_msb", "act_full", "sparsity_counts", "outputs", "psums")
COUNT_KINDS = ("w_counts", "sparsity_counts", "kv_counts")  # PAC's count words


def kv_setting_overrides(spec: str) -> dict[str, int]:
    """Arch overrides that hold the KV cache as an INSERTQUANT setting says (`w4a4skv4`:
    attention.kv_bits 4). Only its KV part: the linear layers run at macro.wbit x macro.xbit."""
    from .llm.settings import parse_setting

    s = parse_setting(spec)
    if s.kvbits is None:
        raise PacimError(f"--setting {spec}: no KV part (K and V stay float); use a setting "
                         "with skv<bits>, e.g. w4a4skv4 or w8a8skv8")
    if s.kv != "static":
        raise PacimError(f"--setting {spec}: a group-wise dynamic KV cache is not in the cost "
                         "model (its per-group scales); use a static skv<bits> setting")
    return {"attention.kv_bits": s.kvbits}


def llm_shape(workload: Workload | str | Path, seed: int | None = None) -> tuple[LlmShape, str]:
    """The decoder shape (and the name) of an LLM workload, a built one or a name."""
    if not isinstance(workload, Workload):
        w = str(workload)
        if w == "smollm2-135m" or w.endswith(".gguf"):  # the shape from the metadata alone
            try:
                from .llm.workload import llm_shape_of
            except ImportError as exc:
                raise PacimError(f"workload {w} needs the llm extra: {exc}") from None
            return llm_shape_of(w), Path(w).stem
        from .workloads import load_workload

        workload = load_workload(w, data=False, seed=seed)
    name = str(workload.meta.get("model") or workload.meta.get("builtin") or workload.name)
    return LlmShape.of(workload), name


def step_workload(shape: LlmShape, name: str, q: int, kv: int) -> Workload:
    """One step as a Workload (shapes only): q new tokens against kv KV positions."""
    meta = {"source": "phase", "llm": shape.to_dict(), "tokens": q, "kv_length": kv,
            "periphery_ops": periphery_ops(shape, q, kv)}
    return Workload(f"{name}-q{q}-kv{kv}", tuple(step_layers(shape, q, kv)), meta)


def _check(phase: str, context: int, tokens: int) -> None:
    if phase not in PHASES:
        raise PacimError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if context < 0:
        raise PacimError(f"context must be >= 0 tokens, got {context}")
    if tokens < 1:
        raise PacimError(f"tokens must be >= 1, got {tokens}")
    if phase == "decode" and tokens > MAX_DECODE_TOKENS:
        raise PacimError(f"decode of {tokens:,} tokens: over the limit of "
                         f"{MAX_DECODE_TOKENS:,} steps")


def simulate_phase(arch: Arch | str | Path, workload: Workload | str | Path, phase: str, *,
                   context: int = 0, tokens: int = 1, seed: int | None = None,
                   progress: Callable[[int, int, str], None] | None = None,
                   cache: bool = True) -> Report:
    """Prefill or decode of an LLM workload (shapes only); the report gains a "phase" block.
    `cache`: reuse identical shapes-only schedules of this process (sched.schedule)."""
    from .sched import combine, schedule
    from .sched.kv_resident import linear_arch

    _check(phase, context, tokens)
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    shape, name = llm_shape(workload, seed)
    if progress is not None:
        progress(0, 2, "scheduler")
    if phase == "prefill":
        wl = step_workload(shape, f"{name}-prefill", tokens, context + tokens)
        counts = schedule(linear_arch(arch), wl, cache=cache)
        report = counts_report(arch, wl, counts, attention_layer_counts(arch, wl))
        steps = 1
    else:
        kv0, kv1 = context + 1, context + tokens
        wl = step_workload(shape, f"{name}-decode", 1, kv0)
        # the KV home must hold the cache at its longest (the last step's)
        attention_layer_counts(arch, step_workload(shape, name, 1, kv1))
        lin = [combine([c], repeat=tokens) for c in schedule(linear_arch(arch), wl, cache=cache)]
        extra = _decode_attention(arch, shape, name, kv0, kv1)
        macs = _decode_macs(wl, shape, kv0, kv1, tokens)
        report = counts_report(arch, wl, lin, extra, layer_macs=macs)
        steps = tokens
    report.summary["phase"] = phase_summary(report.summary, phase, context, tokens, steps)
    report.summary["workload"] = f"{name}-{phase}"
    if progress is not None:
        progress(2, 2, "done")
    return report


def one_block(shape: LlmShape) -> LlmShape:
    """One block of `shape` in llm-layer naming (attn_qk, attn_pv), no head."""
    return LlmShape(**{**shape.to_dict(), "blocks": 1, "head_out": 0, "names": "llm-layer"})


def _decode_attention(arch: Arch, shape: LlmShape, name: str, kv0: int, kv1: int
                      ) -> dict[str, Any]:
    """Attention and periphery counts of decode steps at KV lengths kv0..kv1, summed."""
    from .sched import combine

    if arch.attention.mapping is None:
        return {}
    from .sched import attention_counts, periphery_counts
    from .sched.kv_resident import resident_positions

    per: dict[str, list[Any]] = {PERIPHERY: []}
    one = one_block(shape)
    res = resident_positions(arch, step_layers(shape, 1, kv0))  # over the whole model
    for kv in range(kv0, kv1 + 1):  # one block: every block has the same attention shapes
        for la in step_layers(one, 1, kv):
            if la.kind == "matmul":
                per.setdefault(la.name, []).append(attention_counts(arch, la, res))
        per[PERIPHERY].append(periphery_counts(arch, PERIPHERY, periphery_ops(shape, 1, kv)))
    summed = {n: combine(cs) for n, cs in per.items()}
    out: dict[str, Any] = {}
    for la in step_layers(shape, 1, kv0):
        if la.kind == "matmul":
            out[la.name] = replace(summed[la.name.rsplit(".", 1)[-1]], name=la.name)
    out[PERIPHERY] = summed[PERIPHERY]
    return out


def _decode_macs(wl: Workload, shape: LlmShape, kv0: int, kv1: int, tokens: int
                 ) -> dict[str, int]:
    """MACs of every layer over the decode: linear x tokens; attention sum over KV lengths."""
    kv_sum = (kv0 + kv1) * (kv1 - kv0 + 1) // 2
    per_kv = shape.heads * shape.head_dim  # one query row per head, dh x kv (or kv x dh)
    return {la.name: (per_kv * kv_sum if la.kind == "matmul" else la.macs * tokens)
            for la in wl.layers}


def decode_steps(arch: Arch, shape: LlmShape, name: str, context: int, tokens: int
                 ) -> list[Report]:
    """The decode step by step, each a full simulation (the reference of simulate_phase)."""
    from .pipeline import simulate

    return [simulate(arch, step_workload(shape, name, 1, context + 1 + s), data=False)
            for s in range(tokens)]


def traffic_by_kind(memory: dict[str, Any]) -> dict[str, Any]:
    """Reads and writes over every memory level by data kind: weights, activations, KV; and
    ``counts``, the PAC count words among them (w_counts, sparsity_counts, kv_counts: a part of
    the three, not added to them)."""
    out = {"weights": {"reads_bits": 0, "writes_bits": 0},
           "activations": {"reads_bits": 0, "writes_bits": 0}, "kv_reads_bits": 0,
           "kv_writes_bits": 0, "counts": {"reads_bits": 0, "writes_bits": 0}}  # fmt: skip
    for lv in memory.get("by_level", {}).values():
        for way, key in (("reads_bits", "reads_by_kind"), ("writes_bits", "writes_by_kind")):
            for kind, bits in lv.get(key, {}).items():
                if kind in WEIGHT_KINDS:
                    out["weights"][way] += bits
                elif kind in ACTIVATION_KINDS:
                    out["activations"][way] += bits
                elif kind in ("kv_cache", "kv_counts"):  # K / V and PAC's counts of them
                    out["kv_" + way] += bits
                else:
                    raise ValueError(f"unknown data kind {kind!r} in the memory traffic")
                if kind in COUNT_KINDS:
                    out["counts"][way] += bits
    return out


def phase_summary(s: dict[str, Any], phase: str, context: int, tokens: int, steps: int
                  ) -> dict[str, Any]:
    """The report's "phase" block from its summary."""
    lat, e = s["latency_s"], s["energy_pj"]
    stalls = s.get("stall_cycles", {})
    cyc = s["cycles"]
    return {
        "name": phase,
        "context": context,
        "tokens": tokens,
        "steps": steps,
        "kv_length_final": context + tokens,
        "tokens_per_s": tokens / lat if lat > 0 else 0.0,
        "latency_per_token_s": lat / tokens,
        "energy_per_token_pj": e / tokens,
        "tops_per_w": s["tops_per_w"],
        "traffic_by_kind": traffic_by_kind(s["memory"]),
        "weight_reloads_per_step": s.get("weight_reloads", 0) / steps,
        "weight_load_share": stalls.get("weight_load", 0) / cyc if cyc else 0.0,
        "kv_load_share": stalls.get("kv_load", 0) / cyc if cyc else 0.0,
    }
