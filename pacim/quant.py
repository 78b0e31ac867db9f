"""Per-tensor asymmetric unsigned quantization (the PACiM convention) and bit-planes.

For a tensor t and b bits::

    bias  = min(t)
    scale = max(t - bias) + 1e-7
    q     = round_half_to_even(clip((t - bias) / scale, 0, 1) * (2^b - 1))
    t~    = q * scale / (2^b - 1) + bias
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE_EPS = 1e-7  # added to the range so a constant tensor does not divide by zero (PACiM code)


def check_bits(bits: int, name: str = "bits") -> int:
    """Validate a bit width (1..16) and return it as int."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in 1..16, got {bits!r}")
    if not 1 <= int(bits) <= 16:
        raise ValueError(f"{name} must be in 1..16, got {bits}")
    return int(bits)


def check_finite(t: np.ndarray, name: str) -> np.ndarray:
    """Return t as a float64 array; raise ValueError if it is empty or holds NaN/inf."""
    a = np.asarray(t)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def uint_dtype(bits: int) -> np.dtype:
    """Smallest unsigned dtype that holds a `bits`-bit code."""
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


@dataclass(frozen=True)
class QTensor:
    """A quantized tensor: integer codes q plus the affine map back to floats."""

    q: np.ndarray  # unsigned integer codes, same shape as the float tensor
    scale: float
    bias: float
    bits: int

    @property
    def levels(self) -> int:
        """2^bits - 1, the largest code."""
        return (1 << self.bits) - 1

    @property
    def step(self) -> float:
        """Float value of one code step: scale / (2^bits - 1)."""
        return self.scale / self.levels

    def dequantize(self) -> np.ndarray:
        """The fake-quantized float tensor t~ = q * scale / (2^b - 1) + bias."""
        return self.q.astype(np.float64) * self.step + self.bias

    def code_of(self, value: float) -> int:
        """Code a float value maps to under this tensor's (scale, bias), clipped to range."""
        r = np.clip((value - self.bias) / self.scale, 0.0, 1.0) * self.levels
        return int(np.round(r))

    @property
    def pad_code(self) -> int:
        """Conv padding code z = round(clip(|bias| / scale, 0, 1) * (2^b - 1)) (PACiM)."""
        return int(np.round(np.clip(abs(self.bias) / self.scale, 0.0, 1.0) * self.levels))


def quantize(t: np.ndarray, bits: int, *, name: str = "tensor") -> QTensor:
    """Quantize a whole float tensor to `bits`-bit unsigned codes (one scale and bias)."""
    bits = check_bits(bits)
    a = check_finite(t, name)
    bias = float(a.min())
    scale = float(a.max() - bias) + SCALE_EPS
    return _codes(a, bits, scale, bias)


def quantize_with(t: np.ndarray, bits: int, scale: float, bias: float) -> QTensor:
    """Quantize with given (static, e.g. calibrated) scale and bias; values outside clip."""
    bits = check_bits(bits)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    if not np.isfinite(bias):
        raise ValueError(f"bias must be finite, got {bias!r}")
    return _codes(check_finite(t, "tensor"), bits, float(scale), float(bias))


def _codes(a: np.ndarray, bits: int, scale: float, bias: float) -> QTensor:
    levels = (1 << bits) - 1
    q = np.round(np.clip((a - bias) / scale, 0.0, 1.0) * levels).astype(uint_dtype(bits))
    return QTensor(q=q, scale=scale, bias=bias, bits=int(bits))


def _check_code_range(q: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes in 0..2^bits-1, or ValueError."""
    q = np.asarray(q)
    if q.dtype.kind not in "ui":
        raise ValueError(f"codes must be integers, got dtype {q.dtype}")
    if q.size and (int(q.min()) < 0 or int(q.max()) >= (1 << bits)):
        raise ValueError(f"codes must be in 0..{(1 << bits) - 1}")
    return q


def fake_quantize(t: np.ndarray, bits: int) -> np.ndarray:
    """Quantize then dequantize: the float tensor the integer macro actually computes on."""
    return quantize(t, bits).dequantize()


def bit_planes(q: np.ndarray, bits: int) -> np.ndarray:
    """Bit-planes of unsigned codes: result[j] = (q >> j) & 1, shape (bits, *q.shape), uint8."""
    bits = check_bits(bits)
    q = _check_code_range(q, bits)
    shifts = np.arange(bits, dtype=q.dtype if q.dtype.kind == "u" else np.int64)
    shifts = shifts.reshape((bits,) + (1,) * q.ndim)
    return ((q[None, ...] >> shifts) & 1).astype(np.uint8)


def plane_counts(q: np.ndarray, bits: int, axis: int = -1) -> np.ndarray:
    """Number of ones of each bit-plane along `axis`: shape q.shape without axis, plus (bits,)."""
    bits = check_bits(bits)
    q = _check_code_range(q, bits)
    axis = axis % q.ndim
    out = np.empty(q.shape[:axis] + q.shape[axis + 1 :] + (bits,), dtype=np.int64)
    for j in range(bits):
        out[..., j] = ((q >> j) & 1).sum(axis=axis, dtype=np.int64)
    return out


def plane_densities(q: np.ndarray, bits: int) -> np.ndarray:
    """Fraction of ones in each bit-plane over the whole tensor, shape (bits,)."""
    flat = np.asarray(q).reshape(-1)
    hist = np.bincount(flat, minlength=1 << bits).astype(np.float64)  # one pass over the data
    ones = (np.arange(hist.size)[:, None] >> np.arange(bits)[None, :]) & 1
    return (hist @ ones) / flat.size
