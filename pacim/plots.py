"""matplotlib figures of a simulate report (Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import PacimError  # noqa: E402

_MIN_PIE_SHARE = 0.02  # slices below 2% are merged into "other"


def _breakdowns(report: dict[str, Any]) -> tuple[list[str], list[dict[str, float]]]:
    names, rows = [], []
    for la in report.get("layers") or []:
        b = la.get("energy_breakdown_pj")
        if b:
            names.append(str(la.get("name", len(names))))
            rows.append(b)
    return names, rows


def plot_energy_breakdown(report: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG: energy per layer as stacked bars by component, and the total as a pie.

    report: a Report.to_dict() (needs `energy_breakdown_pj` per layer or at the top level).
    """
    names, rows = _breakdowns(report)
    total = report.get("energy_breakdown_pj")
    if not total and rows:
        total = {k: sum(r.get(k, 0.0) for r in rows) for k in rows[0]}
    if not total:
        raise PacimError("the report has no energy breakdown to plot")
    comps = [k for k, v in total.items() if v > 0] or list(total)
    cmap = plt.get_cmap("tab20")
    colors = {k: cmap(i % 20) for i, k in enumerate(comps)}

    fig, (ax_bar, ax_pie) = plt.subplots(
        1, 2, figsize=(min(24.0, 9.0 + 0.3 * len(names)), 5.5),
        gridspec_kw={"width_ratios": [max(1.5, 0.08 * len(names) + 1.0), 1.0]},
    )
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
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


plot_report = plot_energy_breakdown  # the name pacim/cli.py imports for `simulate --plot`
