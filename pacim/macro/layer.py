"""The macro front end: a layer call on prepared operands -> float outputs and MacroStats.

Every caller goes through here: pacim.functional (the float API), the simulate pipeline, the
ONNX executor, the LLM front end and the error study. Dequantization of one output, with
x~ = s_x/(2^xb-1) q_x + b_x per image and w~ likewise per tensor:

    y = mac * step_x step_w + b_x sum(w~) + b_w sum(x~) - N b_w b_x (+ bias)

which equals sum_n w~_n x~_n exactly when mac is the exact integer dot product. The terms after
the first, and the approximated pairs' count products inside mac, are a low-rank product
(left (P, r) @ right (r, K)), so the output is written in one pass over the digital MACs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import engine, kernels
from .engine import MacParts
from .operands import Activations, PreparedWeight
from .stats import MacroStats

Layout = Literal["rows", "nchw"]


def dequantize(
    parts: MacParts, act: Activations, pw: PreparedWeight, bias: np.ndarray | None,
    layout: Layout = "rows",
) -> np.ndarray:
    """Float64 outputs from the integer MACs: (P, K) rows, or (B, K, Ho, Wo) for layout="nchw"."""
    n = act.n
    step_x = act.per_row(act.step)
    bias_x = act.per_row(act.bias)
    s = step_x * pw.step  # (P,) value of one unit of the integer MAC
    sum_qx = parts.x_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(act.bits))
    sum_xt = step_x * sum_qx + n * bias_x  # sum of x~ over the window (padding included)
    cols = [bias_x, pw.bias * sum_xt - (n * pw.bias) * bias_x]
    rows = [pw.sum_wt, np.ones(pw.k)]
    if bias is not None:
        cols.append(np.ones(act.rows))
        rows.append(np.asarray(bias, dtype=np.float64))
    left = np.stack(cols, axis=1)
    right = np.stack(rows)
    if parts.approx_left is not None:
        left = np.concatenate([parts.approx_left * s[:, None], left], axis=1)
        right = np.concatenate([parts.approx_right, right])
    left = np.ascontiguousarray(left)
    right = np.ascontiguousarray(right)
    scale = s * parts.unit
    if layout == "nchw":
        ho, wo = act.out_hw
        out = np.empty((act.images, pw.k, ho * wo), dtype=np.float64)
        kernels.finish_nchw(parts.digital, scale, left, right, out)
        return out.reshape(act.images, pw.k, ho, wo)
    out = np.empty((act.rows, pw.k), dtype=np.float64)
    return kernels.finish(parts.digital, scale, left, right, out)


def macro_stats(parts: MacParts, act: Activations, pw: PreparedWeight, operand: int,
                approx: str) -> MacroStats:
    """What the macro did for this call."""
    k = pw.k
    cyc = parts.cycles.astype(np.int64)
    return MacroStats(
        macs=act.rows * k * act.n,
        n=act.n,
        outputs=act.rows * k,
        positions=act.rows,
        xbit=act.bits,
        wbit=pw.bits,
        operand=operand,
        approx=approx,
        digital_cycles_mean=float(cyc.mean()),
        cycle_hist={c: cnt * k for c, cnt in parts.level_counts.items()},
        pac_pairs=int((act.bits * pw.bits - cyc).sum()) * k,
        x_density=act.density(),
        w_density=pw.density(),
    )


def apply(
    act: Activations,
    pw: PreparedWeight,
    bias: np.ndarray | None = None,
    *,
    operand: int = 4,
    approx: str = "pac",
    dynamic: tuple[float, float, float] | None = None,
    stats: bool = True,
    layout: Layout = "rows",
) -> tuple[np.ndarray, MacroStats | None]:
    """One layer call through the macro: (float64 outputs, MacroStats or None).

    layout "rows" gives (P, K) (a linear layer's (B, K)); "nchw" gives a conv's (B, K, Ho, Wo).
    """
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (pw.k,):
            raise ValueError(f"bias must have shape ({pw.k},), got {bias.shape}")
    parts = engine.compute(act, pw, operand=operand, approx=approx, dynamic=dynamic)
    y = dequantize(parts, act, pw, bias, layout)
    return y, macro_stats(parts, act, pw, operand, approx) if stats else None
