"""Attention's two BMMs on the PAC macro: QK^T against the K codes, PV against the V codes.

The arch's ``attention.mapping: cim`` writes K^T and V into macro banks as they are produced
(pacim.sched.attention counts that); this module computes what those banks return. Per KV head:

- **QK^T.** The KV cache's K codes are the macro's weight operand (one row per cached position);
  the queries stream in as inputs, quantized per tensor to ``bits`` (8: the macro's input width)
  over the layer's Q, with 0.0 on a code. The periphery applies the scale, the causal mask and the
  softmax in float.
- **PV.** The probabilities, in [0, 1] by construction, are quantized statically with step
  1 / (2^bits - 1) (no calibration needed) and stream against V^T's codes.
- **Float rows.** Positions whose K/V bypass the KV quantizer (PrefixQuant's prefix, INSERTQUANT's
  sinks and templates) are not codes: the near-memory digital unit takes them in float, as it
  takes PrefixQuant's prefix.

With a head rotation (QuaRot), the codes are of the rotated K and V; q.k = (qH).(kH) and
P (V H) H = P V, so the queries are rotated in and the output rotated back.

:class:`AttentionError` keeps each layer's SQNR of the macro (PAC) against exact integer
arithmetic on the same codes, for the scores and for the PV output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pacim.llm.model import causal_softmax
from pacim.llm.quantizers import static_codes, static_qparams
from pacim.quant import QTensor


@dataclass
class AttentionError:
    """Signal and error power of the PAC BMMs against exact integer arithmetic, per layer."""

    sig: dict[tuple[int, str], float] = field(default_factory=dict)
    err: dict[tuple[int, str], float] = field(default_factory=dict)

    def add(self, layer: int, bmm: str, exact: np.ndarray, got: np.ndarray) -> None:
        """Accumulate one product's powers (float64)."""
        e = np.asarray(exact, dtype=np.float64)
        key = (layer, bmm)
        self.sig[key] = self.sig.get(key, 0.0) + float(np.square(e).sum())
        self.err[key] = self.err.get(key, 0.0) + float(np.square(got - e).sum())

    def sqnr_db(self, layer: int, bmm: str) -> float:
        """10 log10(signal / error); inf when the macro was exact."""
        s, n = self.sig.get((layer, bmm), 0.0), self.err.get((layer, bmm), 0.0)
        return math.inf if n == 0.0 else 10.0 * math.log10(max(s, 1e-300) / n)

    def table(self) -> list[dict[str, Any]]:
        """Per layer: qk_sqnr_db and pv_sqnr_db (JSON: None for exact)."""
        layers = sorted({la for la, _ in self.sig})

        def fin(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return [{"layer": la, "qk_sqnr_db": fin(self.sqnr_db(la, "qk")),
                 "pv_sqnr_db": fin(self.sqnr_db(la, "pv"))} for la in layers]  # fmt: skip


@dataclass(frozen=True)
class KVCodes:
    """One layer's KV cache as the banks hold it: codes of the quantized rows, float rows."""

    k: QTensor  # (T_q, Hkv * D) codes of the rows in ``coded``
    v: QTensor
    coded: np.ndarray  # (T,) bool: this position's K/V are codes in the banks
    code_row: np.ndarray  # (T,) int: a coded position's row of ``k`` / ``v``
    k_float: np.ndarray  # (T, Hkv, D) the BMM's K (after templates), rotated when hrot is set
    v_float: np.ndarray


def _codes(x: np.ndarray, bits: int) -> QTensor:
    """Per-tensor quantization of x (rows, n) over its own range, 0.0 on a code."""
    lo, hi = float(min(x.min(), 0.0)), float(max(x.max(), 0.0))
    scale, bias = static_qparams(lo, hi, bits)
    return static_codes(x, bits, scale, bias)


def _head(qt: QTensor, rows: np.ndarray, h: int, hkv: int, transpose: bool = False) -> QTensor:
    """KV head h's codes (rows, D) of a (rows, Hkv * D) QTensor, or their transpose."""
    q = qt.q.reshape(qt.q.shape[0], hkv, -1)[rows, h, :]
    return QTensor(q=np.ascontiguousarray(q.T if transpose else q), scale=qt.scale,
                   bias=qt.bias, bits=qt.bits)  # fmt: skip


def pac_attention(
    layer: int, q: np.ndarray, kv: KVCodes, *, bits: int, operand: int, window: int,
    hrot: Any, linear_quantized: Any, errors: AttentionError | None = None,
) -> np.ndarray:  # fmt: skip
    """Causal grouped-query attention (T, H, D) -> (T, H * D) with both BMMs on the macro."""
    t, h, d = q.shape
    hkv = kv.k_float.shape[1]
    g = h // hkv
    if hrot is not None:
        q = hrot.apply(q)
    qc = _codes(q.reshape(t * h, d), bits)
    qdeq = qc.dequantize().reshape(t, hkv, g, d).transpose(1, 2, 0, 3).reshape(hkv, g * t, d)
    qrows = qc.q.reshape(t, hkv, g, d).transpose(1, 2, 0, 3).reshape(hkv, g * t, d)
    coded = kv.coded
    cidx = np.flatnonzero(coded)  # rows of the code tensors, in position order
    fidx = np.flatnonzero(~coded)
    crow = kv.code_row[cidx]
    levels = (1 << bits) - 1
    out = np.empty((hkv, g * t, d), dtype=np.float32)
    for hh in range(hkv):
        qin = QTensor(q=np.ascontiguousarray(qrows[hh]), scale=qc.scale, bias=qc.bias, bits=bits)
        s = np.empty((g * t, t), dtype=np.float32)
        if cidx.size:
            kq = _head(kv.k, crow, hh, hkv)
            op = min(operand, max(bits, kq.bits))
            s_mac = np.asarray(linear_quantized(qin, kq, operand=op), dtype=np.float32)
            if errors is not None:
                errors.add(layer, "qk", qdeq[hh].astype(np.float64) @ kq.dequantize().T, s_mac)
            s[:, cidx] = s_mac
        if fidx.size:
            s[:, fidx] = qdeq[hh] @ kv.k_float[fidx, hh, :].T  # the digital unit, float
        p = causal_softmax(s.reshape(g, t, t), d, window).reshape(g * t, t)
        pq = np.rint(p.astype(np.float64) * levels).astype(qc.q.dtype)  # P in [0, 1]: static
        o = np.zeros((g * t, d), dtype=np.float32)
        if cidx.size:
            vt = _head(kv.v, crow, hh, hkv, transpose=True)  # (D, T_q): V^T in the banks
            pin = QTensor(q=np.ascontiguousarray(pq[:, cidx]), scale=1.0, bias=0.0, bits=bits)
            op = min(operand, max(bits, vt.bits))
            o_mac = np.asarray(linear_quantized(pin, vt, operand=op), dtype=np.float32)
            if errors is not None:
                errors.add(layer, "pv", pin.dequantize().astype(np.float64)
                           @ vt.dequantize().T, o_mac)  # fmt: skip
            o += o_mac
        if fidx.size:
            o += (pq[:, fidx] / np.float32(levels)) @ kv.v_float[fidx, hh, :]
        out[hh] = o
    o4 = out.reshape(hkv, g, t, d).transpose(2, 0, 1, 3)  # (T, Hkv, g, D)
    if hrot is not None:
        o4 = hrot.apply(o4)  # H is symmetric and orthonormal: (P V H) H = P V
    return np.ascontiguousarray(o4).reshape(t, h * d)


def attention_summary(errors: AttentionError, bits: int) -> dict[str, Any]:
    """The JSON entry of a mode run with attention on PAC: bits, per-layer and worst SQNR."""
    rows = errors.table()

    def worst(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return min(vals) if vals else None

    return {"bits": bits, "layers": rows, "qk_sqnr_db_min": worst("qk_sqnr_db"),
            "pv_sqnr_db_min": worst("pv_sqnr_db")}  # fmt: skip
