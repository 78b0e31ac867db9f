"""Approximation-error study: PAC vs truncation vs expected-value, per operand, on real layers.

For every PAC layer (all mapped layers but an exact first layer) the integer MAC of each
approximation is compared with the exact integer MAC of the same quantized tensors. Also
compares the measured std of PAC's error with the hypergeometric prediction: for independent
random bit positions, each approximated pair's overlap count is hypergeometric, so

    Var[err] = sum_{(i,j) not in D} 4^(i+j) S_w,i (N - S_w,i) S_x,j (N - S_x,j) / (N^2 (N - 1))

(pairs taken as independent). Real data is not random, so the ratio measured/predicted tells
how far the independence assumption behind PAC holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .macro.core import approx_term, digital_set, pair_weights
from .macro.engine import compute
from .pipeline import layer_operands
from .workloads.ir import Layer, Workload

APPROXES = ("pac", "truncate", "expected")


def hypergeometric_std(sx: np.ndarray, sw: np.ndarray, n: int, nd: np.ndarray) -> float:
    """Predicted RMS of PAC's error over all (row, column) outputs, pairs independent."""
    w4 = pair_weights(sx.shape[1], sw.shape[1]) ** 2  # 4^(i+j), (wbit, xbit)
    ax = (sx * (n - sx)).astype(np.float64).mean(axis=0)  # (xbit,) mean over rows
    aw = (sw * (n - sw)).astype(np.float64).mean(axis=0)  # (wbit,)
    var = float((w4 * nd * np.outer(aw, ax)).sum()) / (n * n * max(n - 1, 1))
    return math.sqrt(var)


def study_layer(layer: Layer, operands: Sequence[int], xbit: int = 8, wbit: int = 8
                ) -> dict[str, Any]:
    """Error figures of one layer for every operand and approximation method."""
    act, pw = layer_operands(layer, xbit, wbit)
    sx, sw, n = act.window_counts(), pw.counts, act.n
    full = max(xbit, wbit)
    exact = compute(act, pw, operand=full, approx="truncate").mac()
    ref_sq = float(np.sum(exact * exact))
    out: dict[str, Any] = {"name": layer.name, "kind": layer.kind, "n": n,
                           "outputs": int(exact.size), "operands": {}}
    for op in operands:
        digital = compute(act, pw, operand=op, approx="truncate").mac()
        nd = ~digital_set(xbit, wbit, op)
        per: dict[str, Any] = {}
        for ap in APPROXES:
            err = digital + approx_term(ap, nd, sx, sw, n, xbit, wbit) - exact
            sq = float(np.sum(err * err))
            per[ap] = {"sq_err": sq, "rmse": math.sqrt(sq / err.size),
                       "rel_rmse": math.sqrt(sq / ref_sq) if ref_sq else 0.0,
                       "sqnr_db": 10 * math.log10(ref_sq / sq) if sq else math.inf}
        pac_err = digital + approx_term("pac", nd, sx, sw, n, xbit, wbit) - exact
        per["pac"]["std"] = float(pac_err.std())
        per["pac"]["mean"] = float(pac_err.mean())
        per["pac"]["hypergeometric_std"] = hypergeometric_std(sx, sw, n, nd)
        out["operands"][str(op)] = per
    out["ref_sq"] = ref_sq
    return out


def error_study(
    workloads: Sequence[Workload],
    operands: Sequence[int] = (2, 3, 4, 5, 6),
    *,
    skip_first: bool = True,
    xbit: int = 8,
    wbit: int = 8,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Run the study on every PAC layer of each workload; pooled figures per workload.

    With skip_first, a CNN's first conv (kept exact by PACiM) is left out.
    """
    result: dict[str, Any] = {"operands": list(operands), "workloads": {}}
    jobs = []
    for wl in workloads:
        mapped = [la for la in wl.layers if la.mapped]
        # PACiM keeps a CNN's first conv exact; LLM blocks have no such layer
        skip = skip_first and bool(mapped) and mapped[0].kind == "conv2d"
        jobs += [(wl.name, la) for la in (mapped[1:] if skip else mapped)]
    per_wl: dict[str, list[dict[str, Any]]] = {wl.name: [] for wl in workloads}
    for i, (wname, la) in enumerate(jobs):
        if progress is not None:
            progress(i, len(jobs), f"{wname}:{la.name}")
        per_wl[wname].append(study_layer(la, operands, xbit, wbit))
    for wname, layers in per_wl.items():
        pooled: dict[str, Any] = {}
        ref = sum(la["ref_sq"] for la in layers)
        for op in operands:
            row: dict[str, Any] = {}
            for ap in APPROXES:
                sq = sum(la["operands"][str(op)][ap]["sq_err"] for la in layers)
                row[ap] = {"rel_rmse": math.sqrt(sq / ref) if ref else 0.0,
                           "sqnr_db": 10 * math.log10(ref / sq) if sq else math.inf}
            pac_rel = row["pac"]["rel_rmse"]
            row["truncate_over_pac"] = row["truncate"]["rel_rmse"] / pac_rel if pac_rel else None
            row["expected_over_pac"] = row["expected"]["rel_rmse"] / pac_rel if pac_rel else None
            meas = [la["operands"][str(op)]["pac"]["std"] for la in layers]
            pred = [la["operands"][str(op)]["pac"]["hypergeometric_std"] for la in layers]
            ratios = [m / p for m, p in zip(meas, pred, strict=True) if p > 0]
            row["pac_std_over_hypergeometric_median"] = float(np.median(ratios)) if ratios else None
            pooled[str(op)] = row
        result["workloads"][wname] = {"layers": layers, "pooled": pooled}
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    return result


def format_study(res: dict[str, Any]) -> str:
    """Text table: pooled relative RMSE / SQNR per operand, the baseline/PAC ratios."""
    lines = []
    for wname, w in res["workloads"].items():
        lines.append(f"workload {wname} ({len(w['layers'])} PAC layers), MAC error vs exact")
        lines.append(f"{'op':>3} {'PAC relRMSE':>12} {'trunc':>10} {'expect':>10} "
                     f"{'PAC SQNR':>9} {'trunc/PAC':>10} {'expect/PAC':>10} {'std/hyper':>9}")
        for op, row in w["pooled"].items():
            def f(v: Any, spec: str = ".3g") -> str:
                return "-" if v is None else format(v, spec)
            lines.append(
                f"{op:>3} {f(row['pac']['rel_rmse']):>12} {f(row['truncate']['rel_rmse']):>10} "
                f"{f(row['expected']['rel_rmse']):>10} {f(row['pac']['sqnr_db'], '.1f'):>9} "
                f"{f(row['truncate_over_pac'], '.2f'):>10} {f(row['expected_over_pac'], '.2f'):>10}"
                f" {f(row['pac_std_over_hypergeometric_median'], '.2f'):>9}")
        lines.append("")
    return "\n".join(lines)
