"""pacim's quantization in torch: per-tensor asymmetric uint codes, fake quantization with
straight-through rounding, and the PACT activation.

The formulas are `pacim.quant`'s, operation for operation, so in float64 the codes equal numpy's
bit for bit: bias = min, scale = max - min + 1e-7, q = round_half_even(clip((t - bias) / scale,
0, 1) * (2^b - 1)). ``per_sample`` quantizes each t[b] on its own, as the ONNX executor does with
activations (one image at a time on the chip); otherwise the whole tensor shares one scale, as
`pacim.functional` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...quant import SCALE_EPS


class RoundSTE(torch.autograd.Function):
    """round() forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(t)

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return g


@dataclass(frozen=True)
class QParams:
    """Affine map of a quantized tensor: t~ = q * step + bias (tensors broadcastable to t)."""

    scale: torch.Tensor
    bias: torch.Tensor
    bits: int

    @property
    def levels(self) -> int:
        """2^bits - 1."""
        return (1 << self.bits) - 1

    @property
    def step(self) -> torch.Tensor:
        """scale / (2^bits - 1)."""
        return self.scale / self.levels

    def pad_code(self) -> torch.Tensor:
        """Conv padding code round(clip(|bias| / scale, 0, 1) * levels) (pacim's QTensor)."""
        return torch.round(torch.clamp(self.bias.abs() / self.scale, 0.0, 1.0) * self.levels)


def qparams(t: torch.Tensor, bits: int, per_sample: bool = False) -> QParams:
    """Scale and bias of t (per tensor, or per t[b] with shape (B, 1, ...)); no gradient."""
    t = t.detach()
    if per_sample:
        flat = t.reshape(t.shape[0], -1)
        shape = (t.shape[0],) + (1,) * (t.ndim - 1)
        lo = flat.min(dim=1).values.reshape(shape)
        hi = flat.max(dim=1).values.reshape(shape)
    else:
        lo, hi = t.min(), t.max()
    return QParams((hi - lo) + SCALE_EPS, lo, int(bits))


def codes(t: torch.Tensor, p: QParams) -> torch.Tensor:
    """Integer codes (as t's float dtype), no gradient: numpy's quantize formula."""
    return torch.round(torch.clamp((t.detach() - p.bias) / p.scale, 0.0, 1.0) * p.levels)


def fake_quant(t: torch.Tensor, p: QParams) -> torch.Tensor:
    """The dequantized tensor q * step + bias, with a straight-through gradient."""
    r = torch.clamp((t - p.bias) / p.scale, 0.0, 1.0) * p.levels
    return RoundSTE.apply(r) * p.step + p.bias


def binarize(w: torch.Tensor) -> torch.Tensor:
    """1-bit weights as XNOR-Net trains them: sign(w) * mean|w| per tensor, identity gradient.

    Per-tensor min/max quantization at 1 bit thresholds at (min + max) / 2, which for a trained
    weight's skewed extremes sends nearly every weight to one level; a two-valued tensor +-a is
    instead held exactly by pacim's offset-binary 1-bit code (0 <-> -a, 1 <-> +a).
    """
    a = w.detach().abs().mean()
    b = torch.where(w.detach() >= 0, a, -a)
    return w + (b - w).detach()


def fq_conv2d(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, stride: int,
              padding: int, xbit: int, wbit: int, per_sample: bool = True) -> torch.Tensor:
    """Conv of the fake-quantized x and w, padding with the pad code's value (as the macro).

    Padding with the value v = pad_code * step + bias per image equals zero padding of (x~ - v)
    plus v * sum(w~): one ordinary conv.
    """
    if wbit == 1:
        w = binarize(w)
    px, pw = qparams(x, xbit, per_sample), qparams(w, wbit)
    xq, wq = fake_quant(x, px), fake_quant(w, pw)
    if not padding:
        return F.conv2d(xq, wq, bias, stride)
    v = (px.pad_code() * px.step + px.bias).detach()
    v = v.reshape(-1, 1, 1, 1) if v.ndim else v.reshape(1, 1, 1, 1)
    y = F.conv2d(xq - v, wq, bias, stride, padding)
    return y + v * wq.sum(dim=(1, 2, 3)).reshape(1, -1, 1, 1)


def fq_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, xbit: int,
              wbit: int, per_sample: bool = True) -> torch.Tensor:
    """Linear layer of the fake-quantized x (B, N) and w (K, N)."""
    if wbit == 1:
        w = binarize(w)
    xq = fake_quant(x, qparams(x, xbit, per_sample))
    return F.linear(xq, fake_quant(w, qparams(w, wbit)), bias)


class PACT(nn.Module):
    """PACT activation: clip(x, 0, alpha) with a learnable clip alpha (init 6.0, as PACiM)."""

    def __init__(self, alpha: float = 6.0) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # d/d alpha = 1 where x > alpha (min's gradient), d/dx = 1 on (0, alpha)
        return torch.minimum(F.relu(x), self.alpha.to(x.dtype))
