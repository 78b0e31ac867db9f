"""The PAC macro in torch: bit-exact with `pacim.functional.conv2d` / `linear`, batched, with a
straight-through gradient, for fine-tuning a network with PAC in its forward pass.

On codes q_x, q_w (see `pacim.macro.core` for the semantics):
- the digital set D (top `operand` weight x activation planes) is one conv of the MSB codes;
- every other pair (i, j) is approximated from plane counts: ``pac`` 2^(i+j) S_w,i S_x,j / N,
  ``truncate`` 0, ``expected`` 2^(i+j) N / 4; S_x,j of a conv window is a box sum of the
  bit-plane's channel sum;
- dynamic configuration: E = (sum of the window's codes) * 576 / N picks a level per output
  position (16/15/13/10 digital cycles); the exact products of the pairs a level moves out of D
  are removed (one conv per activation plane they use) and their PAC terms added.
Dequantization is the functional layers' formula. The forward value is the macro's; the
gradient is that of the fake-quantized layer (straight-through), since the macro's integer
arithmetic has no useful derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...macro.core import (
    DYN_REF_WINDOW,
    check_approx,
    check_dynamic,
    check_operand,
    digital_set,
    dynamic_digital_sets,
    pair_weights,
)
from ...workloads.onnx import MacroConfig
from .quant import QParams, codes, fq_conv2d, fq_linear, qparams

DEFAULT_CONFIG = MacroConfig()  # 8b/8b, operand 4, pac, static


def check_config(cfg: MacroConfig) -> MacroConfig:
    """The macro configuration (`pacim.workloads.onnx.MacroConfig`), validated."""
    check_operand(cfg.operand, cfg.xbit, cfg.wbit)
    check_approx(cfg.approx)
    check_dynamic(cfg.dynamic, cfg.xbit, cfg.wbit, cfg.operand)
    return cfg


def _planes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-planes of integer-valued codes: (bits, *q.shape), LSB first."""
    qi = q.to(torch.int32)
    shifts = torch.arange(bits, dtype=torch.int32, device=q.device).reshape(
        (bits,) + (1,) * q.ndim)
    return ((qi.unsqueeze(0) >> shifts) & 1).to(q.dtype)


def _pow2(bits: int, like: torch.Tensor) -> torch.Tensor:
    """2^j, j = 0..bits-1, in like's dtype and device."""
    return torch.ldexp(torch.ones(bits, dtype=like.dtype, device=like.device),
                       torch.arange(bits, device=like.device))


def _approx(nd: np.ndarray, cfg: MacroConfig, sx: torch.Tensor, sw: torch.Tensor,
            n: int) -> torch.Tensor | float:
    """Sum over the pairs nd (wbit, xbit) of 2^(i+j) * term; sx (..., xbit), sw (K, wbit)."""
    if cfg.approx == "truncate" or not nd.any():
        return 0.0
    c = pair_weights(cfg.xbit, cfg.wbit) * nd
    if cfg.approx == "expected":
        return float(c.sum()) * n / 4.0
    ct = torch.as_tensor(c.T, dtype=sx.dtype, device=sx.device)  # (xbit, wbit)
    return (sx @ ct) @ sw.T / n  # (..., K), the numpy macro's association


def _mac(xmsb_conv: torch.Tensor, sx: torch.Tensor, sw: torch.Tensor, n: int, cfg: MacroConfig,
         moved_exact: dict[tuple[int, int], torch.Tensor] | None,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-domain MAC (..., K) and digital cycles per row (...): rows on the last axis."""
    d = digital_set(cfg.xbit, cfg.wbit, cfg.operand)
    mac = xmsb_conv + _approx(~d, cfg, sx, sw, n)
    cycles = torch.full(mac.shape[:-1], int(d.sum()), dtype=torch.int16, device=mac.device)
    if cfg.dynamic is None:
        return mac, cycles
    e = (sx @ _pow2(cfg.xbit, sx)) * (DYN_REF_WINDOW / n)  # pacim.macro.core.speculation
    t0, t1, t2 = cfg.dynamic
    lv = torch.full(e.shape, 3, dtype=torch.int8, device=e.device)
    lv[e > t0] = 2
    lv[e > t1] = 1
    lv[e > t2] = 0
    for level, d_lv in enumerate(dynamic_digital_sets(cfg.xbit, cfg.wbit, cfg.operand)):
        moved = d & ~d_lv
        if not moved.any():
            continue
        rows = (lv == level).unsqueeze(-1).to(mac.dtype)
        delta = _approx(moved, cfg, sx, sw, n)
        for i, j in zip(*np.nonzero(moved), strict=True):
            delta = delta - moved_exact[(int(i), int(j))] * float(2 ** (i + j))  # type: ignore
        mac = mac + rows * delta
        cycles[lv == level] = int(d_lv.sum())
    return mac, cycles


def _moved_pairs(cfg: MacroConfig) -> list[tuple[int, int]]:
    """(weight plane i, activation plane j) pairs any dynamic level moves out of D."""
    if cfg.dynamic is None:
        return []
    d = digital_set(cfg.xbit, cfg.wbit, cfg.operand)
    moved = np.zeros_like(d)
    for d_lv in dynamic_digital_sets(cfg.xbit, cfg.wbit, cfg.operand):
        moved |= d & ~d_lv
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(moved), strict=True)]


def _dequantize(mac: torch.Tensor, sum_qx: torch.Tensor, px: QParams, pw: QParams,
                sum_qw: torch.Tensor, n: int, bias: torch.Tensor | None) -> torch.Tensor:
    """y = mac s_x s_w + b_x sum(w~) + b_w sum(x~) - N b_w b_x (+ bias); rows x K last."""
    sx_step, bx = px.step.reshape(-1, 1), px.bias.reshape(-1, 1)
    sum_xt = sx_step * sum_qx.reshape(sum_qx.shape[0], -1) + n * bx  # (B, rows)
    sum_wt = pw.step * sum_qw + n * pw.bias  # (K,)
    y = mac.reshape(mac.shape[0], -1, mac.shape[-1]) * (sx_step * pw.step).unsqueeze(-1)
    y = y + bx.unsqueeze(-1) * sum_wt
    y = y + pw.bias * sum_xt.unsqueeze(-1)
    y = y - n * pw.bias * bx.unsqueeze(-1)
    if bias is not None:
        y = y + bias
    return y.reshape(mac.shape)


def _needs_grad(*ts: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


@dataclass
class PacOut:
    """A PAC layer's output and the digital cycles each output position took."""

    y: torch.Tensor
    cycles: torch.Tensor


def pac_conv2d(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
               stride: int = 1, padding: int = 0, cfg: MacroConfig = DEFAULT_CONFIG,
               per_sample: bool = True) -> PacOut:
    """Conv (B, C, H, W) * (K, C, kh, kw) through the PAC macro; y is (B, K, Ho, Wo).

    per_sample: activations quantized per image (the ONNX executor) or per tensor
    (`pacim.functional.conv2d`). Weights are quantized per tensor.
    """
    px, pw = qparams(x, cfg.xbit, per_sample), qparams(w, cfg.wbit)
    k, c, kh, kw = w.shape
    n = c * kh * kw
    with torch.no_grad():
        qx, qw = codes(x, px), codes(w, pw)
        pad = px.pad_code().reshape(-1, 1, 1, 1) if per_sample else px.pad_code()
        xp = F.pad(qx - pad, (padding,) * 4) + pad if padding else qx
        shx, shw = max(0, cfg.xbit - cfg.operand), max(0, cfg.wbit - cfg.operand)
        qi = xp.to(torch.uint8 if cfg.xbit <= 8 else torch.int32)  # small ints: cheap bit ops
        msb = F.conv2d((qi >> shx).to(x.dtype), torch.floor(qw / 2**shw), None, stride)
        msb = msb * float(2 ** (shx + shw))
        chan = torch.stack([((qi >> j) & 1).sum(dim=1, dtype=torch.int32)
                            for j in range(cfg.xbit)], dim=1).to(x.dtype)  # (B, xbit, Hp, Wp)
        box = torch.ones((cfg.xbit, 1, kh, kw), dtype=x.dtype, device=x.device)
        sx = F.conv2d(chan, box, None, stride, groups=cfg.xbit)
        wpl = _planes(qw, cfg.wbit)  # (wbit, K, C, kh, kw)
        sw = wpl.sum(dim=(2, 3, 4)).T  # (K, wbit)
        moved: dict[tuple[int, int], torch.Tensor] = {}
        pairs = _moved_pairs(cfg)
        for j in sorted({p[1] for p in pairs}):
            ii = [i for i, jj in pairs if jj == j]
            plane = ((qi >> j) & 1).to(x.dtype)
            t = F.conv2d(plane, wpl[ii].reshape(len(ii) * k, c, kh, kw), None, stride)
            for a, i in enumerate(ii):
                moved[(i, j)] = t[:, a * k:(a + 1) * k].permute(0, 2, 3, 1)
        mac, cycles = _mac(msb.permute(0, 2, 3, 1), sx.permute(0, 2, 3, 1), sw, n, cfg, moved)
        pow2x, pow2w = _pow2(cfg.xbit, x), _pow2(cfg.wbit, x)
        y = _dequantize(mac, sx.permute(0, 2, 3, 1) @ pow2x, px, pw, sw @ pow2w, n,
                        None if bias is None else bias.detach())
        y = y.permute(0, 3, 1, 2)
    if not _needs_grad(x, w, bias):
        return PacOut(y.contiguous(), cycles)
    ste = fq_conv2d(x, w, bias, stride, padding, cfg.xbit, cfg.wbit, per_sample)
    return PacOut(ste + (y - ste).detach(), cycles)


def pac_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, *,
               cfg: MacroConfig = DEFAULT_CONFIG, per_sample: bool = True) -> PacOut:
    """x (B, N) @ w (K, N).T through the PAC macro (static: dynamic is a conv feature)."""
    check_config(cfg)
    if cfg.dynamic is not None:
        cfg = MacroConfig(cfg.xbit, cfg.wbit, cfg.operand, cfg.approx, None)
    px, pw = qparams(x, cfg.xbit, per_sample), qparams(w, cfg.wbit)
    n = x.shape[1]
    with torch.no_grad():
        qx, qw = codes(x, px), codes(w, pw)
        shx, shw = max(0, cfg.xbit - cfg.operand), max(0, cfg.wbit - cfg.operand)
        msb = (torch.floor(qx / 2**shx) @ torch.floor(qw / 2**shw).T) * float(2 ** (shx + shw))
        sx = _planes(qx, cfg.xbit).sum(dim=2).T  # (B, xbit)
        sw = _planes(qw, cfg.wbit).sum(dim=2).T  # (K, wbit)
        mac, cycles = _mac(msb, sx, sw, n, cfg, None)
        pow2x, pow2w = _pow2(cfg.xbit, x), _pow2(cfg.wbit, x)
        y = _dequantize(mac.unsqueeze(1), (sx @ pow2x).unsqueeze(1), px, pw, sw @ pow2w, n,
                        None if bias is None else bias.detach()).squeeze(1)
    if not _needs_grad(x, w, bias):
        return PacOut(y, cycles)
    ste = fq_linear(x, w, bias, cfg.xbit, cfg.wbit, per_sample)
    return PacOut(ste + (y - ste).detach(), cycles)
