"""numba kernels of the macro: every loop numpy cannot vectorize lives here.

Small typed kernels over contiguous arrays, ``cache=True``, no Python objects inside. Inner loops
run over unit-stride slices so LLVM vectorizes them (an index like ``out[o + t]`` with a signed
offset keeps numba's negative-index check and blocks vectorization: 10x slower, measured).
GEMMs are not here: they go to BLAS through numpy. The kernels are serial on purpose: on a
2-core machine numba's thread pool and OpenBLAS's threads slow each other down, and the GEMMs,
which dominate, already use every core.

Activations are held as padded NHWC code tensors (B, Hp, Wp, C): one output position's window
is then kh runs of kw*C contiguous codes, and a linear layer is the 1x1 case (B rows, 1x1, N).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def popcount64(typingctx, x):  # pragma: no cover - compiled
    """Population count of a uint64 (LLVM ctpop: POPCNT, or VPOPCNTQ once vectorized)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True)
def _border(out, b, pt, pl, h, w, z):  # pragma: no cover - compiled
    """Fill image b's padding border of NHWC `out` with code z."""
    for y in range(out.shape[1]):
        row = out[b, y]
        if y < pt or y >= pt + h:
            row[:, :] = z
        else:
            row[:pl, :] = z
            row[pl + w:, :] = z


@njit(cache=True)
def quantize_nhwc(x, lo, scale, levels, pads, pad_code, out):  # pragma: no cover - compiled
    """Quantize (B, C, H, W) floats per image into padded NHWC codes `out` (B, Hp, Wp, C).

    q = round_half_even(clip((v - lo[b]) / scale[b], 0, 1) * levels), the same float64 operations
    as pacim.quant.quantize; the border (pads = top, left, bottom, right) holds pad_code[b].
    One image row at a time: quantize (C, W) with unit stride, then transpose it in L1.
    """
    b_, c_, h, w = x.shape
    pt, pl = pads[0], pads[1]
    row = np.empty((c_, w), dtype=out.dtype)
    for b in range(b_):
        _border(out, b, pt, pl, h, w, pad_code[b])
        lo_b = lo[b]
        sc_b = scale[b]
        for y in range(h):
            for c in range(c_):
                src = x[b, c, y]
                r_c = row[c]
                for xx in range(w):
                    r = (np.float64(src[xx]) - lo_b) / sc_b
                    r = min(max(r, 0.0), 1.0)
                    r_c[xx] = np.rint(r * levels)
            dst = out[b, pt + y]
            for xx in range(w):
                d = dst[pl + xx]
                for c in range(c_):
                    d[c] = row[c, xx]
    return out


@njit(cache=True)
def quantize_rows(x, lo, scale, levels, out):  # pragma: no cover - compiled
    """Quantize each row b of a 2-D float array with (lo[b], scale[b]) into `out` (same shape)."""
    for b in range(x.shape[0]):
        src = x[b]
        dst = out[b]
        lo_b = lo[b]
        sc_b = scale[b]
        for t in range(src.shape[0]):
            r = (np.float64(src[t]) - lo_b) / sc_b
            r = min(max(r, 0.0), 1.0)
            dst[t] = np.rint(r * levels)
    return out


@njit(cache=True)
def codes_nhwc(q, pads, pad_code, out):  # pragma: no cover - compiled
    """Integer codes (B, C, H, W) into padded NHWC `out` (B, Hp, Wp, C), border = pad_code[b]."""
    b_, c_, h, w = q.shape
    pt, pl = pads[0], pads[1]
    for b in range(b_):
        _border(out, b, pt, pl, h, w, pad_code[b])
        for y in range(h):
            dst = out[b, pt + y]
            for xx in range(w):
                d = dst[pl + xx]
                for c in range(c_):
                    d[c] = q[b, c, y, xx]
    return out


@njit(cache=True)
def window_plane_counts(pix, kh, kw, stride, ho, wo):  # pragma: no cover - compiled
    """Per output window, the ones of each plane: box sums (integral image) of pixel counts.

    pix: (B, Hp, Wp, bits) pixel counts -> int64 (B*ho*wo, bits), padding included.
    """
    b_, hp, wp, bits = pix.shape
    out = np.empty((b_ * ho * wo, bits), dtype=np.int64)
    integ = np.zeros((hp + 1, wp + 1, bits), dtype=np.int64)
    for b in range(b_):
        for y in range(hp):
            for x in range(wp):
                a = integ[y + 1, x + 1]
                u = integ[y, x + 1]
                v = integ[y + 1, x]
                d = integ[y, x]
                s = pix[b, y, x]
                for j in range(bits):
                    a[j] = s[j] + u[j] + v[j] - d[j]
        for oy in range(ho):
            y0 = oy * stride
            y1 = y0 + kh
            for ox in range(wo):
                x0 = ox * stride
                x1 = x0 + kw
                o = out[(b * ho + oy) * wo + ox]
                for j in range(bits):
                    o[j] = integ[y1, x1, j] - integ[y0, x1, j] - integ[y1, x0, j] + integ[y0, x0, j]
    return out


@njit(cache=True)
def unfold_shifted(xflat, hp, wp, c_, kh, kw, stride, ho, wo, shift, r0, r1,
                   out):  # pragma: no cover - compiled
    """Rows r0..r1 of the im2col matrix of (codes >> shift) as floats: out (r1-r0, kh*kw*C).

    xflat is the flat padded NHWC code tensor; columns are ordered (dy, dx, c).
    """
    run = kw * c_
    hw = ho * wo
    for r in range(r0, r1):
        b = r // hw
        rem = r - b * hw
        oy = rem // wo
        ox = rem - oy * wo
        orow = out[r - r0]
        for dy in range(kh):
            if stride == 1:
                base = ((b * hp + oy + dy) * wp + ox) * c_
                src = xflat[base:base + run]
                dst = orow[dy * run:(dy + 1) * run]
                for t in range(run):
                    dst[t] = src[t] >> shift  # shift has the codes' dtype: vectorizes
            else:
                for dx in range(kw):
                    base = ((b * hp + oy * stride + dy) * wp + ox * stride + dx) * c_
                    src = xflat[base:base + c_]
                    o0 = (dy * kw + dx) * c_
                    dst = orow[o0:o0 + c_]
                    for c in range(c_):
                        dst[c] = src[c] >> shift
    return out


@njit(cache=True)
def split_digits(q, shift, d, out):  # pragma: no cover - compiled
    """out (2K, N) = [(q >> shift) >> d ; (q >> shift) & (2^d - 1)] for q (K, N), as floats."""
    k_ = q.shape[0]
    mask = (1 << d) - 1
    for k in range(k_):
        src = q[k]
        hi = out[k]
        lo = out[k_ + k]
        for n in range(src.shape[0]):
            v = src[n] >> shift
            hi[n] = v >> d
            lo[n] = v & mask
    return out


@njit(cache=True)
def pack_planes(flat, planes, words):  # pragma: no cover - compiled
    """Bit-pack the given planes of each pixel's C codes: (pixels, C) -> uint64 (pixels, np, words).

    Bit c % 64 of word c // 64 is bit `planes[t]` of code c; bits past C are 0.
    """
    p_, c_ = flat.shape
    out = np.zeros((p_, planes.shape[0], words), dtype=np.uint64)
    for p in range(p_):
        row = flat[p]
        for t in range(planes.shape[0]):
            j = planes[t]
            for w in range(words):
                seg = row[w * 64:min(c_, w * 64 + 64)]
                acc = np.uint64(0)
                for c in range(seg.shape[0]):  # an OR-reduction LLVM vectorizes
                    acc |= np.uint64((seg[c] >> j) & 1) << np.uint64(c)
                out[p, t, w] = acc
    return out


@njit(cache=True)
def _window_words(xbits, p, hw, wo, stride, kh, kw, out):  # pragma: no cover - compiled
    """out[j] = the packed words of plane j over row p's window, in (dy, dx, word) order."""
    npx, words = xbits.shape[1], xbits.shape[4]
    b = p // hw
    rem = p - b * hw
    oy = rem // wo
    ox = rem - oy * wo
    for j in range(npx):
        t = 0
        for dy in range(kh):
            src = xbits[b, j, oy * stride + dy]
            for dx in range(kw):
                pix = src[ox * stride + dx]
                for cw in range(words):
                    out[j, t] = pix[cw]
                    t += 1


@njit(cache=True)
def subtract_pairs(xbits, wbits, rows, lvl, pair_start, pair_x, pair_w, pair_shift,
                   kh, kw, stride, ho, wo, dig):  # pragma: no cover - compiled
    """dig[p] -= sum over row p's pairs t of 2^shift_t * (x plane . w plane), by popcount.

    xbits: uint64 (B, npx, Hp, Wp, words) packed activation planes; wbits: uint64
    (npw, kh*kw*words, K) packed weight planes (K innermost). rows are sorted by level lvl;
    a row of level l uses pairs pair_start[l]..pair_start[l+1]. This is the exact bit-serial
    sum of the pairs a dynamic level moves out of the digital set, as a D-CiM bank computes one
    pair: AND + popcount. Four rows of one level share each weight word load. dig holds exact
    integers (float32 below 2^24, or float64).
    """
    npx = xbits.shape[1]
    k_ = wbits.shape[2]
    nw = kh * kw * xbits.shape[4]
    hw = ho * wo
    xw = np.empty((4, npx, nw), dtype=np.uint64)
    acc = np.zeros((4, k_), dtype=np.int64)
    nr = rows.shape[0]
    r = 0
    while r < nr:
        m = 4 if (r + 3 < nr and lvl[r + 3] == lvl[r]) else 1
        for u in range(m):
            _window_words(xbits, rows[r + u], hw, wo, stride, kh, kw, xw[u])
        acc[:, :] = 0
        a_0, a_1, a_2, a_3 = acc[0], acc[1], acc[2], acc[3]
        lv = lvl[r]
        for t in range(pair_start[lv], pair_start[lv + 1]):
            wpl = wbits[pair_w[t]]
            sh = pair_shift[t]
            j = pair_x[t]
            xa = xw[0, j]
            if m == 4:
                xb, xc, xd = xw[1, j], xw[2, j], xw[3, j]
                w = 0
                while w + 2 <= nw:
                    a0, a1, b0, b1 = xa[w], xa[w + 1], xb[w], xb[w + 1]
                    c0, c1, d0, d1 = xc[w], xc[w + 1], xd[w], xd[w + 1]
                    r0, r1 = wpl[w], wpl[w + 1]
                    for k in range(k_):
                        q0 = r0[k]
                        q1 = r1[k]
                        a_0[k] += np.int64(popcount64(a0 & q0) + popcount64(a1 & q1)) << sh
                        a_1[k] += np.int64(popcount64(b0 & q0) + popcount64(b1 & q1)) << sh
                        a_2[k] += np.int64(popcount64(c0 & q0) + popcount64(c1 & q1)) << sh
                        a_3[k] += np.int64(popcount64(d0 & q0) + popcount64(d1 & q1)) << sh
                    w += 2
                while w < nw:
                    a0, b0, c0, d0 = xa[w], xb[w], xc[w], xd[w]
                    r0 = wpl[w]
                    for k in range(k_):
                        q0 = r0[k]
                        a_0[k] += np.int64(popcount64(a0 & q0)) << sh
                        a_1[k] += np.int64(popcount64(b0 & q0)) << sh
                        a_2[k] += np.int64(popcount64(c0 & q0)) << sh
                        a_3[k] += np.int64(popcount64(d0 & q0)) << sh
                    w += 1
            else:
                w = 0
                while w + 4 <= nw:  # four words per pass: fewer accumulator round trips
                    a0, a1, a2, a3 = xa[w], xa[w + 1], xa[w + 2], xa[w + 3]
                    r0, r1, r2, r3 = wpl[w], wpl[w + 1], wpl[w + 2], wpl[w + 3]
                    for k in range(k_):
                        s = (popcount64(a0 & r0[k]) + popcount64(a1 & r1[k])) + (
                            popcount64(a2 & r2[k]) + popcount64(a3 & r3[k]))
                        a_0[k] += np.int64(s) << sh
                    w += 4
                while w < nw:
                    a0 = xa[w]
                    r0 = wpl[w]
                    for k in range(k_):
                        a_0[k] += np.int64(popcount64(a0 & r0[k])) << sh
                    w += 1
        for u in range(m):
            d = dig[rows[r + u]]
            au = acc[u]
            for k in range(k_):
                d[k] -= au[k]
        r += m
    return dig


@njit(cache=True)
def _finish_row(d, s, lp, right, t):  # pragma: no cover - compiled
    """t = d * s + lp @ right for one row (vectorized over K)."""
    for k in range(t.shape[0]):
        t[k] = d[k] * s
    for r in range(lp.shape[0]):
        lr = lp[r]
        rr = right[r]
        for k in range(t.shape[0]):
            t[k] += lr * rr[k]


@njit(cache=True)
def finish(dig, scale, left, right, out):  # pragma: no cover - compiled
    """out (P, K) = dig * scale[:, None] + left @ right.

    dig (P, K) exact integer MACs, scale (P,), left (P, r), right (r, K): the low-rank terms
    (PAC count products, dequantization sums, bias).
    """
    for p in range(dig.shape[0]):
        _finish_row(dig[p], scale[p], left[p], right, out[p])
    return out


@njit(cache=True)
def finish_nchw(dig, scale, left, right, out):  # pragma: no cover - compiled
    """As `finish`, written as NCHW out (B, K, hw) with row p = b * hw + q, via a 32-row tile."""
    b_, k_, hw = out.shape
    tile = np.empty((32, k_), dtype=np.float64)
    for b in range(b_):
        for q0 in range(0, hw, 32):
            q1 = min(q0 + 32, hw)
            for q in range(q0, q1):
                p = b * hw + q
                _finish_row(dig[p], scale[p], left[p], right, tile[q - q0])
            for k in range(k_):
                o = out[b, k]
                for q in range(q0, q1):
                    o[q] = tile[q - q0, k]
    return out


@njit(cache=True)
def error_sums(y, ref):  # pragma: no cover - compiled
    """(sum (y - ref)^2, sum ref^2) over two equal-shape 2-D arrays, in one pass."""
    se = 0.0
    sr = 0.0
    for p in range(y.shape[0]):
        a = y[p]
        b = ref[p]
        for k in range(a.shape[0]):
            e = a[k] - b[k]
            se += e * e
            sr += b[k] * b[k]
    return se, sr


@njit(cache=True)
def row_plane_counts(q, bits):  # pragma: no cover - compiled
    """Ones of each bit-plane along each row of a (P, N) code matrix: int64 (P, bits)."""
    p_, n_ = q.shape
    out = np.zeros((p_, bits), dtype=np.int64)
    for r in range(p_):
        row = q[r]
        for j in range(bits):
            s = 0
            for n in range(n_):
                s += (row[n] >> j) & 1
            out[r, j] = s
    return out
