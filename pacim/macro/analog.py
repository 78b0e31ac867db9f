"""Analog BP/BS numerics: Jia et al.'s charge-domain columns, their ADC, noise and shift-add.

The array holds weight bit i of output k in a column and applies activation bit j to all rows
in one step (bit-parallel weights, bit-serial inputs). The dot product of length N is tiled
over the array's rows: tile t holds dot-product entries [t R, (t+1) R) in the macro's (dy, dx,
c) column order, R = macro.rows. Per tile, weight bit i and input bit j, the column holds the
analog sum s = sum_r w_i,r x_j,r in 0..R (charge sharing: inactive rows carry no charge, so
the scale is the array's R rows), and the column ADC converts it:

    code = clip(floor(g s (2^b - 1) / FS + offset + sigma(s) z + 1/2), 0, 2^b - 1)
    sigma(s)^2 = noise_lsb^2 + nonlinear_lsb^2 / (s + 1),   z ~ N(0, 1), seeded

FS is the column sum at the top code (full_scale x R, or 2^b - 1 for "one code per unit").
The near-memory datapath shift-adds the codes digitally and exactly (integers):

    mac = LSB * sum_{t, i, j} 2^(i + j) code_{t, i, j},   LSB = FS / (2^b - 1)

Operands are pacim's offset-binary uint codes (per-tensor asymmetric quantization): the cells
compute AND of {0, 1} bits, and the affine offsets are added digitally from exact sums
(pacim.macro.layer.dequantize), as for the digital macro. With no noise, g = 1, |offset| < 1/2
and one code per unit column sum (LSB = 1, every column sum <= 2^b - 1) the model is exact.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import analog_kernels as ak
from .engine import MacParts
from .operands import Activations, PreparedWeight
from .stats import AnalogStats

ROW_BLOCK_ELEMS = 1 << 22  # im2col elements per block (16 MB in float32): bounds memory
F32_DIGITS_BITS = 24  # an exact float32 integer holds 24 bits of packed digits
_SCRATCH = threading.local()  # work buffers reused across calls (fresh ones page-fault)
_PACKED: weakref.WeakKeyDictionary[PreparedWeight, dict[Any, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def _scratch(key: str, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) float32 work buffer of this thread."""
    need = rows * cols
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(key)
    if buf is None or buf.size < need:
        buf = bufs[key] = np.empty(need, dtype=np.float32)
    return buf[:need].reshape(rows, cols)


@dataclass(frozen=True)
class AnalogADC:
    """The column ADC of a BP/BS array and its non-idealities (see the module docstring)."""

    bits: int = 8  # ADC resolution b
    rows: int = 768  # rows per tile R (the array height)
    full_scale: float | None = 1.0  # FS / R; None: FS = 2^b - 1 (one code per unit)
    gain: float = 1.0  # g: gain error (1 = ideal)
    offset: float = 0.0  # offset error, in LSB
    noise_lsb: float = 0.0  # sigma of Gaussian noise per conversion, in LSB
    nonlinear_lsb: float = 0.0  # ASiM-style term: sigma nonlinear_lsb / sqrt(s + 1), in LSB
    seed: int = 0
    stream: int = 0  # decorrelates calls (e.g. the layer index) under one seed
    row0: int = 0  # global index of the call's first row (for callers that chunk a batch)

    def __post_init__(self) -> None:
        def bad(what: str) -> ValueError:
            return ValueError(f"analog ADC: {what}")

        for name in ("bits", "rows", "seed", "stream", "row0"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise bad(f"{name} must be an integer, got {v!r}")
        if not 1 <= self.bits <= 16:
            raise bad(f"bits must be in 1..16, got {self.bits}")
        if not 1 <= self.rows <= 65536:
            raise bad(f"rows must be in 1..65536, got {self.rows}")
        if min(self.seed, self.stream, self.row0) < 0:
            raise bad("seed, stream and row0 must be >= 0")
        fs = self.full_scale
        if fs is not None and not (math.isfinite(fs) and fs > 0):
            raise bad(f"full_scale must be a finite number > 0 or None, got {fs!r}")
        for name in ("gain", "offset", "noise_lsb", "nonlinear_lsb"):
            if not math.isfinite(getattr(self, name)):
                raise bad(f"{name} must be finite")
        if self.gain <= 0 or self.noise_lsb < 0 or self.nonlinear_lsb < 0:
            raise bad("gain must be > 0, noise_lsb and nonlinear_lsb >= 0")

    @classmethod
    def from_arch(cls, arch: Any) -> AnalogADC | None:
        """The ADC of a `pacim.arch.Arch` (None when it has no analog section or is not bp_bs)."""
        a = getattr(arch, "analog", None)
        if a is None or arch.macro.kind != "bp_bs":
            return None
        return cls(bits=a.adc_bits if a.adc_bits is not None else arch.macro.adc_bits,
                   rows=arch.macro.rows, full_scale=a.full_scale, gain=a.gain,
                   offset=a.offset_lsb, noise_lsb=a.noise_lsb, nonlinear_lsb=a.nonlinear_lsb,
                   seed=a.seed)

    def with_stream(self, stream: int, row0: int = 0) -> AnalogADC:
        """The same ADC drawing independent noise (stream: e.g. a layer; row0: a chunk)."""
        return replace(self, stream=int(stream), row0=int(row0))

    @property
    def levels(self) -> int:
        """Top code 2^b - 1."""
        return (1 << self.bits) - 1

    @property
    def fs_rows(self) -> float:
        """FS: the column sum that maps to the top code."""
        return self.levels if self.full_scale is None else self.full_scale * self.rows

    @property
    def lsb(self) -> float:
        """One code step, in units of column sum."""
        return self.fs_rows / self.levels

    @property
    def noisy(self) -> bool:
        """True when conversions draw noise."""
        return self.noise_lsb > 0 or self.nonlinear_lsb > 0

    def tiles(self, n: int) -> list[tuple[int, int]]:
        """Row tiles [n0, n1) of a dot product of length n: ceil(n / rows) of them."""
        return [(n0, min(n, n0 + self.rows)) for n0 in range(0, n, self.rows)]

    def codes(self, s: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """The ADC transfer function on column sums s (float64 codes), z: standard normals."""
        s = np.asarray(s, dtype=np.float64)
        v = self.gain * self.levels / self.fs_rows * s + self.offset
        if z is not None:
            v = v + self.sigma(s) * z
        return np.clip(np.floor(v + 0.5), 0.0, float(self.levels))

    def sigma(self, s: np.ndarray) -> np.ndarray:
        """Noise sigma (LSB) of a conversion of column sum s."""
        s = np.asarray(s, dtype=np.float64)
        return np.sqrt(self.noise_lsb ** 2 + self.nonlinear_lsb ** 2 / (s + 1.0))

    def is_exact(self, rows: int | None = None) -> bool:
        """True when every column sum 0..rows (default: the array's) converts back exactly."""
        if self.noisy:
            return False
        s = np.arange((rows or self.rows) + 1, dtype=np.float64)
        return bool(np.array_equal(self.codes(s) * self.lsb, s))

    def key(self) -> np.uint64:
        """The noise key of (seed, stream)."""
        seed = np.uint64(ak.mix64(np.uint64(self.seed)))
        return np.uint64(ak.mix64(seed ^ np.uint64(self.stream)))

    def datapath_bits(self, xbit: int, wbit: int, n: int) -> int:
        """Accumulator bits the datapath needs for the shift-added codes of length-n dots."""
        top = self.levels * ((1 << xbit) - 1) * ((1 << wbit) - 1) * len(self.tiles(n))
        return int(top).bit_length()


def _groups(bits: int, per: int) -> np.ndarray:
    """Planes 0..bits-1 in groups of `per` digits: (ceil(bits / per), per), -1 padding."""
    g = -(-bits // per)
    out = np.full((g, per), -1, dtype=np.int64)
    for p in range(bits):
        out[p // per, p % per] = p
    return out


def digit_plan(xbit: int, wbit: int, rows: int, n: int) -> tuple[int, int, int]:
    """(rb, mx, mw): bits per digit and the activation / weight planes packed per operand.

    A digit holds any tile's column sum (rb = bit_length(min(rows, n))); mx * mw digits fit the
    24 exact bits of a float32 GEMM, weight planes first (they are packed once per weight).
    """
    rb = int(min(rows, n)).bit_length()
    m = max(1, F32_DIGITS_BITS // rb)
    mw = min(wbit, m)
    return rb, min(xbit, max(1, m // mw)), mw


def _packed_weight(pw: PreparedWeight, wgroups: np.ndarray, rb: int) -> np.ndarray:
    """(N, G*K) float32 digit-packed weight planes, computed once per weight and plan."""
    per = _PACKED.setdefault(pw, {})
    key = (rb, wgroups.tobytes(), wgroups.shape)
    if key not in per:
        out = np.empty((pw.n, wgroups.shape[0] * pw.k), dtype=np.float32)
        ak.pack_weight(pw.matrix, wgroups, rb, out)
        out.setflags(write=False)
        per[key] = out
    return per[key]


def compute(act: Activations, pw: PreparedWeight, adc: AnalogADC, *, stats: bool = True
            ) -> tuple[MacParts, AnalogStats | None]:
    """The MACs of every row of `act` with every column of `pw` through the analog array.

    Returns MacParts whose `digital` holds the shift-added codes (exact integers) and `unit`
    the LSB, so dequantization is the digital macro's; and the conversions' statistics.
    """
    if act.n != pw.n or act.kernel != pw.kernel:
        raise ValueError(f"activations have N={act.n} (kernel {act.kernel}) but the weight has "
                         f"N={pw.n} (kernel {pw.kernel})")
    xbit, wbit, n, k, p = act.bits, pw.bits, act.n, pw.k, act.rows
    if adc.datapath_bits(xbit, wbit, n) > 53:
        raise ValueError(f"analog ADC: shift-added codes of {xbit}x{wbit} bits over N={n} "
                         "overflow the exact float64 accumulator")
    tiles = adc.tiles(n)
    rb, mx, mw = digit_plan(xbit, wbit, adc.rows, n)
    wgroups, xgroups = _groups(wbit, mw), _groups(xbit, mx)
    wpk = _packed_weight(pw, wgroups, rb)
    acc = np.zeros((p, k), dtype=np.float64)
    s_all = np.arange(1 << rb, dtype=np.float64)
    sigma = adc.sigma(s_all if adc.nonlinear_lsb else np.zeros(1))  # (1,): one sigma
    c = adc.gain * adc.levels / adc.fs_rows
    hist = np.zeros(1 << rb if stats else 0, dtype=np.int64)
    clipped = np.zeros(1, dtype=np.int64)
    key = adc.key()
    b, hp, wp, ch = act.codes.shape
    ho, wo = act.out_hw
    flat = act.codes.reshape(-1)
    step = max(1, ROW_BLOCK_ELEMS // n)
    cols = _scratch("cols", min(step, p), n)
    g = _scratch("sums", min(step, p), wgroups.shape[0] * k)
    for r0 in range(0, p, step):
        r1 = min(r0 + step, p)
        cb, gb, ab = cols[: r1 - r0], g[: r1 - r0], acc[r0:r1]
        for xg in xgroups:
            ak.unfold_digits(flat, hp, wp, ch, *act.kernel, act.stride, ho, wo, xg, rb * mw,
                             r0, r1, cb)
            for t, (n0, n1) in enumerate(tiles):
                np.matmul(cb[:, n0:n1], wpk[n0:n1], out=gb)
                ak.adc_accumulate(gb, ab, xg, wgroups, rb, mw, t, len(tiles), xbit, wbit,
                                  adc.row0 + r0, c, float(adc.offset), float(adc.levels),
                                  sigma, adc.noisy, key, hist, clipped)
    conversions = p * k * len(tiles) * xbit * wbit
    parts = MacParts(acc, adc.lsb, act.window_counts(), np.full(p, xbit * wbit, dtype=np.int16),
                     None, None)
    if not stats:
        return parts, None
    nz = np.flatnonzero(hist)
    st = AnalogStats(
        adc_bits=adc.bits, rows=adc.rows, tiles=len(tiles), full_scale_rows=adc.fs_rows,
        lsb_rows=adc.lsb, noise_lsb=adc.noise_lsb, conversions=conversions,
        clipped=int(clipped[0]),
        column_sum_hist=tuple(int(v) for v in hist[: nz[-1] + 1]) if nz.size else (),
        datapath_bits=adc.datapath_bits(xbit, wbit, n))
    return parts, st
