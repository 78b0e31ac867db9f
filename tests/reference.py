"""Straightforward (slow) bit-serial reference of the PACiM macro, written from the spec.

Loops over every output, every bit-pair and every element; shares no code with pacim.macro.
"""

from __future__ import annotations

import numpy as np


def ref_quantize(t: np.ndarray, bits: int) -> tuple[np.ndarray, float, float]:
    """(q as int64, scale, bias) by the PACiM formula."""
    t = np.asarray(t, dtype=np.float64)
    bias = t.min()
    scale = (t - bias).max() + 1e-7
    q = np.round(np.clip((t - bias) / scale, 0, 1) * (2**bits - 1)).astype(np.int64)
    return q, scale, bias


def ref_digital_set(xbit: int, wbit: int, operand: int, moved_upto: int | None = None) -> set:
    """D(operand), minus pairs with i + j <= moved_upto (dynamic configuration)."""
    d = set()
    for i in range(wbit):
        for j in range(xbit):
            if i >= wbit - operand and j >= xbit - operand:
                if moved_upto is None or i + j > moved_upto:
                    d.add((i, j))
    return d


def ref_mac(qx: np.ndarray, qw: np.ndarray, xbit: int, wbit: int, dset: set,
            approx: str = "pac") -> tuple[int, float]:
    """(exact part over D, approximated part) of one dot product, pair by pair."""
    n = len(qx)
    exact = 0
    approx_part = 0.0
    for i in range(wbit):
        w_i = [(int(v) >> i) & 1 for v in qw]
        for j in range(xbit):
            x_j = [(int(v) >> j) & 1 for v in qx]
            if (i, j) in dset:
                exact += 2 ** (i + j) * sum(a * b for a, b in zip(w_i, x_j, strict=True))
            elif approx == "pac":
                approx_part += 2 ** (i + j) * sum(w_i) * sum(x_j) / n
            elif approx == "expected":
                approx_part += 2 ** (i + j) * n / 4
    return exact, approx_part


def dyn_moved_upto(e: float, thresholds: tuple[float, float, float]) -> int | None:
    """Pairs with i + j <= this are moved to PAC (8b/8b, operand 4 table)."""
    t0, t1, t2 = thresholds
    if e > t2:
        return None
    if e > t1:
        return 8
    if e > t0:
        return 9
    return 10


def ref_conv2d(x, w, bias=None, *, stride=1, padding=0, xbit=8, wbit=8, operand=4,
               approx="pac", dynamic=None):
    """Returns (y float64 (B,K,Ho,Wo), exact parts, approx parts, cycles per position)."""
    qx, sx, bx = ref_quantize(x, xbit)
    qw, sw, bw = ref_quantize(w, wbit)
    z = int(np.round(np.clip(abs(bx) / sx, 0, 1) * (2**xbit - 1)))
    stepx, stepw = sx / (2**xbit - 1), sw / (2**wbit - 1)
    b_, c_, h, wd = x.shape
    k_, _, kh, kw = w.shape
    xp = np.full((b_, c_, h + 2 * padding, wd + 2 * padding), z, dtype=np.int64)
    xp[:, :, padding:padding + h, padding:padding + wd] = qx
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    n = c_ * kh * kw
    y = np.zeros((b_, k_, ho, wo))
    ex = np.zeros((b_, k_, ho, wo), dtype=np.int64)
    ap = np.zeros((b_, k_, ho, wo))
    cycles = np.zeros((b_, ho, wo), dtype=np.int64)
    for b in range(b_):
        for oy in range(ho):
            for ox in range(wo):
                win = xp[b, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
                xv = win.reshape(-1)
                moved = None
                if dynamic is not None:
                    moved = dyn_moved_upto(xv.sum() * 576 / n, dynamic)
                dset = ref_digital_set(xbit, wbit, operand, moved)
                cycles[b, oy, ox] = len(dset)
                sum_xt = (xv * stepx + bx).sum()
                for k in range(k_):
                    wv = qw[k].reshape(-1)
                    e, a = ref_mac(xv, wv, xbit, wbit, dset, approx)
                    ex[b, k, oy, ox] = e
                    ap[b, k, oy, ox] = a
                    sum_wt = (wv * stepw + bw).sum()
                    y[b, k, oy, ox] = ((e + a) * stepx * stepw + bx * sum_wt + bw * sum_xt
                                       - n * bw * bx + (0.0 if bias is None else bias[k]))
    return y, ex, ap, cycles


def ref_linear(x, w, bias=None, *, xbit=8, wbit=8, operand=4, approx="pac"):
    """Returns (y (B, K), exact parts, approx parts)."""
    qx, sx, bx = ref_quantize(x, xbit)
    qw, sw, bw = ref_quantize(w, wbit)
    stepx, stepw = sx / (2**xbit - 1), sw / (2**wbit - 1)
    n = x.shape[1]
    dset = ref_digital_set(xbit, wbit, operand)
    y = np.zeros((x.shape[0], w.shape[0]))
    ex = np.zeros(y.shape, dtype=np.int64)
    ap = np.zeros(y.shape)
    for b in range(x.shape[0]):
        for k in range(w.shape[0]):
            e, a = ref_mac(qx[b], qw[k], xbit, wbit, dset, approx)
            ex[b, k], ap[b, k] = e, a
            y[b, k] = ((e + a) * stepx * stepw + bx * (qw[k] * stepw + bw).sum()
                       + bw * (qx[b] * stepx + bx).sum() - n * bw * bx
                       + (0.0 if bias is None else bias[k]))
    return y, ex, ap
