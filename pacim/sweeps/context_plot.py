"""The figure of a context sweep (`pacim plot sweep.jsonl --context`): decode energy per token
and tokens/s against the KV length, and the memory reads per token of the weights and of the
KV cache, with the context at which KV traffic overtakes weight traffic (the crossover).

Uses matplotlib's object API (Figure + Agg canvas), never pyplot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import PacimError
from ..report.plots import number, save_figure
from .pareto import field_value

NEEDED = ("context", "energy_per_token_pj", "tokens_per_s", "weight_reads_bits_per_token",
          "kv_reads_bits_per_token")


def context_series(records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """The ok phase records by series ("workload @ arch [other overrides]"), sorted by
    context; PacimError when no record has the phase figures."""
    out: dict[str, list[dict[str, float]]] = {}
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        vals = {k: number(field_value(r, k)) for k in NEEDED}
        if any(v is None for v in vals.values()):
            continue
        rest = {k: v for k, v in (r.get("overrides") or {}).items() if k != "context"}
        name = f"{r.get('workload')} @ {r.get('arch')}" + (f" {rest}" if rest else "")
        out.setdefault(name, []).append(vals)  # type: ignore[arg-type]
    if not out:
        raise PacimError("no point has a context and the phase figures (energy_per_token_pj, "
                         "tokens_per_s, ...): --context plots a sweep run with --phase and "
                         "--grid context=...")
    return {k: sorted(v, key=lambda p: p["context"]) for k, v in out.items()}


def crossover(points: Sequence[Mapping[str, float]]) -> float | None:
    """The context at which KV reads per token first reach the weight reads per token
    (interpolated linearly in KV reads between the two bracketing points); None if never."""
    prev = None
    for p in points:
        kv, w = p["kv_reads_bits_per_token"], p["weight_reads_bits_per_token"]
        if kv >= w:
            if prev is None:
                return p["context"]
            c0, d0 = prev["context"], prev["kv_reads_bits_per_token"] - prev[
                "weight_reads_bits_per_token"]
            d1 = kv - w
            return c0 + (p["context"] - c0) * (-d0) / (d1 - d0) if d1 != d0 else p["context"]
        prev = p
    return None


def plot_context(records: Sequence[Mapping[str, Any]], out: str | Path,
                 option: str | None = None) -> dict[str, Any]:
    """Write the context figure; returns {'series', 'points', 'crossover': {series: ctx}}."""
    from matplotlib.figure import Figure

    series = context_series(records)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    a, b = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    a2 = a.twinx()
    cross: dict[str, float | None] = {}
    for j, (name, pts) in enumerate(series.items()):
        ctx = [p["context"] for p in pts]
        col = f"C{j % 10}"
        a.plot(ctx, [p["energy_per_token_pj"] * 1e-6 for p in pts], "o-", color=col,
               label=f"{name}: energy / token")
        a2.plot(ctx, [p["tokens_per_s"] for p in pts], "s--", color=col, alpha=0.7,
                label=f"{name}: tokens/s")
        b.plot(ctx, [p["weight_reads_bits_per_token"] * 1e-6 for p in pts], "o-", color=col,
               label=f"{name}: weight reads")
        b.plot(ctx, [p["kv_reads_bits_per_token"] * 1e-6 for p in pts], "s:", color=col,
               label=f"{name}: KV cache reads")
        c = cross[name] = crossover(pts)
        if c is not None and c > 0:
            b.axvline(c, color=col, lw=0.8, alpha=0.6)
            b.annotate(f"KV > weights \nat ~{c:,.0f} ", (c, 0.80 - 0.12 * j), fontsize=8,
                       xycoords=("data", "axes fraction"), va="top", ha="right", color=col)
    positive = all(p["context"] > 0 for pts in series.values() for p in pts)
    for ax in (a, b):
        if positive:
            ax.set_xscale("log")
        ax.set_xlabel("context (tokens in the KV cache before the phase)")
        ax.grid(True, which="both", alpha=0.3)
    if positive and all(p["kv_reads_bits_per_token"] > 0 for pts in series.values()
                        for p in pts):
        b.set_yscale("log")
    a.set_ylabel("energy per token (uJ)")
    a2.set_ylabel("tokens/s (dashed)")
    a.set_title("energy per token (solid) and tokens/s (dashed)", fontsize=10)
    b.set_ylabel("memory reads per token (Mbit)")
    b.set_title("weight vs KV-cache reads per token", fontsize=10)
    b.legend(fontsize=7, loc="upper left")
    lines = a.get_legend_handles_labels()[0] + a2.get_legend_handles_labels()[0]
    a.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper left")
    save_figure(fig, out, option=option)
    n = sum(len(p) for p in series.values())
    return {"series": len(series), "points": n,
            "crossover": {k: (None if v is None or math.isnan(v) else v)
                          for k, v in cross.items()}}
