"""The macro's operands, prepared once: weights (PreparedWeight) and activations (Activations).

A PreparedWeight is a layer's weight quantized once (per tensor, asymmetric uint, the PACiM
convention) in the macro's column order, with its plane counts and dequantization sums; what the
arithmetic derives from it (MSB-code matrices, bit-packed planes) is computed on first use and
kept. Activations are the quantized input of one call as padded NHWC codes, with one (scale,
bias) per image: the quantization policy is a parameter, per tensor over the batch (PACiM) or per
sample (a chip running one image at a time). Both are immutable: their arrays are read-only, and
a PreparedWeight is a snapshot, unaffected by later changes to the float weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ..quant import SCALE_EPS, QTensor, check_bits, uint_dtype
from . import kernels

Policy = Literal["tensor", "sample"]
POLICIES = ("tensor", "sample")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _words(c: int) -> int:
    return (c + 63) // 64


@dataclass(frozen=True, eq=False)
class PreparedWeight:
    """A weight quantized once: codes (K, kh, kw, C) in the macro's (dy, dx, c) column order."""

    codes: np.ndarray  # (K, kh, kw, C) uint codes, read-only (a linear weight is 1x1)
    bits: int
    scale: float
    bias: float
    conv: bool  # True for a (K, C, kh, kw) conv weight, False for a (K, N) linear one
    counts: np.ndarray = field(repr=False)  # (K, bits) ones of each plane per column
    sum_wt: np.ndarray = field(repr=False)  # (K,) sum over N of the dequantized weight
    _derived: dict[Any, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def k(self) -> int:
        """Output channels / features."""
        return self.codes.shape[0]

    @property
    def n(self) -> int:
        """Dot-product length N = kh * kw * C."""
        return int(np.prod(self.codes.shape[1:]))

    @property
    def kernel(self) -> tuple[int, int]:
        """(kh, kw); (1, 1) for a linear weight."""
        return self.codes.shape[1], self.codes.shape[2]

    @property
    def channels(self) -> int:
        """Input channels C (in_features for a linear weight)."""
        return self.codes.shape[3]

    @property
    def step(self) -> float:
        """Float value of one code step."""
        return self.scale / ((1 << self.bits) - 1)

    @property
    def matrix(self) -> np.ndarray:
        """Codes as the (K, N) matrix the macro stores, columns in (dy, dx, c) order."""
        return self.codes.reshape(self.k, self.n)

    def msb(self, shift: int, dtype: type) -> np.ndarray:
        """(K, N) matrix of codes >> shift as `dtype`: the digital GEMM multiplies by its .T."""
        key = ("msb", shift, np.dtype(dtype).str)
        if key not in self._derived:
            q = self.matrix
            m = np.empty(q.shape, dtype=dtype)
            kernels.unfold_shifted(q.reshape(-1), 1, 1, q.size, 1, 1, 1, 1, 1,  # one long row
                                   q.dtype.type(shift), 0, 1, m.reshape(1, -1))
            self._derived[key] = _frozen(m)
        return self._derived[key]

    def digits(self, shift: int, d: int) -> np.ndarray:
        """(2K, N) float32: the codes >> shift split into a high and a low d-bit digit."""
        key = ("digits", shift, d)
        if key not in self._derived:
            q = self.matrix
            m = np.empty((2 * self.k, self.n), dtype=np.float32)
            t = q.dtype.type
            self._derived[key] = _frozen(kernels.split_digits(q, t(shift), t(d), m))
        return self._derived[key]

    def packed(self, planes: tuple[int, ...]) -> np.ndarray:
        """Bit-packed planes as uint64 (len(planes), kh*kw*words, K), K innermost (popcount)."""
        key = ("bits", planes)
        if key not in self._derived:
            flat = self.codes.reshape(-1, self.channels)  # (K*kh*kw, C)
            words = _words(self.channels)
            b = kernels.pack_planes(flat, np.asarray(planes, dtype=np.int64), words)
            b = b.reshape(self.k, -1, len(planes), words).transpose(2, 1, 3, 0)
            self._derived[key] = _frozen(np.ascontiguousarray(b).reshape(len(planes), -1, self.k))
        return self._derived[key]

    def density(self) -> tuple[float, ...]:
        """Ones-density of each weight bit-plane (LSB first)."""
        return tuple(float(v) for v in self.counts.sum(axis=0) / (self.k * self.n))

    def qtensor(self) -> QTensor:
        """The quantized weight in its original layout ((K, C, kh, kw) or (K, N))."""
        q = self.codes.transpose(0, 3, 1, 2) if self.conv else self.matrix
        return QTensor(q=np.ascontiguousarray(q), scale=self.scale, bias=self.bias, bits=self.bits)


def _codes_of_qtensor(w: QTensor, name: str) -> tuple[np.ndarray, int, float, float]:
    """(codes (K, kh, kw, C), bits, scale, bias) of an already quantized weight."""
    q = np.asarray(w.q)
    if q.ndim not in (2, 4) or q.size == 0 or q.dtype.kind not in "ui":
        raise ValueError(f"{name} must be a non-empty 2-D or 4-D code tensor, got {q.shape}")
    if int(q.min()) < 0 or int(q.max()) >= (1 << w.bits):
        raise ValueError(f"{name} codes must be in 0..{(1 << w.bits) - 1}")
    codes = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q[:, None, None, :]
    return np.ascontiguousarray(codes, dtype=uint_dtype(w.bits)), w.bits, w.scale, w.bias


def _codes_of_floats(w: Any, bits: int, name: str) -> tuple[np.ndarray, int, float, float]:
    """Quantize a float weight per tensor, in the (K, kh, kw, C) column order."""
    a = np.asarray(w)
    if a.dtype.kind not in "fiub" or a.ndim not in (2, 4) or a.size == 0:
        raise ValueError(f"{name} must be a real, non-empty 2-D (K, N) or 4-D (K, C, kh, kw) "
                         f"array, got {a.dtype} {a.shape}")
    a = np.ascontiguousarray(a if a.dtype.kind == "f" else a.astype(np.float64))
    lo, hi = float(a.min()), float(a.max())  # NaN propagates; inf shows at an end
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf")
    scale = (hi - lo) + SCALE_EPS  # in float64, as pacim.quant.quantize
    q = np.empty(a.shape, dtype=uint_dtype(bits))
    kernels.quantize_rows(a.reshape(1, -1), np.array([lo]), np.array([scale]), (1 << bits) - 1,
                          q.reshape(1, -1))  # one long row (a kxk weight has short rows)
    codes = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q[:, None, None, :]
    return np.ascontiguousarray(codes), bits, scale, lo


def prepare_weight(w: np.ndarray | QTensor, wbit: int = 8, *, name: str = "w") -> PreparedWeight:
    """Quantize a conv (K, C, kh, kw) or linear (K, N) weight once, for every later call.

    A QTensor (already quantized, e.g. with calibrated scales) is taken as it is; its bits win.
    """
    if isinstance(w, PreparedWeight):
        return w
    conv = np.ndim(w.q if isinstance(w, QTensor) else w) == 4
    if isinstance(w, QTensor):
        codes, bits, scale, bias = _codes_of_qtensor(w, name)
    else:
        codes, bits, scale, bias = _codes_of_floats(w, check_bits(wbit, "wbit"), name)
    codes = _frozen(codes)
    k = codes.shape[0]
    counts = kernels.row_plane_counts(codes.reshape(k, -1), bits)
    n = codes[0].size
    step = scale / ((1 << bits) - 1)
    sum_wt = step * (counts.astype(np.float64) @ np.ldexp(1.0, np.arange(bits))) + n * bias
    return PreparedWeight(codes, bits, float(scale), float(bias), conv, _frozen(counts),
                          _frozen(sum_wt))


@dataclass(frozen=True, eq=False)
class Activations:
    """One call's quantized input: padded NHWC codes (B, Hp, Wp, C), one (scale, bias) per image.

    Row p of the layer's im2col matrix is output position p = (b, oy, ox); a linear layer's
    input is B rows of 1x1 pixels with C = N channels.
    """

    codes: np.ndarray  # (B, Hp, Wp, C), read-only
    bits: int
    scale: np.ndarray  # (B,)
    bias: np.ndarray  # (B,)
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    _derived: dict[Any, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def images(self) -> int:
        """B."""
        return self.codes.shape[0]

    @property
    def channels(self) -> int:
        """C."""
        return self.codes.shape[3]

    @property
    def n(self) -> int:
        """Dot-product length kh * kw * C."""
        return self.kernel[0] * self.kernel[1] * self.channels

    @property
    def out_hw(self) -> tuple[int, int]:
        """(Ho, Wo)."""
        _, hp, wp, _ = self.codes.shape
        kh, kw = self.kernel
        return (hp - kh) // self.stride + 1, (wp - kw) // self.stride + 1

    @property
    def rows(self) -> int:
        """Input vectors (output positions) P = B * Ho * Wo."""
        ho, wo = self.out_hw
        return self.images * ho * wo

    @property
    def step(self) -> np.ndarray:
        """(B,) float value of one code step per image."""
        return self.scale / ((1 << self.bits) - 1)

    def per_row(self, v: np.ndarray) -> np.ndarray:
        """Expand a per-image (B,) array to one value per row (P,)."""
        ho, wo = self.out_hw
        return np.repeat(v, ho * wo)

    def with_window_counts(self, counts: np.ndarray) -> Activations:
        """The same activations with their window plane counts given (already known)."""
        act = replace(self)
        act._derived["win"] = _frozen(np.array(counts, dtype=np.int64))
        return act

    def pixel_counts(self) -> np.ndarray:
        """int64 (B, Hp, Wp, bits): ones of each plane over each pixel's C codes."""
        if "pix" not in self._derived:
            b, hp, wp, c = self.codes.shape
            pix = kernels.row_plane_counts(self.codes.reshape(-1, c), self.bits)
            self._derived["pix"] = _frozen(pix.reshape(b, hp, wp, self.bits))
        return self._derived["pix"]

    def window_counts(self) -> np.ndarray:
        """int64 (P, bits): S_x,j over each row's window (padding included)."""
        if "win" not in self._derived:
            pix = self.pixel_counts()
            if self.kernel == (1, 1) and self.stride == 1:
                win = pix.reshape(-1, self.bits)
            else:
                ho, wo = self.out_hw
                win = kernels.window_plane_counts(pix, *self.kernel, self.stride, ho, wo)
            self._derived["win"] = _frozen(win)
        return self._derived["win"]

    def packed(self, planes: tuple[int, ...]) -> np.ndarray:
        """Bit-packed planes per pixel: uint64 (B, len(planes), Hp, Wp, words)."""
        key = ("bits", planes)
        if key not in self._derived:
            b, hp, wp, c = self.codes.shape
            p = kernels.pack_planes(self.codes.reshape(-1, c), np.asarray(planes, np.int64),
                                    _words(c))
            p = p.reshape(b, hp, wp, len(planes), -1).transpose(0, 3, 1, 2, 4)
            self._derived[key] = _frozen(np.ascontiguousarray(p))
        return self._derived[key]

    def density(self) -> tuple[float, ...]:
        """Ones-density of each activation bit-plane over the unpadded tensor (LSB first)."""
        pt, pl, pb, pr = self.pads
        pix = self.pixel_counts()
        inner = pix[:, pt:pix.shape[1] - pb, pl:pix.shape[2] - pr]
        elems = inner.shape[0] * inner.shape[1] * inner.shape[2] * self.channels
        return tuple(float(v) for v in inner.sum(axis=(0, 1, 2), dtype=np.int64) / elems)


def _geometry(x_shape: tuple[int, ...], kernel: tuple[int, int], pads: tuple[int, ...]) -> None:
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise ValueError(f"pads must be 4 non-negative integers (top, left, bottom, right): {pads}")
    if len(x_shape) == 2 and (kernel != (1, 1) or any(pads)):
        raise ValueError("a 2-D (rows, features) input takes no kernel or padding")


def _pad_codes(scale: np.ndarray, bias: np.ndarray, bits: int) -> np.ndarray:
    """Per-image conv padding code z = round(clip(|bias| / scale, 0, 1) (2^b - 1)) (PACiM)."""
    levels = (1 << bits) - 1
    return np.round(np.clip(np.abs(bias) / scale, 0.0, 1.0) * levels).astype(uint_dtype(bits))


def _nhwc(src: np.ndarray, bits: int, scale: np.ndarray, bias: np.ndarray,
          pads: tuple[int, int, int, int], quantize: bool) -> np.ndarray:
    """Padded NHWC codes of a (B, C, H, W) or (B, N) tensor (floats quantized, or codes)."""
    dt = uint_dtype(bits)
    levels = (1 << bits) - 1
    if src.ndim == 2:  # rows: already NHWC as (B, 1, 1, N)
        if quantize:
            out = np.empty(src.shape, dtype=dt)
            kernels.quantize_rows(src, bias, scale, levels, out)
        else:
            out = np.ascontiguousarray(src, dtype=dt)
        return out.reshape(src.shape[0], 1, 1, src.shape[1])
    b, c, h, w = src.shape
    pt, pl, pb, pr = pads
    out = np.empty((b, h + pt + pb, w + pl + pr, c), dtype=dt)
    z = _pad_codes(scale, bias, bits)
    if quantize:
        kernels.quantize_nhwc(src, bias, scale, levels, np.asarray(pads, np.int64), z, out)
    else:
        kernels.codes_nhwc(src, np.asarray(pads, np.int64), z, out)
    return out


def quantize_activations(
    x: np.ndarray,
    bits: int,
    *,
    per: Policy = "tensor",
    kernel: tuple[int, int] = (1, 1),
    stride: int = 1,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    sample_rows: int = 1,
    name: str = "x",
) -> Activations:
    """Quantize a (B, C, H, W) conv input or (B, N) linear input for the macro.

    per="tensor": one scale and bias over the whole batch (PACiM); "sample": one per image, or
    for a 2-D input one per group of `sample_rows` consecutive rows (a sample's tokens).
    """
    bits = check_bits(bits, "xbit")
    if per not in POLICIES:
        raise ValueError(f"per must be one of {', '.join(POLICIES)}, got {per!r}")
    a = np.asarray(x)
    if a.dtype.kind not in "fiub" or a.ndim not in (2, 4):
        raise ValueError(f"{name} must be a real 2-D or 4-D array, got {a.dtype} {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    _geometry(a.shape, kernel, pads)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    a = np.ascontiguousarray(a)
    if sample_rows < 1 or a.shape[0] % sample_rows:
        raise ValueError(f"sample_rows={sample_rows} does not divide the {a.shape[0]} rows")
    flat = a.reshape(a.shape[0] // sample_rows if per == "sample" else 1, -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)  # NaN propagates; inf shows at an end
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(f"{name} contains NaN or inf")
    lo = lo.astype(np.float64)
    scale = (hi.astype(np.float64) - lo) + SCALE_EPS
    reps = a.shape[0] if per == "tensor" else sample_rows
    if reps > 1:
        lo, scale = np.repeat(lo, reps), np.repeat(scale, reps)
    codes = _nhwc(a, bits, scale, lo, pads, quantize=True)
    return Activations(_frozen(codes), bits, _frozen(scale), _frozen(lo), tuple(kernel),
                       int(stride), tuple(pads))


def activations_from_codes(
    q: np.ndarray | QTensor,
    bits: int | None = None,
    scale: float | np.ndarray | None = None,
    bias: float | np.ndarray | None = None,
    *,
    kernel: tuple[int, int] = (1, 1),
    stride: int = 1,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> Activations:
    """Activations from integer codes (B, C, H, W) or (B, N) with given scale and bias.

    A QTensor carries its own bits / scale / bias; otherwise scale and bias are per tensor
    (floats) or per image ((B,) arrays).
    """
    if isinstance(q, QTensor):
        q, bits, scale, bias = q.q, q.bits, q.scale, q.bias
    bits = check_bits(bits, "xbit")
    q = np.asarray(q)
    if q.dtype.kind not in "ui" or q.ndim not in (2, 4) or q.size == 0:
        raise ValueError(f"codes must be a non-empty 2-D or 4-D integer array, got {q.shape}")
    if int(q.min()) < 0 or int(q.max()) >= (1 << bits):
        raise ValueError(f"codes must be in 0..{(1 << bits) - 1}")
    _geometry(q.shape, kernel, pads)
    b = q.shape[0]
    sc = np.broadcast_to(np.asarray(scale, dtype=np.float64), (b,)).copy()
    bi = np.broadcast_to(np.asarray(bias, dtype=np.float64), (b,)).copy()
    if not (np.isfinite(sc).all() and (sc > 0).all() and np.isfinite(bi).all()):
        raise ValueError("scale must be finite and > 0, bias finite")
    codes = _nhwc(np.ascontiguousarray(q), bits, sc, bi, pads, quantize=False)
    return Activations(_frozen(codes), bits, _frozen(sc), _frozen(bi), tuple(kernel),
                       int(stride), tuple(pads))
