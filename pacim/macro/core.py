"""The bit-serial D-CiM macro with probabilistic approximate computation (PAC), on code matrices.

For one output, a dot product of length N between activation codes q_x (xbit bits) and weight
codes q_w (wbit bits) is split into bit-plane pairs (i, j), i a weight plane, j an activation
plane. Pairs in the digital set D are computed exactly (one bit-serial cycle each); every other
pair is approximated:

- ``pac``:       S_w,i * S_x,j / N   (S = ones of the plane over the N-long vector)
- ``truncate``:  0
- ``expected``:  N / 4               (independent bits with p = 1/2)

and mac = sum_pairs 2^(i+j) * term.

Implementation: with D = (top `operand` weight planes) x (top `operand` activation planes), the
digital part is ONE GEMM of the MSB codes (q >> (bits - operand)), exact in float32 while the
largest possible dot product stays below 2^24 (float64 otherwise). The PAC part is a
rank-min(xbit, wbit) product of plane counts. Dynamic configuration moves pairs from D to PAC per
row; their exact contribution is removed with one stacked bit-plane GEMM per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..quant import check_bits
from . import kernels

APPROX_METHODS = ("pac", "truncate", "expected")
# PACiM's dynamic workload configuration: speculation normalised to a 64x3x3 window.
DYN_REF_WINDOW = 576
DEFAULT_THRESHOLDS = (7000.0, 10000.0, 13000.0)
# Relative pair-sum limits (i' + j' over the digital block) moved to PAC per level: the paper's
# i + j <= 8 / 9 / 10 at 8b/8b, operand 4 (planes 4..7), i.e. i' + j' <= 0 / 1 / 2.
_DYN_REL_LIMITS = (None, 0, 1, 2)
_F32_EXACT = 2**24
_F64_EXACT = 2**53
_ROW_BLOCK_ELEMS = 1 << 22  # rows per GEMM block ~ 4M elements: bounds memory on big batches


def check_operand(operand: int, xbit: int, wbit: int) -> int:
    """Validate operand in 1..max(xbit, wbit)."""
    if isinstance(operand, bool) or not isinstance(operand, (int, np.integer)):
        raise ValueError(f"operand must be an integer, got {operand!r}")
    hi = max(xbit, wbit)
    if not 1 <= int(operand) <= hi:
        raise ValueError(f"operand must be in 1..max(xbit, wbit) = 1..{hi}, got {operand}")
    return int(operand)


def check_approx(approx: str) -> str:
    """Validate the approximation method name."""
    if approx not in APPROX_METHODS:
        raise ValueError(f"approx must be one of {', '.join(APPROX_METHODS)}; got {approx!r}")
    return approx


def check_dynamic(
    dynamic: object, xbit: int, wbit: int, operand: int
) -> tuple[float, float, float] | None:
    """Validate dynamic thresholds (None or 3 ascending finite numbers) and the configuration."""
    if dynamic is None:
        return None
    try:
        t = tuple(float(v) for v in dynamic)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"dynamic must be None or 3 thresholds, got {dynamic!r}") from None
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f"dynamic must be 3 finite thresholds (t0, t1, t2), got {dynamic!r}")
    if not t[0] <= t[1] <= t[2]:
        raise ValueError(f"dynamic thresholds must be ascending t0 <= t1 <= t2, got {t}")
    if (xbit, wbit, operand) != (8, 8, 4):
        raise ValueError(
            "dynamic configuration is defined for xbit=8, wbit=8, operand=4 (PACiM); "
            f"got xbit={xbit}, wbit={wbit}, operand={operand}"
        )
    return t  # type: ignore[return-value]


def digital_set(xbit: int, wbit: int, operand: int) -> np.ndarray:
    """Boolean (wbit, xbit) mask of D(operand): i >= wbit - operand and j >= xbit - operand."""
    i = np.arange(wbit)[:, None]
    j = np.arange(xbit)[None, :]
    return (i >= wbit - operand) & (j >= xbit - operand)


def dynamic_digital_sets(xbit: int, wbit: int, operand: int) -> list[np.ndarray]:
    """Digital sets of the dynamic levels, from most to fewest digital pairs (16/15/13/10)."""
    d = digital_set(xbit, wbit, operand)
    rel = (np.arange(wbit)[:, None] - (wbit - operand)) + (
        np.arange(xbit)[None, :] - (xbit - operand)
    )
    sets = []
    for lim in _DYN_REL_LIMITS:
        sets.append(d.copy() if lim is None else d & (rel > lim))
    return sets


def pac_products(digital: np.ndarray) -> int:
    """PAC-engine count products per output for a (wbit, xbit) digital set.

    sum_{(i,j) not in D} 2^(i+j) S_w,i S_x,j = sum_i 2^i S_w,i A_i with A_i = sum of 2^j S_x,j
    over the activation planes j approximated with weight plane i. A_i depends only on the input
    vector, and weight planes with the same set of j share it; the per-column constants
    sum 2^i S_w,i over such a group are fixed at weight-load time. So each output needs one
    count product per distinct non-empty row pattern of the approximated pairs: 2 at static
    operand 4 (8b/8b), 3 / 4 / 5 at the dynamic levels with 15 / 13 / 10 digital cycles.
    """
    nd = ~np.asarray(digital, dtype=bool)
    return len({tuple(r) for r in nd if r.any()})


def pac_products_by_cycles(xbit: int, wbit: int, operand: int) -> dict[int, int]:
    """Digital cycles -> PAC-engine products per output, for the static set and (8b/8b,
    operand 4) the dynamic levels."""
    sets = [digital_set(xbit, wbit, operand)]
    if (xbit, wbit, operand) == (8, 8, 4):
        sets = dynamic_digital_sets(xbit, wbit, operand)
    return {int(d.sum()): pac_products(d) for d in sets}


def pair_weights(xbit: int, wbit: int) -> np.ndarray:
    """2^(i+j) as float64 (wbit, xbit)."""
    return np.ldexp(1.0, np.arange(wbit)[:, None] + np.arange(xbit)[None, :])


@dataclass(frozen=True)
class MacResult:
    """Integer-domain MAC results plus what the hardware did to get them."""

    mac: np.ndarray  # (P, K) float64
    digital_cycles: np.ndarray  # (P,) int16: digital bit-serial cycles for each row (all K)
    x_counts: np.ndarray  # (P, xbit) ones of each activation plane per row
    w_counts: np.ndarray  # (K, wbit)
    level_counts: dict[int, int] = field(default_factory=dict)  # digital cycles -> rows


def _check_codes(q: np.ndarray, bits: int, name: str) -> np.ndarray:
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"{name} must be a 2-D code matrix, got shape {q.shape}")
    if q.size == 0:
        raise ValueError(f"{name} is empty (shape {q.shape})")
    if q.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold unsigned integer codes, got dtype {q.dtype}")
    if q.dtype.kind == "i" and int(q.min()) < 0:
        raise ValueError(f"{name} holds negative codes")
    if int(q.max()) >= (1 << bits):  # checked before any narrowing conversion
        raise ValueError(f"{name} holds codes >= 2^{bits}")
    if q.dtype.kind == "i" or q.dtype.itemsize > 2:
        q = q.astype(np.uint16 if bits > 8 else np.uint8)
    return np.ascontiguousarray(q)


def _check_counts(c: np.ndarray, rows: int, bits: int, n: int, name: str) -> np.ndarray:
    """Caller-supplied plane counts: shape (rows, bits), values in 0..N."""
    c = np.asarray(c)
    if c.shape != (rows, bits):
        raise ValueError(f"{name} must have shape ({rows}, {bits}), got {c.shape}")
    if c.size and (int(c.min()) < 0 or int(c.max()) > n):
        raise ValueError(f"{name} must hold plane counts in 0..{n}")
    return c


def counts_of(q: np.ndarray, bits: int) -> np.ndarray:
    """Plane counts per row of a (P, N) code matrix (numba kernel)."""
    return kernels.row_plane_counts(np.ascontiguousarray(q), bits)


def _msb_gemm(qx: np.ndarray, qw: np.ndarray, shx: int, shw: int, hx: int, hw: int) -> np.ndarray:
    """Exact sum_n (qx >> shx) * (qw >> shw) in float64, through a float32 GEMM when exact."""
    n = qx.shape[1]
    bound = ((1 << hx) - 1) * ((1 << hw) - 1) * n
    if bound >= _F64_EXACT:
        raise ValueError(f"dot product of length {n} at {hx}x{hw} bits overflows exact float64")
    dt = np.float32 if bound < _F32_EXACT else np.float64
    wf = kernels.shifted_float(qw, shw, np.empty(qw.shape, dtype=dt))
    out = np.empty((qx.shape[0], qw.shape[0]), dtype=np.float64)
    step = max(1, _ROW_BLOCK_ELEMS // n)
    buf = np.empty((min(step, qx.shape[0]), n), dtype=dt)
    for r0 in range(0, qx.shape[0], step):
        r1 = min(r0 + step, qx.shape[0])
        xf = kernels.shifted_float(qx[r0:r1], shx, buf[: r1 - r0])
        out[r0:r1] = xf @ wf.T
    return out


def _approx_matrix(nd: np.ndarray, xbit: int, wbit: int) -> np.ndarray:
    """C[i, j] = 2^(i+j) on the approximated pairs nd, else 0."""
    return pair_weights(xbit, wbit) * nd


def approx_term(
    approx: str, nd: np.ndarray, sx: np.ndarray, sw: np.ndarray, n: int, xbit: int, wbit: int
) -> np.ndarray | float:
    """Sum over approximated pairs nd of 2^(i+j) * term, (P, K) or a scalar."""
    if approx == "truncate" or not nd.any():
        return 0.0
    c = _approx_matrix(nd, xbit, wbit)
    if approx == "expected":
        return float(c.sum()) * n / 4.0
    # pac: sum_ij 2^(i+j) Sw_i Sx_j / N  =  (Sx @ C^T) @ Sw^T / N
    return (sx.astype(np.float64) @ c.T) @ sw.T.astype(np.float64) / n


def speculation(x_counts: np.ndarray, n: int) -> np.ndarray:
    """PACiM's output-size speculation E = (sum of q_x over the window) * 576 / N, per row."""
    xbit = x_counts.shape[1]
    sums = x_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(xbit))
    return sums * (DYN_REF_WINDOW / n)


def dynamic_levels(e: np.ndarray, thresholds: tuple[float, float, float]) -> np.ndarray:
    """Level per row: 0 (E > t2, 16 cycles), 1 (t1 < E <= t2), 2 (t0 < E <= t1), 3 (E <= t0)."""
    t0, t1, t2 = thresholds
    lv = np.full(e.shape, 3, dtype=np.int8)
    lv[e > t0] = 2
    lv[e > t1] = 1
    lv[e > t2] = 0
    return lv


def macro_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    xbit: int,
    wbit: int,
    operand: int,
    approx: str = "pac",
    dynamic: tuple[float, float, float] | None = None,
    x_counts: np.ndarray | None = None,
    w_counts: np.ndarray | None = None,
) -> MacResult:
    """MAC of every row of qx (P, N) with every row of qw (K, N) through the macro.

    x_counts / w_counts may be passed when already known (conv computes them by box sums).
    """
    xbit = check_bits(xbit, "xbit")
    wbit = check_bits(wbit, "wbit")
    operand = check_operand(operand, xbit, wbit)
    approx = check_approx(approx)
    dynamic = check_dynamic(dynamic, xbit, wbit, operand)
    qx = _check_codes(qx, xbit, "qx")
    qw = _check_codes(qw, wbit, "qw")
    if qx.shape[1] != qw.shape[1]:
        raise ValueError(f"qx has N={qx.shape[1]} but qw has N={qw.shape[1]}")
    n = qx.shape[1]
    sx = counts_of(qx, xbit) if x_counts is None else _check_counts(x_counts, qx.shape[0], xbit,
                                                                      n, "x_counts")
    sw = counts_of(qw, wbit) if w_counts is None else _check_counts(w_counts, qw.shape[0], wbit,
                                                                      n, "w_counts")

    shx, shw = max(0, xbit - operand), max(0, wbit - operand)
    d = digital_set(xbit, wbit, operand)
    mac = _msb_gemm(qx, qw, shx, shw, xbit - shx, wbit - shw)
    if shx + shw:
        mac *= float(1 << (shx + shw))
    mac += approx_term(approx, ~d, sx, sw, n, xbit, wbit)

    n_digital = int(d.sum())
    cycles = np.full(qx.shape[0], n_digital, dtype=np.int16)
    if dynamic is not None:
        levels = dynamic_levels(speculation(sx, n), dynamic)
        sets = dynamic_digital_sets(xbit, wbit, operand)
        moved = [d & ~d_lv for d_lv in sets]
        for lv, d_lv in enumerate(sets):
            rows = np.flatnonzero(levels == lv)
            if rows.size and moved[lv].any():
                mac[rows] += approx_term(approx, moved[lv], sx[rows], sw, n, xbit, wbit)
                cycles[rows] = int(d_lv.sum())
        mac -= _moved_exact(qx, qw, levels, moved, xbit)
    vals, cnts = np.unique(cycles, return_counts=True)
    return MacResult(
        mac=mac,
        digital_cycles=cycles,
        x_counts=sx,
        w_counts=sw,
        level_counts={int(v): int(c) for v, c in zip(vals, cnts, strict=True)},
    )


def _moved_exact(
    qx: np.ndarray, qw: np.ndarray, levels: np.ndarray, moved: list[np.ndarray], xbit: int
) -> np.ndarray:
    """Exact sum over each row's moved pairs of 2^(i+j) * sum_n w_i,n x_j,n, as (P, K).

    One GEMM per weight plane i that any level moves: its rows are those whose level moves a
    pair (i, j); each row mixes the activation planes j it pairs with (a per-level LUT).
    """
    out = np.zeros((qx.shape[0], qw.shape[0]), dtype=np.float64)
    n = qx.shape[1]
    bits_v = (np.arange(1 << xbit)[:, None] >> np.arange(xbit)[None, :]) & 1  # (2^xbit, xbit)
    for i in np.flatnonzero(np.any([m.any(axis=1) for m in moved], axis=0)):
        uses = [lv for lv, m in enumerate(moved) if m[i].any()]
        rows = np.flatnonzero(np.isin(levels, uses))
        if rows.size == 0:
            continue
        coef = np.stack([np.ldexp(1.0, i + np.arange(xbit)) * m[i] for m in moved])  # (L, xbit)
        e0 = int(np.log2(coef[coef > 0].min()))
        coef /= 2.0**e0
        dt = np.float32 if coef.sum(axis=1).max() * n < _F32_EXACT else np.float64
        lut = np.ascontiguousarray((coef @ bits_v.T).astype(dt))  # (L, 2^xbit)
        w_i = ((qw >> i) & 1).astype(dt)
        step = max(1, _ROW_BLOCK_ELEMS // n)
        buf = np.empty((min(step, rows.size), n), dtype=dt)
        lvl = levels.astype(np.int64)
        for r0 in range(0, rows.size, step):
            sel = rows[r0 : r0 + step]
            xs = kernels.gather_lut(qx, sel, lvl[sel], lut, buf[: sel.size])
            out[sel] += (xs @ w_i.T) * 2.0**e0
    return out


# --- Lower-level integer entry points (uint code matrices) -------------------------------


def exact_mac(qx: np.ndarray, qw: np.ndarray, *, xbit: int = 8, wbit: int = 8) -> np.ndarray:
    """Exact integer dot products sum_n qx[p, n] * qw[k, n] as int64 (P, K)."""
    r = macro_mac(qx, qw, xbit=xbit, wbit=wbit, operand=max(xbit, wbit), approx="truncate")
    return np.rint(r.mac).astype(np.int64)


def pac_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
) -> np.ndarray:
    """Static-operand MAC (digital set D(operand), rest approximated), float64 (P, K)."""
    return macro_mac(qx, qw, xbit=xbit, wbit=wbit, operand=operand, approx=approx).mac


def dynamic_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic-configuration MAC: (mac (P, K), digital cycles per row (P,))."""
    r = macro_mac(
        qx, qw, xbit=xbit, wbit=wbit, operand=operand, approx=approx, dynamic=thresholds
    )
    return r.mac, r.digital_cycles
