"""numba kernels of the analog BP/BS model (pacim.macro.analog): bit-plane digits, ADC, noise.

The column sums s of binary products are computed by float32 GEMMs on *digit-packed* planes:
a plane group is one float32 operand sum_d bit_d * 2^(rb d), with rb bits per digit (rb =
bit_length(rows) so any tile's column sum fits one digit), so one GEMM yields several column
sums at once, exactly (every partial sum is an integer below 2^24). The kernels here unpack the
digits, convert each column sum with the ADC (gain, offset, Gaussian noise, clipping) and
shift-add the codes, as the near-memory datapath does.

Noise is counter-based, so it is the same whatever the blocking: conversion (p, k, tile, i, j)
draws splitmix64(key, its index) -> a uniform -> a standard normal by the inverse normal CDF
(Acklam's rational approximation, |relative error| < 1.2e-9).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_U53 = 1.0 / 9007199254740992.0  # 2^-53
P_LOW = 0.02425  # Acklam: below P_LOW (and above 1 - P_LOW) the tail formula applies

# Acklam's inverse-normal-CDF coefficients (central region a/b, tails c/d)
_A1, _A2, _A3 = -3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02
_A4, _A5, _A6 = 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00
_B1, _B2, _B3 = -5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02
_B4, _B5 = 6.680131188771972e01, -1.328068155288572e01
_C1, _C2, _C3 = -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00
_C4, _C5, _C6 = -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00
_D1, _D2, _D3, _D4 = 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, \
    3.754408661907416e00


@njit(cache=True, inline="always", error_model="numpy")
def mix64(z):  # pragma: no cover - compiled
    """splitmix64's finalizer of z + golden: a 64-bit hash of a uint64 counter."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always", error_model="numpy")
def _central(u):  # pragma: no cover - compiled
    q = u - 0.5
    r = q * q
    num = (((((_A1 * r + _A2) * r + _A3) * r + _A4) * r + _A5) * r + _A6) * q
    return num / (((((_B1 * r + _B2) * r + _B3) * r + _B4) * r + _B5) * r + 1.0)


@njit(cache=True, error_model="numpy")
def normals(key, start, out, u, idx):  # pragma: no cover - compiled
    """out[t] = the standard normal of counter start + t under `key` (uint64s).

    u (float64) and idx (int64), as long as out, are scratch. The central formula runs
    vectorized over all; the ~5% in the tails are listed branch-free, then fixed.
    """
    n = out.shape[0]
    for t in range(n):
        ut = (np.float64(mix64(key ^ (start + np.uint64(t))) >> _S11) + 0.5) * _U53
        u[t] = ut
        out[t] = _central(ut)
    c = 0
    for t in range(n):
        idx[c] = t
        c += min(u[t], 1.0 - u[t]) < P_LOW
    for m in range(c):
        t = idx[m]
        ut = u[t]
        q = math.sqrt(-2.0 * math.log(min(ut, 1.0 - ut)))
        z = (((((_C1 * q + _C2) * q + _C3) * q + _C4) * q + _C5) * q + _C6) / (
            (((_D1 * q + _D2) * q + _D3) * q + _D4) * q + 1.0)
        out[t] = z if ut < 0.5 else -z
    return out


@njit(cache=True, error_model="numpy")
def pack_weight(q, planes, rb, out):  # pragma: no cover - compiled
    """Digit-packed weight planes: out (N, G*K)[n, g*K + k] = sum_d bit(q[k, n], planes[g, d])
    * 2^(rb d), planes[g, d] = -1 for no plane. q: (K, N) codes."""
    k_, n_ = q.shape
    g_, m_ = planes.shape
    for g in range(g_):
        for k in range(k_):
            src = q[k]
            for n in range(n_):
                v = 0
                for d in range(m_):
                    pl = planes[g, d]
                    if pl >= 0:
                        v += ((np.int64(src[n]) >> pl) & 1) << (rb * d)
                out[n, g * k_ + k] = v
    return out


@njit(cache=True, error_model="numpy")
def unfold_digits(xflat, hp, wp, c_, kh, kw, stride, ho, wo, planes, step, r0, r1,
                  out):  # pragma: no cover - compiled
    """Rows r0..r1 of the im2col matrix of one digit-packed activation plane group:
    out (r1-r0, kh*kw*C) = sum_d bit(x, planes[d]) * 2^(step d), columns in (dy, dx, c) order.
    planes[d] = -1 for no plane."""
    run = kw * c_
    hw = ho * wo
    m_ = planes.shape[0]
    code = np.empty(run, dtype=np.int64)
    for r in range(r0, r1):
        b = r // hw
        rem = r - b * hw
        oy = rem // wo
        ox = rem - oy * wo
        orow = out[r - r0]
        for dy in range(kh):
            for dx in range(kw if stride != 1 else 1):
                if stride == 1:
                    base = ((b * hp + oy + dy) * wp + ox) * c_
                    length = run
                    o0 = dy * run
                else:
                    base = ((b * hp + oy * stride + dy) * wp + ox * stride + dx) * c_
                    length = c_
                    o0 = (dy * kw + dx) * c_
                src = xflat[base:base + length]
                for t in range(length):
                    code[t] = 0
                for d in range(m_):
                    pl = planes[d]
                    if pl >= 0:
                        for t in range(length):
                            code[t] += ((np.int64(src[t]) >> pl) & 1) << (step * d)
                dst = orow[o0:o0 + length]
                for t in range(length):
                    dst[t] = code[t]
    return out


@njit(cache=True, error_model="numpy")
def adc_accumulate(g, acc, xplanes, wplanes, rb, mw, tile, tiles, xbit, wbit, p0, c, offset,
                   levels, sigma, noisy, key, hist, clipped):  # pragma: no cover - compiled
    """Convert every column sum in one GEMM result and shift-add the codes into acc.

    g (R, G*K) float32: digit-packed column sums of rows p0..p0+R of tile `tile` for the
    activation planes xplanes (digits at 2^(rb*mw*dx)) and the weight groups wplanes (G, mw)
    (digits at 2^(rb*dw)). Each sum s becomes code = clip(floor(c s + offset + sigma[s] z +
    1/2), 0, levels), z ~ N(0, 1) when noisy, and acc[p, k] += code * 2^(i + j). hist (size 0
    to skip) counts the column sums; clipped[0] counts codes the ADC's top level clipped.
    sigma: per column sum, or one value for all (shape (1,)).
    """
    r_, k_ = acc.shape
    mask = (np.int64(1) << rb) - 1
    zrow = np.zeros(wbit * k_, dtype=np.float64)  # one row's normals of an input bit: (i, k)
    u = np.empty(wbit * k_, dtype=np.float64)
    idx = np.empty(wbit * k_, dtype=np.int64)
    s = np.empty(k_, dtype=np.int64)
    z = np.zeros(k_, dtype=np.float64)
    flat_sigma = sigma.shape[0] == 1  # no signal-dependent term: one sigma for all sums
    nclip = 0
    top = levels + 1.0
    for p in range(r_):
        gp = g[p]
        ap = acc[p]
        pg = np.uint64(p0 + p)
        for dx in range(xplanes.shape[0]):
            j = xplanes[dx]
            if j < 0:
                continue
            if noisy:  # counters (((p T + tile) xbit + j) wbit + i) K + k are contiguous in (i, k)
                cnt = ((pg * np.uint64(tiles) + np.uint64(tile)) * np.uint64(xbit)
                       + np.uint64(j)) * np.uint64(wbit) * np.uint64(k_)
                normals(key, cnt, zrow, u, idx)
            for grp in range(wplanes.shape[0]):
                for dw in range(mw):
                    i = wplanes[grp, dw]
                    if i < 0:
                        continue
                    sh = rb * (dx * mw + dw)
                    wgt = np.float64(np.int64(1) << (i + j))
                    for k in range(k_):
                        s[k] = (np.int64(gp[grp * k_ + k]) >> sh) & mask
                    if noisy:
                        zi = zrow[i * k_:(i + 1) * k_]
                        if flat_sigma:
                            for k in range(k_):
                                z[k] = zi[k] * sigma[0]
                        else:
                            for k in range(k_):  # a gather: kept out of the vectorized loop
                                z[k] = zi[k] * sigma[s[k]]
                        for k in range(k_):
                            v = c * s[k] + offset + z[k] + 0.5
                            nclip += v >= top
                            ap[k] += min(max(np.floor(v), 0.0), levels) * wgt
                    else:
                        for k in range(k_):
                            v = c * s[k] + offset + 0.5
                            nclip += v >= top
                            ap[k] += min(max(np.floor(v), 0.0), levels) * wgt
                    if hist.shape[0]:
                        for k in range(k_):
                            hist[s[k]] += 1
    clipped[0] += nclip
    return acc
