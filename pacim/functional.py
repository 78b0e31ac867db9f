"""conv2d / linear on floats through the CiM macro: quantize -> macro -> dequantize.

A thin layer over the macro front end (pacim.macro.layer): activations are quantized per tensor
over the whole batch (PACiM's convention), weights per tensor. A weight may be given as floats
or as a PreparedWeight (`pacim.macro.prepare_weight`), which skips its quantization on every
call; the results are identical. Dequantization (see pacim.macro.layer):

    y = mac * s_w s_x / ((2^wb-1)(2^xb-1)) + b_x sum w~ + b_w sum x~ - N b_w b_x (+ bias)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .macro.layer import apply
from .macro.operands import (
    PreparedWeight,
    activations_from_codes,
    prepare_weight,
    quantize_activations,
)
from .macro.stats import MacroStats
from .quant import QTensor, check_bits, check_finite

__all__ = ["MacroStats", "PreparedWeight", "conv2d", "linear", "linear_quantized",
           "prepare_weight"]


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _check_bias(bias: Any, k: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = check_finite(bias, "bias")
    if b.shape != (k,):
        raise ValueError(f"bias must have shape ({k},), got {np.shape(bias)}")
    return b


def _weight(w: Any, wbit: int, ndim: int) -> PreparedWeight:
    """A PreparedWeight of the expected kind from floats or an already prepared weight."""
    if isinstance(w, PreparedWeight):
        if w.conv != (ndim == 4):
            kind = "conv (K, C, kh, kw)" if ndim == 4 else "linear (K, N)"
            raise ValueError(f"w is a prepared {'conv' if w.conv else 'linear'} weight; "
                             f"this layer needs a {kind} weight")
        return w
    if np.ndim(w) != ndim:
        raise ValueError(f"w must be {ndim}-D, got shape {np.shape(w)}")
    return prepare_weight(w, check_bits(wbit, "wbit"))


def _input(x: Any, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"x must be {ndim}-D, got shape {a.shape}")
    return a


def conv2d(
    x: np.ndarray,
    w: np.ndarray | PreparedWeight,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
    dynamic: tuple[float, float, float] | None = None,
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, MacroStats]:
    """2-D convolution (groups=1) through the bit-serial PAC macro.

    x: (B, C, H, W), w: (K, C, kh, kw) floats or a PreparedWeight. Returns float64
    (B, K, Ho, Wo), and MacroStats when return_stats. `dynamic` = (t0, t1, t2) enables PACiM's
    dynamic workload configuration.
    """
    x = _input(x, 4)
    xbit = check_bits(xbit, "xbit")
    stride = _check_int(stride, "stride", 1)
    padding = _check_int(padding, "padding", 0)
    pw = _weight(w, wbit, 4)
    kh, kw = pw.kernel
    b_, c_, h, wd = x.shape
    if pw.channels != c_:
        raise ValueError(f"w has {pw.channels} input channels but x has {c_} "
                         f"(x {x.shape}, w {(pw.k, pw.channels, kh, kw)})")
    if (h + 2 * padding - kh) // stride + 1 < 1 or (wd + 2 * padding - kw) // stride + 1 < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit input {h}x{wd} with padding {padding}")
    bias = _check_bias(bias, pw.k)
    act = quantize_activations(x, xbit, kernel=(kh, kw), stride=stride, pads=(padding,) * 4)
    y, stats = apply(act, pw, bias, operand=operand, approx=approx, dynamic=dynamic,
                     stats=return_stats, layout="nchw")
    return (y, stats) if return_stats else y


def linear_quantized(
    qx: QTensor,
    qw: QTensor | PreparedWeight,
    bias: np.ndarray | None = None,
    *,
    operand: int = 4,
    approx: str = "pac",
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, MacroStats]:
    """y = x~ @ w~.T (+ bias) through the macro, from already-quantized tensors.

    qx.q: (B, N) codes, qw.q: (K, N) codes (or a PreparedWeight). Use this with static
    (calibrated) activation scales.
    """
    pw = prepare_weight(qw)
    if np.ndim(qx.q) != 2 or pw.conv:
        raise ValueError(f"qx and qw must be 2-D, got {np.shape(qx.q)} and {pw.qtensor().q.shape}")
    if qx.q.shape[1] != pw.n:
        raise ValueError(f"x has {qx.q.shape[1]} features but w expects {pw.n}")
    act = activations_from_codes(qx)
    y, stats = apply(act, pw, _check_bias(bias, pw.k), operand=operand, approx=approx,
                     stats=return_stats)
    return (y, stats) if return_stats else y


def linear(
    x: np.ndarray,
    w: np.ndarray | PreparedWeight,
    bias: np.ndarray | None = None,
    *,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, MacroStats]:
    """Fully connected layer through the macro. x: (B, N), w: (K, N) floats or a
    PreparedWeight; returns float64 (B, K)."""
    x = _input(x, 2)
    xbit = check_bits(xbit, "xbit")
    pw = _weight(w, wbit, 2)
    if x.shape[1] != pw.n:
        raise ValueError(f"x has {x.shape[1]} features but w expects {pw.n} "
                         f"(x {x.shape}, w {(pw.k, pw.n)})")
    act = quantize_activations(x, xbit)
    y, stats = apply(act, pw, _check_bias(bias, pw.k), operand=operand, approx=approx,
                     stats=return_stats)
    return (y, stats) if return_stats else y
