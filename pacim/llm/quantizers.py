"""The quantizers of the LLM front end: static activations, weights per tensor or channel, KV.

- Activations: per tensor, static (calibrated (scale, bias)), pacim's asymmetric uint codes with
  0.0 on a code (:func:`static_qparams`).
- Weights (:class:`ChannelWeights`): per tensor asymmetric (``pacim.quant.quantize``, the macro's
  convention) or per output channel, symmetric (``w~ = (q - 2^(b-1)) * step_k``, RTN with
  ``step_k = max|w_k| / (2^(b-1) - 1)``) or asymmetric (min/max per row). Every form is
  ``w~ = (q - zero_k) * step_k`` on unsigned codes, so the macro runs on the codes and the
  per-channel scales are applied in the periphery (:func:`macro_linear`).
- KV cache at the attention BMM inputs: static per tensor (one (scale, bias) per layer for K and
  for V) or group-wise dynamic (per token, groups of channels within a head, min/max).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pacim.llm.model import SITE_LINEARS, LlamaModel
from pacim.llm.rotation import DEFAULT_ROTATION, BlockHadamard, check_rotation
from pacim.llm.sites import site_rotations
from pacim.quant import SCALE_EPS, QTensor, check_bits, quantize, uint_dtype


def static_qparams(lo: float, hi: float, bits: int) -> tuple[float, float]:
    """(scale, bias) of a static per-tensor quantizer for the calibrated range [lo, hi].

    pacim's convention (bias = lo, scale = hi - lo + 1e-7), except that when the range straddles
    zero the bias is moved by less than half a step so that 0.0 falls exactly on a code. Without
    it every zero activation (most SwiGLU outputs are near zero) decodes to the same small
    offset, which the next linear turns into a bias on every token.
    """
    scale = float(hi - lo) + SCALE_EPS
    if lo < 0.0 < hi:
        step = scale / ((1 << bits) - 1)
        return scale, -round(-lo / step) * step
    return scale, float(lo)


def fake_quant(x: np.ndarray, bits: int, scale: float, bias: float) -> np.ndarray:
    """Static fake quantization (clip, round half to even, decode), float32 out.

    The codes are decided in float64 exactly as :func:`static_codes` does, so the float path and
    the macro path (``+pac``) see the same codes.
    """
    levels = (1 << bits) - 1
    a = np.asarray(x, dtype=np.float64)
    q = np.rint(np.clip((a - bias) / scale, 0.0, 1.0) * levels)
    return (q * (scale / levels) + bias).astype(np.float32)


def static_codes(x: np.ndarray, bits: int, scale: float, bias: float) -> QTensor:
    """Static quantization to a QTensor (float64 arithmetic, as ``pacim.quant``)."""
    levels = (1 << bits) - 1
    a = np.asarray(x, dtype=np.float64)
    q = np.rint(np.clip((a - bias) / scale, 0.0, 1.0) * levels).astype(uint_dtype(bits))
    return QTensor(q=q, scale=float(scale), bias=float(bias), bits=int(bits))


@dataclass(frozen=True)
class ChannelWeights:
    """Weight codes (K, N) with ``w~ = (q - zero_k) * step_k``; ``qtensor`` for per-tensor."""

    codes: np.ndarray
    step: np.ndarray  # (K,)
    zero: np.ndarray  # (K,)
    bits: int
    qtensor: QTensor | None = None  # per-tensor asymmetric: the macro's own QTensor
    _prepared: list = field(default_factory=list, repr=False, compare=False)

    def prepared(self) -> Any:
        """The macro's PreparedWeight of these codes, made once (per-tensor: the QTensor's own
        scale; otherwise the raw codes at step 1, channel scales applied after the MAC)."""
        if not self._prepared:
            from pacim.macro import prepare_weight  # noqa: PLC0415

            qt = self.qtensor if self.qtensor is not None else QTensor(
                q=self.codes, scale=float((1 << self.bits) - 1), bias=0.0, bits=self.bits)
            self._prepared.append(prepare_weight(qt))
        return self._prepared[0]

    def dequantize(self) -> np.ndarray:
        """The fake-quantized weight, float32 (K, N)."""
        if self.qtensor is not None:
            return self.qtensor.dequantize().astype(np.float32)
        return ((self.codes - self.zero[:, None]) * self.step[:, None]).astype(np.float32)


def quantize_weight(
    w: np.ndarray, bits: int, *, per_channel: bool = False, symmetric: bool = False
) -> ChannelWeights:
    """RTN weight quantization per tensor or per output channel, symmetric or asymmetric."""
    bits = check_bits(bits, "wbits")
    w = np.asarray(w, dtype=np.float64)
    k = w.shape[0]
    levels = (1 << bits) - 1
    if not per_channel and not symmetric:
        qt = quantize(w, bits)
        step = np.full(k, qt.step)
        return ChannelWeights(qt.q, step, np.full(k, -qt.bias / qt.step), bits, qt)
    if symmetric:
        half = (1 << (bits - 1)) - 1 if bits > 1 else 1
        amax = np.abs(w).max(axis=1) if per_channel else np.full(k, np.abs(w).max())
        step = np.maximum(amax, SCALE_EPS) / half
        zero = np.full(k, float(1 << (bits - 1)))
        q = np.clip(np.rint(w / step[:, None]) + zero[:, None], 0, levels)
    else:
        lo = w.min(axis=1)
        step = (w.max(axis=1) - lo + SCALE_EPS) / levels
        zero = -lo / step
        q = np.rint(np.clip((w - lo[:, None]) / (step[:, None] * levels), 0.0, 1.0) * levels)
    return ChannelWeights(q.astype(uint_dtype(bits)), step, zero, bits)


class QuantizedWeights:
    """Quantized weights of every linear: codes (for the macro) and fake-quant floats.

    With ``rotation="hadamard"`` each weight W is quantized as ``W R`` (R: its site's rotation).
    """

    def __init__(
        self,
        model: LlamaModel,
        wbits: int,
        rotation: str = DEFAULT_ROTATION,
        *,
        per_channel: bool = False,
        symmetric: bool = False,
    ) -> None:
        self.wbits = check_bits(wbits, "wbits")
        self.rotation = check_rotation(rotation)
        self.per_channel, self.symmetric = per_channel, symmetric
        self.rotations: dict[str, BlockHadamard] = site_rotations(model, rotation)
        self.q: list[dict[str, list[ChannelWeights]]] = []
        self.fused: list[dict[str, np.ndarray]] = []
        for b in model.blocks:
            qd: dict[str, list[ChannelWeights]] = {}
            fd: dict[str, np.ndarray] = {}
            for site, names in SITE_LINEARS.items():
                rot = self.rotations.get(site)
                qs = [
                    quantize_weight(b.linears[n] if rot is None else rot.apply(b.linears[n]),
                                    self.wbits, per_channel=per_channel, symmetric=symmetric)
                    for n in names
                ]  # fmt: skip
                qd[site] = qs
                fd[site] = np.concatenate([q.dequantize() for q in qs], axis=0)
            self.q.append(qd)
            self.fused.append(fd)


def macro_linear(
    linear_quantized: Any, qx: QTensor, cw: ChannelWeights, operand: int, want_stats: bool
) -> tuple[np.ndarray, Any]:
    """``x~ @ w~.T`` through the macro: the codes' MAC on the macro, channel scales after.

    Per-tensor asymmetric weights go straight to ``linear_quantized`` (today's path). Other forms
    run the macro on the weight codes (a QTensor of step 1) and apply ``(acc - zero_k sum x~)
    * step_k`` per output channel in the periphery.
    """
    op = min(operand, max(qx.bits, cw.bits))
    r = linear_quantized(qx, cw.prepared(), operand=op, return_stats=want_stats)
    if cw.qtensor is not None:
        return r if want_stats else (r, None)
    acc, st = r if want_stats else (r, None)
    xsum = qx.dequantize().sum(axis=1)
    return (acc - xsum[:, None] * cw.zero[None, :]) * cw.step[None, :], st


@dataclass(frozen=True)
class GroupCodes:
    """Group-wise dynamic codes of a (T, H, D) tensor: groups of ``group`` channels per head."""

    q: np.ndarray  # (T, H, D // group, group) uint
    step: np.ndarray  # (T, H, D // group, 1)
    bias: np.ndarray  # (T, H, D // group, 1)
    bits: int

    def dequantize(self) -> np.ndarray:
        """Decoded float32 tensor (T, H, D)."""
        x = self.q * self.step + self.bias
        return x.reshape(*x.shape[:2], -1).astype(np.float32)


def group_codes(x: np.ndarray, bits: int, group: int) -> GroupCodes:
    """Dynamic asymmetric min/max quantization per token and channel group (within a head)."""
    t, h, d = x.shape
    g = min(group, d)
    while d % g:  # the largest divisor of the head dim not above the group size
        g -= 1
    xg = np.asarray(x, dtype=np.float64).reshape(t, h, d // g, g)
    lo = xg.min(axis=-1, keepdims=True)
    levels = (1 << bits) - 1
    step = (xg.max(axis=-1, keepdims=True) - lo + SCALE_EPS) / levels
    q = np.rint((xg - lo) / step).clip(0, levels).astype(uint_dtype(bits))
    return GroupCodes(q, step, lo, bits)
