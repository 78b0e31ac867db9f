"""The macro's arithmetic on prepared operands: the digital pairs, dynamic levels and PAC.

- Digital set D(operand) = top `operand` weight planes x top `operand` activation planes: ONE
  GEMM of the MSB codes (q >> (bits - operand)), fed by an unfold kernel that writes the shifted
  codes straight into the GEMM's buffer. Exact in float32 while the largest possible dot product
  stays below 2^24, float64 below 2^53.
- Dynamic configuration: rows whose speculation E falls below a threshold give pairs of D to PAC.
  Those pairs' exact sum is subtracted by AND + popcount on bit-packed planes (what a D-CiM bank
  does for one pair), only for the rows of those levels: cost proportional to the moved pairs.
- Approximated pairs: a low-rank product of plane counts (PAC), a constant (expected) or nothing
  (truncate), left to the caller to add (dequantization folds it into one pass).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import core, kernels
from .core import (
    F32_EXACT,
    F64_EXACT,
    check_approx,
    check_dynamic,
    check_operand,
    digital_set,
    dynamic_digital_sets,
    dynamic_levels,
    moved_pairs,
    speculation,
)
from .operands import Activations, PreparedWeight

ROW_BLOCK_ELEMS = 1 << 22  # im2col elements per GEMM block (16 MB in float32): bounds memory
_SCRATCH = threading.local()  # work buffers, reused: a fresh 7 MB buffer page-faults (0.4 ms)


def _scratch(key: str, rows: int, n: int, dtype: type) -> np.ndarray:
    """A (rows, n) work buffer of this thread, reused across calls (grown when too small)."""
    need = rows * n * np.dtype(dtype).itemsize
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(key)
    if buf is None or buf.size < need:
        buf = bufs[key] = np.empty(need, dtype=np.uint8)
    return buf[:need].view(dtype).reshape(rows, n)


@dataclass(frozen=True)
class MacParts:
    """A layer call's integer MACs, split as the hardware computes them.

    mac = digital * unit + approx_left @ approx_right (when there are approximated pairs).
    """

    digital: np.ndarray  # (P, K) float32/float64 exact integers: each row's digital pairs
    unit: float  # 2^(shx + shw): weight of one unit of `digital`
    x_counts: np.ndarray  # (P, xbit) activation plane counts per row
    cycles: np.ndarray  # (P,) int16 digital bit-serial cycles of each row
    approx_left: np.ndarray | None  # (P, r)
    approx_right: np.ndarray | None  # (r, K)

    @property
    def level_counts(self) -> dict[int, int]:
        """Digital cycles -> rows."""
        vals, cnts = np.unique(self.cycles, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, cnts, strict=True)}

    def mac(self) -> np.ndarray:
        """(P, K) float64 MACs."""
        out = self.digital.astype(np.float64)
        if self.unit != 1.0:
            out *= self.unit
        if self.approx_left is not None:
            out += self.approx_left @ self.approx_right
        return out


def gemm_plan(hx: int, hw: int, n: int) -> tuple[type, int | None, int]:
    """How to make sum_n x w exact for hx-bit x, hw-bit w: (dtype, weight digit bits, N chunk).

    float32 when the largest dot product is below 2^24; else the weight in two digits of
    d = ceil(hw/2) bits, each digit's GEMM in float32 over N chunks that keep it below 2^24
    (as fast as one float64 GEMM at twice the width, half the operand bytes); else float64.
    """
    mx = (1 << hx) - 1
    bound = mx * ((1 << hw) - 1) * n
    if bound < F32_EXACT:
        return np.float32, None, n
    d = (hw + 1) // 2
    chunk = (F32_EXACT - 1) // (mx * ((1 << d) - 1))
    if hw >= 2 and chunk >= 256:
        return np.float32, d, min(chunk, n)
    if bound >= F64_EXACT:
        raise ValueError(f"dot product of length {n} at {hx}x{hw} bits overflows exact float64")
    return np.float64, None, n


def digital_gemm(act: Activations, pw: PreparedWeight, shx: int, shw: int) -> np.ndarray:
    """Exact sum_n (x >> shx)(w >> shw) for every row and column: (P, K), float32 or float64."""
    n, k, p = act.n, pw.k, act.rows
    dt, digit, chunk = gemm_plan(act.bits - shx, pw.bits - shw, n)
    if digit is None:
        wm = pw.msb(shw, dt).T  # (N, K) view: BLAS reads the (K, N) rows transposed
    else:
        wm = pw.digits(shw, digit).T  # (N, 2K): high digits, then low digits
    b, hp, wp, c = act.codes.shape
    ho, wo = act.out_hw
    flat = act.codes.reshape(-1)
    shift = act.codes.dtype.type(shx)
    out = np.empty((p, k), dtype=dt if digit is None else np.float64)
    step = max(1, ROW_BLOCK_ELEMS // n)
    buf = _scratch("cols", min(step, p), n, dt)
    for r0 in range(0, p, step):
        r1 = min(r0 + step, p)
        cols = buf[: r1 - r0]
        kernels.unfold_shifted(flat, hp, wp, c, *act.kernel, act.stride, ho, wo, shift, r0, r1,
                               cols)
        if digit is None:
            np.matmul(cols, wm, out=out[r0:r1])
            continue
        o = out[r0:r1]
        g = _scratch("digits", r1 - r0, 2 * k, np.float32)
        for n0 in range(0, n, chunk):  # exact per chunk; chunks add up in float64
            np.matmul(cols[:, n0:n0 + chunk], wm[n0:n0 + chunk], out=g)
            if n0 == 0:
                np.multiply(g[:, :k], float(1 << digit), out=o)
            else:
                o += g[:, :k] * float(1 << digit)
            o += g[:, k:]
    return out


@lru_cache(maxsize=64)
def _pair_table(xbit: int, wbit: int, operand: int, shx: int, shw: int) -> tuple:
    """The moved pairs of every dynamic level as the popcount kernel's flat tables."""
    per_level = moved_pairs(xbit, wbit, operand)
    xs = tuple(sorted({j for ps in per_level for _, j in ps}))
    ws = tuple(sorted({i for ps in per_level for i, _ in ps}))
    flat = [pr for ps in per_level for pr in ps]
    start = np.cumsum([0] + [len(ps) for ps in per_level]).astype(np.int64)
    pair_x = np.array([xs.index(j) for _, j in flat], dtype=np.int64)
    pair_w = np.array([ws.index(i) for i, _ in flat], dtype=np.int64)
    pair_shift = np.array([(i - shw) + (j - shx) for i, j in flat], dtype=np.int64)
    return xs, ws, start, pair_x, pair_w, pair_shift


def _subtract_moved(act: Activations, pw: PreparedWeight, levels: np.ndarray, operand: int,
                    shx: int, shw: int, digital: np.ndarray) -> None:
    """digital[rows of levels > 0] -= the exact sum of the pairs their level moves to PAC."""
    rows = np.flatnonzero(levels)
    if rows.size == 0:
        return
    rows = rows[np.argsort(levels[rows], kind="stable")]  # runs of one level: 4 rows at once
    xs, ws, start, pair_x, pair_w, pair_shift = _pair_table(act.bits, pw.bits, operand, shx, shw)
    ho, wo = act.out_hw
    kernels.subtract_pairs(act.packed(xs), pw.packed(ws), rows, levels[rows].astype(np.int64),
                           start, pair_x, pair_w, pair_shift, *act.kernel, act.stride, ho, wo,
                           digital)


def _factors(approx: str, nds: list[np.ndarray], levels: np.ndarray | None, sx: np.ndarray,
             pw: PreparedWeight, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The approximated term's factors, each row with its level's pattern nds[level]."""
    shared = core.plane_groups(*nds)  # one `right` for every level
    xbit = sx.shape[1]
    fs = [core.approx_factors(approx, nd, sx, pw.counts, n, xbit, pw.bits, shared) for nd in nds]
    if fs[0] is None:
        return None, None
    if levels is None:
        return fs[0]
    left = np.stack([f[0] for f in fs])[levels, np.arange(sx.shape[0])]
    return left, fs[0][1]


def compute(
    act: Activations,
    pw: PreparedWeight,
    *,
    operand: int,
    approx: str = "pac",
    dynamic: tuple[float, float, float] | None = None,
) -> MacParts:
    """The integer MACs of every row of `act` with every column of `pw` through the macro."""
    xbit, wbit = act.bits, pw.bits
    operand = check_operand(operand, xbit, wbit)
    approx = check_approx(approx)
    dynamic = check_dynamic(dynamic, xbit, wbit, operand)
    if act.n != pw.n or act.kernel != pw.kernel:
        raise ValueError(f"activations have N={act.n} (kernel {act.kernel}) but the weight has "
                         f"N={pw.n} (kernel {pw.kernel})")
    n = act.n
    shx, shw = max(0, xbit - operand), max(0, wbit - operand)
    digital = digital_gemm(act, pw, shx, shw)
    sx = act.window_counts()
    d = digital_set(xbit, wbit, operand)
    if dynamic is None:
        cycles = np.full(act.rows, int(d.sum()), dtype=np.int16)
        left, right = _factors(approx, [~d], None, sx, pw, n)
    else:
        levels = dynamic_levels(speculation(sx, n), dynamic)
        sets = dynamic_digital_sets(xbit, wbit, operand)
        cycles = np.array([int(s.sum()) for s in sets], dtype=np.int16)[levels]
        _subtract_moved(act, pw, levels, operand, shx, shw, digital)
        left, right = _factors(approx, [~s for s in sets], levels, sx, pw, n)
    return MacParts(digital, float(1 << (shx + shw)), sx, cycles, left, right)
