"""conv2d / linear on floats through the CiM macro: quantize -> macro -> dequantize.

Dequantization of one output (x~ = s_x/(2^xb-1) q_x + b_x, likewise w~):

    y = mac * s_w s_x / ((2^wb-1)(2^xb-1)) + b_x sum w~ + b_w sum x~ - N b_w b_x (+ bias)

which equals sum_n w~_n x~_n exactly when mac is the exact integer dot product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .macro import kernels
from .macro.core import MacResult, counts_of, macro_mac
from .macro.stats import MacroStats
from .quant import QTensor, check_bits, check_finite, plane_densities, quantize


def _as_array(t: Any, name: str, ndim: int) -> np.ndarray:
    a = check_finite(t, name)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def _check_bias(bias: Any, k: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = check_finite(bias, "bias")
    if b.shape != (k,):
        raise ValueError(f"bias must have shape ({k},), got {np.shape(bias)}")
    return b


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _dequantize(
    res: MacResult, qx: QTensor, qw: QTensor, n: int, bias: np.ndarray | None
) -> np.ndarray:
    """(P, K) float64 outputs from integer MACs and the tensors' affine maps."""
    sum_qx = res.x_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(qx.bits))
    sum_qw = res.w_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(qw.bits))
    sum_xt = qx.step * sum_qx + n * qx.bias  # sum of x~ over the window (padding included)
    sum_wt = qw.step * sum_qw + n * qw.bias
    y = res.mac * (qx.step * qw.step)
    y += qx.bias * sum_wt[None, :]
    y += qw.bias * sum_xt[:, None]
    y -= n * qw.bias * qx.bias
    if bias is not None:
        y += bias[None, :]
    return y


def _stats(
    res: MacResult, qx: QTensor, qw: QTensor, n: int, operand: int, approx: str
) -> MacroStats:
    p, k = res.mac.shape
    cyc = res.digital_cycles.astype(np.int64)
    total_pairs = qx.bits * qw.bits
    return MacroStats(
        macs=p * k * n,
        n=n,
        outputs=p * k,
        positions=p,
        xbit=qx.bits,
        wbit=qw.bits,
        operand=operand,
        approx=approx,
        digital_cycles_mean=float(cyc.mean()),
        cycle_hist={c: cnt * k for c, cnt in res.level_counts.items()},
        pac_pairs=int((total_pairs - cyc).sum()) * k,
        x_density=tuple(float(v) for v in plane_densities(qx.q, qx.bits)),
        w_density=tuple(float(v) for v in plane_densities(qw.q, qw.bits)),
    )


@dataclass(frozen=True)
class MacroOperands:
    """A layer as the macro sees it: quantized tensors, code matrices and plane counts.

    Built once per layer and reusable for several macro configurations (e.g. PAC and exact).
    """

    qx: QTensor
    qw: QTensor
    cols: np.ndarray  # (P, N) activation codes per input vector (conv: per window, padded)
    w_codes: np.ndarray  # (K, N) weight codes
    x_counts: np.ndarray  # (P, xbit) plane counts per input vector
    w_counts: np.ndarray  # (K, wbit) plane counts per weight column
    n: int

    def run(
        self,
        bias: np.ndarray | None = None,
        *,
        operand: int = 4,
        approx: str = "pac",
        dynamic: tuple[float, float, float] | None = None,
        stats: bool = True,
    ) -> tuple[np.ndarray, MacroStats | None]:
        """(y (P, K) float64, stats or None) through the macro with this configuration."""
        res = macro_mac(
            self.cols, self.w_codes, xbit=self.qx.bits, wbit=self.qw.bits, operand=operand,
            approx=approx, dynamic=dynamic, x_counts=self.x_counts, w_counts=self.w_counts,
        )
        y = _dequantize(res, self.qx, self.qw, self.n, bias)
        return y, _stats(res, self.qx, self.qw, self.n, operand, approx) if stats else None


ConvOperands = MacroOperands  # conv layers use the same container


def linear_operands(qx: QTensor, qw: QTensor) -> MacroOperands:
    """Operands of a linear layer from quantized (B, N) activations and (K, N) weights."""
    if qx.q.ndim != 2 or qw.q.ndim != 2:
        raise ValueError(f"qx and qw must be 2-D, got {qx.q.shape} and {qw.q.shape}")
    if qx.q.shape[1] != qw.q.shape[1]:
        raise ValueError(f"x has {qx.q.shape[1]} features but w expects {qw.q.shape[1]}")
    xq = np.ascontiguousarray(qx.q)
    wq = np.ascontiguousarray(qw.q)
    return MacroOperands(qx=qx, qw=qw, cols=xq, w_codes=wq, x_counts=counts_of(xq, qx.bits),
                         w_counts=counts_of(wq, qw.bits), n=xq.shape[1])


def conv_operands(
    x: np.ndarray, w: np.ndarray, xbit: int, wbit: int, stride: int, padding: int
) -> MacroOperands:
    """Quantize x and w per tensor, pad with the pad code, unfold (im2col) and count planes."""
    k_, c_, kh, kw = w.shape
    _, _, h, wd = x.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    qx = quantize(x, xbit, name="x")
    qw = quantize(w, wbit, name="w")
    xp = qx.q
    if padding:
        xp = np.pad(xp, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                    constant_values=qx.pad_code)
    xp = np.ascontiguousarray(xp)
    n = c_ * kh * kw
    w_codes = np.ascontiguousarray(qw.q.reshape(k_, n))
    return MacroOperands(
        qx=qx,
        qw=qw,
        cols=kernels.im2col(xp, kh, kw, stride, ho, wo),
        w_codes=w_codes,
        x_counts=kernels.box_plane_counts(xp, xbit, kh, kw, stride, ho, wo),
        w_counts=counts_of(w_codes, wbit),
        n=n,
    )


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
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

    x: (B, C, H, W), w: (K, C, kh, kw). Returns float64 (B, K, Ho, Wo), and MacroStats when
    return_stats. `dynamic` = (t0, t1, t2) enables PACiM's dynamic workload configuration.
    """
    x = _as_array(x, "x", 4)
    w = _as_array(w, "w", 4)
    xbit = check_bits(xbit, "xbit")
    wbit = check_bits(wbit, "wbit")
    stride = _check_int(stride, "stride", 1)
    padding = _check_int(padding, "padding", 0)
    b_, c_, h, wd = x.shape
    k_, cw, kh, kw = w.shape
    if cw != c_:
        raise ValueError(f"w has {cw} input channels but x has {c_} (x {x.shape}, w {w.shape})")
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit input {h}x{wd} with padding {padding}")
    bias = _check_bias(bias, k_)
    ops = conv_operands(x, w, xbit, wbit, stride, padding)
    y, stats = ops.run(bias, operand=operand, approx=approx, dynamic=dynamic, stats=return_stats)
    y = np.ascontiguousarray(y.reshape(b_, ho, wo, k_).transpose(0, 3, 1, 2))
    return (y, stats) if return_stats else y


def linear_quantized(
    qx: QTensor,
    qw: QTensor,
    bias: np.ndarray | None = None,
    *,
    operand: int = 4,
    approx: str = "pac",
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, MacroStats]:
    """y = x~ @ w~.T (+ bias) through the macro, from already-quantized tensors.

    qx.q: (B, N) codes, qw.q: (K, N) codes. Use this with static (calibrated) activation scales.
    """
    ops = linear_operands(qx, qw)
    y, stats = ops.run(_check_bias(bias, qw.q.shape[0]), operand=operand, approx=approx,
                       stats=return_stats)
    return (y, stats) if return_stats else y


def linear(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, MacroStats]:
    """Fully connected layer through the macro. x: (B, N), w: (K, N); returns float64 (B, K)."""
    x = _as_array(x, "x", 2)
    w = _as_array(w, "w", 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[1]} "
                         f"(x {x.shape}, w {w.shape})")
    qx = quantize(x, check_bits(xbit, "xbit"), name="x")
    qw = quantize(w, check_bits(wbit, "wbit"), name="w")
    return linear_quantized(qx, qw, bias, operand=operand, approx=approx,
                            return_stats=return_stats)
