"""The macro layers of the ONNX executor: per-image quantization and the batched macro conv2d
and linear (moved verbatim from workloads/onnx.py; the single macro front end in pacim/macro/
replaces this module).

Quantization follows pacim's functional layers (per-tensor asymmetric uint, conv padding with
the pad code) with one scale per *image*: activations of each image are quantized on their own,
as a chip running one image at a time does, so results never depend on the batch size. Weights
are quantized once per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...macro import kernels
from ...macro.core import counts_of, macro_mac
from ...quant import SCALE_EPS, QTensor, check_bits, quantize, uint_dtype

_CHUNK_ELEMS = 1 << 23  # im2col elements per chunk of images: bounds memory on big batches


# --- macro configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class MacroConfig:
    """What the macro layers need from the arch: precisions and the PAC configuration."""

    xbit: int = 8
    wbit: int = 8
    operand: int = 4
    approx: str = "pac"
    dynamic: tuple[float, float, float] | None = None
    pac_enabled: bool = True
    first_layer_exact: bool = True

    @classmethod
    def from_arch(cls, arch: Any) -> MacroConfig:
        """Read an `pacim.arch.Arch`."""
        return cls(
            xbit=arch.macro.xbit,
            wbit=arch.macro.wbit,
            operand=arch.operand,
            approx=arch.pac.approx,
            dynamic=arch.dynamic_thresholds,
            pac_enabled=arch.pac.enabled,
            first_layer_exact=arch.pac.first_layer_exact,
        )

    @property
    def full(self) -> int:
        """Operand of exact arithmetic: max(xbit, wbit)."""
        return max(self.xbit, self.wbit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "xbit": self.xbit, "wbit": self.wbit, "operand": self.operand,
            "approx": self.approx, "dynamic": list(self.dynamic) if self.dynamic else None,
            "pac_enabled": self.pac_enabled, "first_layer_exact": self.first_layer_exact,
        }


# --- per-image quantization and the batched macro layers ----------------------------------


def quantize_per_sample(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize each x[b] on its own (pacim's per-tensor formula): (codes, scale (B,), bias (B,)).

    Bit-identical to ``pacim.quant.quantize(x[b], bits)`` for every b.
    """
    bits = check_bits(bits)
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    if not np.isfinite(flat).all():
        raise ValueError("activations contain NaN or inf")
    lo = flat.min(axis=1)
    scale = (flat.max(axis=1) - lo) + SCALE_EPS
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    levels = (1 << bits) - 1
    r = x - lo.reshape(shape)  # the same operations as quantize_with, done in place
    r /= scale.reshape(shape)
    np.clip(r, 0.0, 1.0, out=r)
    r *= levels
    np.round(r, out=r)
    return r.astype(uint_dtype(bits)), scale, lo


def pad_codes(scale: np.ndarray, bias: np.ndarray, bits: int) -> np.ndarray:
    """Per-image conv padding code, as `QTensor.pad_code`: round(clip(|bias|/scale) * levels)."""
    levels = (1 << bits) - 1
    return np.round(np.clip(np.abs(bias) / scale, 0.0, 1.0) * levels).astype(uint_dtype(bits))


@dataclass(frozen=True)
class PreparedWeight:
    """A layer's weight quantized once: codes (K, N), plane counts and the sum of w~ per row."""

    qw: QTensor
    codes: np.ndarray  # (K, N) contiguous
    counts: np.ndarray  # (K, wbit)
    sum_wt: np.ndarray  # (K,) sum over N of the dequantized weight

    @classmethod
    def of(cls, weight: np.ndarray, wbit: int) -> PreparedWeight:
        """Quantize a (K, ...) weight per tensor."""
        qw = quantize(weight, wbit, name="weight")
        k = weight.shape[0]
        codes = np.ascontiguousarray(qw.q.reshape(k, -1))
        counts = counts_of(codes, wbit)
        n = codes.shape[1]
        sum_qw = counts.astype(np.float64) @ np.ldexp(1.0, np.arange(wbit))
        return cls(qw, codes, counts, qw.step * sum_qw + n * qw.bias)


def _dequantize_rows(
    mac: np.ndarray, x_counts: np.ndarray, step_x: np.ndarray, bias_x: np.ndarray,
    pw: PreparedWeight, bias: np.ndarray | None,
) -> np.ndarray:
    """(P, K) floats from integer MACs, with one activation scale per row (functional's formula).

    y = mac s_x s_w + b_x sum(w~) + b_w sum(x~) - N b_w b_x + bias; the terms after the first
    are a rank-3 product [b_x, row terms, 1] @ [sum(w~); 1; bias]. Overwrites mac.
    """
    n = pw.codes.shape[1]
    xbit = x_counts.shape[1]
    sum_qx = x_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(xbit))
    sum_xt = step_x * sum_qx + n * bias_x
    qw = pw.qw
    k = pw.codes.shape[0]
    left = np.stack([bias_x, qw.bias * sum_xt - (n * qw.bias) * bias_x, np.ones_like(bias_x)],
                    axis=1)
    right = np.stack([pw.sum_wt, np.ones(k), np.zeros(k) if bias is None else bias])
    y = np.multiply(mac, (step_x * qw.step)[:, None], out=mac)
    y += left @ right
    return y


def macro_conv2d(
    x: np.ndarray, pw: PreparedWeight, kernel: tuple[int, int], bias: np.ndarray | None, *,
    stride: int, pads: tuple[int, int, int, int], xbit: int, operand: int, approx: str,
    dynamic: tuple[float, float, float] | None,
) -> np.ndarray:
    """Conv (B, C, H, W) -> (B, K, Ho, Wo) through the macro, each image quantized on its own.

    pads = (top, left, bottom, right), filled with each image's pad code.
    """
    b_, c_, h, w_ = x.shape
    kh, kw = kernel
    pt, pl, pb, pr = pads
    k_ = pw.codes.shape[0]
    ho = (h + pt + pb - kh) // stride + 1
    wo = (w_ + pl + pr - kw) // stride + 1
    q, scale, lo = quantize_per_sample(x, xbit)
    if any(pads):
        xp = np.empty((b_, c_, h + pt + pb, w_ + pl + pr), dtype=q.dtype)
        xp[:] = pad_codes(scale, lo, xbit)[:, None, None, None]
        xp[:, :, pt:pt + h, pl:pl + w_] = q
    else:
        xp = np.ascontiguousarray(q)
    step = scale / ((1 << xbit) - 1)
    out = np.empty((b_, k_, ho, wo), dtype=np.float64)
    per_img = ho * wo * c_ * kh * kw
    chunk = max(1, _CHUNK_ELEMS // max(per_img, 1))
    for i0 in range(0, b_, chunk):
        i1 = min(i0 + chunk, b_)
        xs = xp[i0:i1]
        cols = kernels.im2col(xs, kh, kw, stride, ho, wo)
        sx = kernels.box_plane_counts(xs, xbit, kh, kw, stride, ho, wo)
        res = macro_mac(cols, pw.codes, xbit=xbit, wbit=pw.qw.bits, operand=operand,
                        approx=approx, dynamic=dynamic, x_counts=sx, w_counts=pw.counts)
        rows = ho * wo
        y = _dequantize_rows(res.mac, sx, np.repeat(step[i0:i1], rows),
                             np.repeat(lo[i0:i1], rows), pw, bias)
        out[i0:i1] = y.reshape(i1 - i0, ho, wo, k_).transpose(0, 3, 1, 2)
    return out


def macro_linear(
    x: np.ndarray, pw: PreparedWeight, bias: np.ndarray | None, *, xbit: int, operand: int,
    approx: str,
) -> np.ndarray:
    """x (B, ..., N) @ w.T through the macro, each x[b] quantized on its own; (B, ..., K)."""
    q, scale, lo = quantize_per_sample(x, xbit)
    n = x.shape[-1]
    rows_per = int(np.prod(x.shape[1:-1], dtype=np.int64))
    codes = np.ascontiguousarray(q.reshape(-1, n))
    res = macro_mac(codes, pw.codes, xbit=xbit, wbit=pw.qw.bits, operand=operand,
                    approx=approx, w_counts=pw.counts)
    step = scale / ((1 << xbit) - 1)
    y = _dequantize_rows(res.mac, res.x_counts, np.repeat(step, rows_per),
                         np.repeat(lo, rows_per), pw, bias)
    return y.reshape(x.shape[:-1] + (pw.codes.shape[0],))
