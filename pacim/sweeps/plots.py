"""Figures of `pacim plot` on a sweep: a scatter of two figures with the Pareto front.

Uses matplotlib's object API (Figure + Agg canvas), never pyplot, so no global state or
display is touched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import PacimError
from ..report.plots import number, save_figure
from .pareto import PARETO_FIELD, field_value, mark_pareto, pareto_front
from .store import read_records

LABELS = {
    "latency_s": "latency (s)",
    "energy_pj": "energy (pJ)",
    "tops_per_w": "TOPS/W",
    "peak_tops_per_w": "peak TOPS/W",
    "throughput_tops": "throughput (TOPS)",
    "cycles": "cycles",
    "sqnr_db": "output SQNR vs exact (dB)",
    "bit_serial_reduction": "bit-serial cycle reduction",
    "reads_bits": "memory reads (bit)",
    "writes_bits": "memory writes (bit)",
    "area_mm2": "chip area (mm^2)",
    "tops_per_mm2": "TOPS/mm^2",
    "peak_tops_per_mm2": "peak TOPS/mm^2",
}


def load_plot_input(path: str | Path) -> tuple[str, Any]:
    """('report', dict) for a simulate JSON report, ('sweep', records) for a sweep JSONL."""
    p = Path(path)
    if not p.is_file():
        raise PacimError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and "key" not in obj:
        if "layers" not in obj:
            raise PacimError(f"{p}: a JSON object without 'layers': not a simulate report")
        return "report", obj
    records = read_records(p)
    if not records:
        raise PacimError(f"{p}: no sweep records (expected JSON Lines from `pacim sweep`)")
    return "sweep", records


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _all_fields(records: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k in list(r) + list(r.get("overrides") or {}):
            if k != "overrides":
                keys.setdefault(k)
    return list(keys)


def _numeric_fields(records: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if number(v) is not None and k not in ("seed", "sim_s"):
                keys.setdefault(k)
    return list(keys)


def plot_sweep(
    records: Sequence[Mapping[str, Any]], out: str | Path, *, x: str = "latency_s",
    y: str = "energy_pj", color: str | None = None, pareto: bool = False,
    maximize: tuple[bool, bool] = (False, False), log: tuple[bool, bool] = (False, False),
    front3: bool = False, option: str | None = None,
) -> dict[str, Any]:
    """Scatter y against x over the sweep's ok records; Pareto front per workload if asked.

    color: a field or arch key; numbers get a colour bar, anything else a legend. With several
    workloads and no color, points are coloured by workload. A log axis leaves out the points
    with a value <= 0 and says so. Returns {'points', 'front', 'front3', 'dropped'} ('dropped':
    what was left off a log axis, or ''). `option` names the output in error messages.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if color not in (None, "workload") and all(field_value(r, color) is None for r in ok):
        fields = ", ".join(_all_fields(ok)) or "none (no successful points)"
        raise PacimError(f"--color {color}: no point has this field; fields: {fields}")
    numeric = []
    for r in ok:
        xv, yv = number(field_value(r, x)), number(field_value(r, y))
        if xv is not None and yv is not None:
            numeric.append((xv, yv, r))
    if not numeric:
        fields = ", ".join(_numeric_fields(ok)) or "none (no successful points)"
        raise PacimError(f"no point has numeric {x} and {y}; numeric fields: {fields}")
    pts = [p for p in numeric if (not log[0] or p[0] > 0) and (not log[1] or p[1] > 0)]
    nonpos = " or ".join(f"{name} <= 0" for on, name, i in ((log[0], x, 0), (log[1], y, 1))
                         if on and any(p[i] <= 0 for p in numeric))
    if not pts:
        raise PacimError(f"nothing to plot: a log axis shows values > 0 only, and all "
                         f"{len(numeric)} points have {nonpos}")
    dropped = (f"{len(numeric) - len(pts)} of {len(numeric)} points with {nonpos} left off "
               "the log axis") if len(pts) < len(numeric) else ""
    workloads = list(dict.fromkeys(str(r.get("workload")) for _, _, r in pts))
    if color is None and len(workloads) > 1:
        color = "workload"

    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.add_subplot()
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    markers = "osD^vP*X<>"
    wl_of = [str(p[2].get("workload")) for p in pts]
    marker_of = {wl: markers[j % len(markers)] for j, wl in enumerate(workloads)}

    def scatter(idx: list[int], label: str | None, **kw: Any) -> Any:
        art = None
        for wl in workloads:  # one marker per workload
            sub = [i for i in idx if wl_of[i] == wl]
            if sub:
                art = ax.scatter([xs[i] for i in sub], [ys[i] for i in sub], s=24,
                                 marker=marker_of[wl], label=label, **kw)
                label = None
        return art

    everyone = list(range(len(pts)))
    if color is None or color == "workload":
        for wl in workloads:
            scatter([i for i in everyone if wl_of[i] == wl],
                    wl if len(workloads) > 1 else f"{len(pts)} points", alpha=0.8)
    else:
        cvals = [field_value(r, color) for _, _, r in pts]
        nums = [number(c) for c in cvals]
        distinct = set(json.dumps(c, sort_keys=True) for c in cvals)
        if all(n is not None for n in nums) and len(distinct) > 10:
            vmin, vmax = min(nums), max(nums)  # type: ignore[type-var]
            art = scatter(everyone, None, c=nums, cmap="viridis", vmin=vmin, vmax=vmax,
                          alpha=0.85)
            fig.colorbar(art, ax=ax, label=_label(color))
        else:  # few values: a discrete legend, in order
            def order(c: Any) -> tuple[int, Any]:
                n = number(c)
                return (0, n) if n is not None else (1, json.dumps(c, sort_keys=True))

            palette = colormaps["tab10" if len(distinct) <= 10 else "tab20"]
            for j, c in enumerate(sorted({json.dumps(c, sort_keys=True): c
                                          for c in cvals}.values(), key=order)):
                idx = [i for i in everyone if cvals[i] == c]
                scatter(idx, f"{color} = {c if isinstance(c, str) else json.dumps(c)}",
                        color=palette(j % palette.N), alpha=0.85)
        if len(workloads) > 1:
            for wl in workloads:
                ax.scatter([], [], marker=marker_of[wl], color="gray", label=wl)
    n_front = 0
    if pareto:
        fronts = []
        for wl in workloads:
            idx = [i for i in everyone if wl_of[i] == wl]
            fronts.append([idx[k] for k in pareto_front([(xs[i], ys[i]) for i in idx], maximize)])
        n_front = sum(len(f) for f in fronts)
        # the boundary of the dominated region: from each front point, along x to the next
        for j, front in enumerate(fronts):
            ax.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="crimson",
                    lw=1.2, drawstyle="steps-post", zorder=3)
            ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=80, facecolors="none",
                       edgecolors="crimson", linewidths=1.6, zorder=4,
                       label=f"Pareto front ({n_front})" if j == 0 else None)
    n_front3 = 0
    if front3:
        marked = mark_pareto([p[2] for p in pts])
        idx3 = [i for i, r in enumerate(marked) if r[PARETO_FIELD]]
        n_front3 = len(idx3)
        ax.scatter([xs[i] for i in idx3], [ys[i] for i in idx3], s=130, marker="D",
                   facecolors="none", edgecolors="black", linewidths=1.0, zorder=5,
                   label=f"energy/latency/area front ({n_front3})")
    if log[0]:
        ax.set_xscale("log")
    if log[1]:
        ax.set_yscale("log")
    best = ["higher is better" if m else "lower is better" for m in maximize]
    ax.set_xlabel(_label(x) + (f"  ({best[0]})" if pareto else ""))
    ax.set_ylabel(_label(y) + (f"  ({best[1]})" if pareto else ""))
    arch = ", ".join(dict.fromkeys(str(r.get("arch")) for _, _, r in pts))
    ax.set_title(f"{arch} on {', '.join(workloads)}: {len(pts)} points", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    save_figure(fig, out, option=option)
    return {"points": len(pts), "front": n_front, "front3": n_front3, "dropped": dropped}
