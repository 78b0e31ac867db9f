"""numba kernels of the macro: every loop numpy cannot vectorize lives here.

Small typed kernels over contiguous arrays, ``cache=True``, no Python objects inside.
GEMMs are not here: they go to BLAS through numpy. The kernels are serial on purpose: on a
2-core machine numba's thread pool and OpenBLAS's spinning threads slow each other down
(measured: the dynamic-mode layer ran 1.3x faster with NUMBA_NUM_THREADS=1), and the GEMMs,
which dominate, already use every core.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def im2col(xp, kh, kw, stride, ho, wo):  # pragma: no cover - compiled
    """Unfold a padded (B, C, Hp, Wp) code tensor to (B*ho*wo, C*kh*kw), same dtype.

    Column order is (c, dy, dx), matching weight.reshape(K, C*kh*kw).
    """
    b_, c_, _, _ = xp.shape
    n = c_ * kh * kw
    out = np.empty((b_ * ho * wo, n), dtype=xp.dtype)
    for bo in range(b_ * ho):
        b = bo // ho
        oy = bo % ho
        iy0 = oy * stride
        for ox in range(wo):
            row = bo * wo + ox
            ix0 = ox * stride
            col = 0
            for c in range(c_):
                for dy in range(kh):
                    for dx in range(kw):
                        out[row, col] = xp[b, c, iy0 + dy, ix0 + dx]
                        col += 1
    return out


@njit(cache=True)
def box_plane_counts(xp, bits, kh, kw, stride, ho, wo):  # pragma: no cover - compiled
    """Per output window of a padded (B, C, Hp, Wp) code tensor, the ones of each bit-plane.

    Returns int64 (B*ho*wo, bits): S_x,j over the C*kh*kw window (padding included),
    computed as box sums of per-plane channel sums (integral images), not by unfolding.
    """
    b_, c_, hp, wp = xp.shape
    out = np.empty((b_ * ho * wo, bits), dtype=np.int64)
    for bj in range(b_ * bits):
        b = bj // bits
        j = bj % bits
        integ = np.zeros((hp + 1, wp + 1), dtype=np.int64)
        for y in range(hp):
            for x in range(wp):
                s = 0
                for c in range(c_):
                    s += (xp[b, c, y, x] >> j) & 1
                integ[y + 1, x + 1] = s + integ[y, x + 1] + integ[y + 1, x] - integ[y, x]
        for oy in range(ho):
            y0 = oy * stride
            for ox in range(wo):
                x0 = ox * stride
                y1 = y0 + kh
                x1 = x0 + kw
                out[(b * ho + oy) * wo + ox, j] = (
                    integ[y1, x1] - integ[y0, x1] - integ[y1, x0] + integ[y0, x0]
                )
    return out


@njit(cache=True)
def row_plane_counts(q, bits):  # pragma: no cover - compiled
    """Ones of each bit-plane along each row of a (P, N) code matrix: int64 (P, bits)."""
    p_, n_ = q.shape
    out = np.zeros((p_, bits), dtype=np.int64)
    for r in range(p_):
        for n in range(n_):
            v = q[r, n]
            for j in range(bits):
                out[r, j] += (v >> j) & 1
    return out


@njit(cache=True)
def shifted_float(q, shift, out):  # pragma: no cover - compiled
    """out[r, n] = q[r, n] >> shift, as the float dtype of `out` (the MSB codes for a GEMM)."""
    p_, n_ = q.shape
    for r in range(p_):
        for n in range(n_):
            out[r, n] = q[r, n] >> shift
    return out


@njit(cache=True)
def gather_lut(q, rows, lvl, lut, out):  # pragma: no cover - compiled
    """out[r, n] = lut[lvl[r], q[rows[r], n]]: a per-row weighted mix of activation bit-planes.

    lut[l, v] = sum_j coef[l, j] * bit_j(v) for the pairs one weight plane takes part in at
    dynamic level l, so (out @ W_plane.T) sums those exact pair products for every row.
    """
    n_ = q.shape[1]
    for r in range(rows.shape[0]):
        src = rows[r]
        t = lvl[r]
        for n in range(n_):
            out[r, n] = lut[t, q[src, n]]
    return out
