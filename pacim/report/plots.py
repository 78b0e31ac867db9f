"""matplotlib figures of a simulate report: the energy breakdown and the per-layer view.

Uses matplotlib's object API (Figure + Agg canvas), never pyplot, so no global state or
display is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PacimError
from .export import image_format, write_bytes

_MIN_PIE_SHARE = 0.02  # slices below 2% are merged into "other"


def number(v: Any) -> float | None:
    """v as a finite float, or None (bools, strings, NaN and inf are not numbers to plot)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def save_figure(fig: Any, out: str | Path, dpi: int = 150, option: str | None = None) -> None:
    """Write a figure in the format of its extension; an unknown format or a failed write (a
    full disk too: the figure is rendered in memory first, then written and checked) is one
    PacimError naming `option` and the path."""
    fmt = image_format(out, option)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi)
    except (OSError, ValueError) as e:
        raise PacimError(f"{out}: cannot render the figure as {fmt}: {e}") from None
    write_bytes(out, buf.getvalue(), option, what=" the figure")


def _breakdowns(report: dict[str, Any]) -> tuple[list[str], list[dict[str, float]]]:
    names, rows = [], []
    for la in report.get("layers") or []:
        b = la.get("energy_breakdown_pj")
        if b:
            names.append(str(la.get("name", len(names))))
            rows.append(b)
    return names, rows


def plot_energy_breakdown(report: dict[str, Any], path: str | Path,
                          option: str | None = None) -> Path:
    """Write a PNG: energy per layer as stacked bars by component, and the total as a pie.

    report: a Report.to_dict() (needs `energy_breakdown_pj` per layer or at the top level).
    """
    names, rows = _breakdowns(report)
    total = report.get("energy_breakdown_pj")
    if not total and rows:
        total = {k: sum(r.get(k, 0.0) for r in rows) for k in rows[0]}
    if not total:
        raise PacimError("the report has no energy breakdown to plot")
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    comps = [k for k, v in total.items() if v > 0] or list(total)
    cmap = colormaps["tab20"]
    colors = {k: cmap(i % 20) for i, k in enumerate(comps)}

    fig = Figure(figsize=(min(24.0, 9.0 + 0.3 * len(names)), 5.5))
    ax_bar, ax_pie = fig.subplots(
        1, 2, gridspec_kw={"width_ratios": [max(1.5, 0.08 * len(names) + 1.0), 1.0]})
    if rows:
        x = range(len(rows))
        bottom = [0.0] * len(rows)
        for k in comps:
            vals = [r.get(k, 0.0) / 1e6 for r in rows]  # uJ
            ax_bar.bar(x, vals, bottom=bottom, color=colors[k], label=k, width=0.8)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax_bar.set_xticks(list(x))
        ax_bar.set_xticklabels(names, rotation=90, fontsize=7)
        ax_bar.set_ylabel("energy (uJ)")
        ax_bar.set_title("energy per layer")
        ax_bar.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax_bar.axis("off")

    whole = sum(total[k] for k in comps)
    big = [k for k in comps if total[k] >= _MIN_PIE_SHARE * whole]
    vals = [total[k] for k in big]
    labels = list(big)
    other = whole - sum(vals)
    if other > 0:
        vals.append(other)
        labels.append("other")
    pie_colors = [colors.get(k, (0.7, 0.7, 0.7, 1.0)) for k in labels]
    ax_pie.pie(vals, labels=labels, colors=pie_colors, autopct="%1.0f%%", pctdistance=0.75,
               textprops={"fontsize": 7}, startangle=90, counterclock=False)
    title = f"total {whole / 1e6:.4g} uJ"
    if report.get("tops_per_w"):
        title += f", {report['tops_per_w']:.3g} TOPS/W"
    ax_pie.set_title(title)
    arch, wl = report.get("arch"), report.get("workload")
    if arch or wl:
        fig.suptitle(" / ".join(str(v) for v in (arch, wl) if v))
    fig.tight_layout()
    out = Path(path)
    save_figure(fig, out, dpi=120, option=option)
    return out


plot_report = plot_energy_breakdown  # what `pacim simulate --plot` writes


def plot_report_layers(report: Mapping[str, Any], out: str | Path,
                       option: str | None = None) -> None:
    """Per-layer cycles (compute vs stalls) and energy breakdown (stacked) of a simulate report."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    layers = [la for la in report.get("layers") or [] if la.get("mapped", True)]
    has_cycles = any(number(la.get("cycles")) is not None for la in layers)
    has_energy = any(isinstance(la.get("energy_breakdown_pj"), Mapping) for la in layers)
    if not layers or not (has_cycles or has_energy):
        raise PacimError("the report has no per-layer cycles or energy to plot")
    names = [str(la.get("name")) for la in layers]
    pos = list(range(len(layers)))
    rows = int(has_cycles) + int(has_energy)
    fig = Figure(figsize=(max(7.0, 0.32 * len(layers) + 3), 3.4 * rows + 0.8),
                 layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    i = 0
    if has_cycles:
        ax = axes[i]
        i += 1
        total = [number(la.get("cycles")) or 0.0 for la in layers]
        stalls = [la.get("stall_cycles") or {} for la in layers]
        causes = list(dict.fromkeys(k for st in stalls for k, v in st.items()
                                    if k != "total" and number(v)))
        stall_sum = [sum(number(st.get(c)) or 0.0 for c in causes) for st in stalls]
        compute = [max(t - s, 0.0) for t, s in zip(total, stall_sum, strict=True)]
        ax.bar(pos, compute, color="tab:blue", label="compute")
        bottom = compute
        palette = colormaps["Oranges"]
        for j, c in enumerate(causes):  # stalls stacked by cause
            vals = [number(st.get(c)) or 0.0 for st in stalls]
            ax.bar(pos, vals, bottom=bottom, label=f"stall: {c}",
                   color=palette(0.35 + 0.55 * j / max(len(causes) - 1, 1)))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("cycles")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(True, axis="y", alpha=0.3)
    if has_energy:
        ax = axes[i]
        comps: dict[str, None] = {}
        for la in layers:
            for k, v in (la.get("energy_breakdown_pj") or {}).items():
                if number(v):
                    comps.setdefault(k)
        bottom = [0.0] * len(layers)
        palette = colormaps["tab20"]  # more components than the default 10-colour cycle
        for j, k in enumerate(comps):
            vals = [(number((la.get("energy_breakdown_pj") or {}).get(k)) or 0.0) / 1e6
                    for la in layers]
            ax.bar(pos, vals, bottom=bottom, label=k, color=palette(j % 20))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("energy (uJ)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1].set_xticks(pos, names, rotation=60, ha="right", fontsize=7)
    total_e = number(report.get("energy_pj"))
    title = f"{report.get('arch')} on {report.get('workload')}"
    if number(report.get("cycles")) is not None:
        title += f": {report['cycles']:,} cycles"
    if total_e is not None:
        title += f", {total_e / 1e6:.4g} uJ"
    axes[0].set_title(title, fontsize=10)
    save_figure(fig, out, option=option)
