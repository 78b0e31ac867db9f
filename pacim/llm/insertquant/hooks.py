"""Quantized inference of every mode: static activations, quantized weights, a real KV cache.

At every site input: INSERTQUANT's online detection and clamp, the method's rotation, static
per-tensor quantization, then the fake-quantized GEMM or the PAC macro on the codes. At the
attention BMM inputs (:meth:`QuantHooks.attention_inputs`): K and V are quantized as the KV cache
holds them (static per tensor or group-wise dynamic; rotated per head when the method rotates),
then INSERTQUANT inserts its sink templates and zeroes the sinks' queries. The quantized Q/K/V
reach ``capture_bmm(layer, q, k_codes, v_codes)``: the hook for attention on the CiM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pacim.errors import PacimError
from pacim.llm.attention_pac import AttentionError, KVCodes, pac_attention
from pacim.llm.insertquant.calibrate import Calibration
from pacim.llm.insertquant.detect import spike_ratio
from pacim.llm.insertquant.methods import CLAMP, DETECT, INSERT, RESTORE, parse_mode
from pacim.llm.model import Hooks
from pacim.llm.quantizers import (
    QuantizedWeights,
    fake_quant,
    group_codes,
    macro_linear,
    static_codes,
    static_qparams,
)
from pacim.llm.sites import SiteStats, head_rotation, site_rotations
from pacim.quant import QTensor, check_bits


class QuantHooks(Hooks):
    """Every quantized mode (and ``insertquant-fp``) as hooks of the numpy model.

    ``capture(layer, site, x)`` receives the float activation each site's quantizer represents
    (non-bypassed rows, rotated when the weights are, clipped to the static range).
    ``attention_pac``: QK^T and PV on the macro too, from the KV cache's codes, with queries and
    probabilities at ``attention_bits`` (:mod:`pacim.llm.attention_pac`; ``+pac`` modes, static KV).
    """

    def __init__(
        self,
        calib: Calibration,
        weights: QuantizedWeights | None,
        mode: str,
        *,
        bits: int | None = None,
        operand: int = 4,
        capture: Callable[[int, str, np.ndarray], None] | None = None,
        capture_bmm: Callable[[int, np.ndarray, Any, Any], None] | None = None,
        macro_stats: bool = False,
        stop_after: int | None = None,
        attention_pac: bool = False,
        attention_bits: int = 8,
    ) -> None:
        m = parse_mode(mode)
        if m.base == "fp":
            raise PacimError("fp is the float model, not a quantized mode")
        s = calib.setting
        if attention_pac and not (m.pac and s.kvbits is not None and s.kv == "static"):
            raise PacimError(f"attention on PAC needs a +pac mode and a static KV cache (a "
                             f"setting with sKV), got {mode} with KV {s.label}")  # fmt: skip
        self.attention_pac, self.attention_bits = attention_pac, check_bits(attention_bits)
        self.attention_errors = AttentionError()
        self._kv_codes: KVCodes | None = None
        self.method, self.setting = m, s
        self.bits = check_bits(bits if bits is not None else s.abits)
        self.kvbits = s.kvbits
        self.operand = int(operand)
        self.rotation = calib.rotation if m.rotated else "none"
        if m.quantized and (weights is None or weights.rotation != self.rotation):
            got = None if weights is None else weights.rotation
            raise PacimError(f"{mode} needs weights with rotation {self.rotation!r}, got {got!r}")
        self.weights = weights
        key = "sem" if not m.quantized else m.ranges
        if key not in calib.ranges:
            raise PacimError(f"{mode}: calibration has no {key!r} ranges (calibrate for it)")
        self.qparams = {
            k: static_qparams(lo, hi, self.kvbits if k[1] in ("k", "v") else self.bits)
            for k, (lo, hi) in calib.ranges[key].items()
            if k[1] not in ("k", "v") or self.kvbits is not None
        }
        self.phases = calib.phases if m.base.startswith("insertquant") else None
        self.templates, self.plan = calib.templates, calib.norm_plan
        self.n_prefix = len(calib.prefix) if m.base == "prefixquant" else 0
        self.norm_mode = m.base == "insertquant-norm"
        self.level = m.level
        self.stats = SiteStats()
        self.capture, self.capture_bmm = capture, capture_bmm
        self.spike_rows_seen = 0
        self.detected: list[set] = []  # ratio-detected sinks per sequence (R_correct)
        self.want_stats = macro_stats
        self.macro_stats: list[Any] = []
        self.stop_after = stop_after
        self._rots: dict | None = None
        if m.pac:
            from pacim.functional import linear_quantized  # noqa: PLC0415

            self._linear_quantized = linear_quantized

    # ---- per sequence ---------------------------------------------------------------------
    def begin(self, tokens: np.ndarray) -> None:
        """New sequence: no sinks known yet."""
        if self._rots is None:
            self._rots = self.weights.rotations if self.weights is not None else \
                site_rotations(self.model, "none")  # fmt: skip
            self._hrot = head_rotation(self.model, self.rotation)
        self.t = int(tokens.size)
        self.sinks: np.ndarray | None = None
        self._found: set = set()
        self._birth_x: np.ndarray | None = None
        self._tidx: np.ndarray | None = None
        self._bypass: np.ndarray | None = None
        self._qx: QTensor | None = None

    def end(self) -> None:
        """Keep the sequence's detected sinks."""
        self.detected.append(self._found)
        if self.sinks is not None:
            self.spike_rows_seen += int(self.sinks.size)

    def _set_sinks(self, rows: set) -> None:
        self.sinks = np.asarray(sorted(rows), dtype=np.int64)
        if self.templates is not None and self._birth_x is not None:
            self._tidx = self.templates.match(self._birth_x[self.sinks])

    # ---- residual stream and norms ----------------------------------------------------------
    def residual(self, layer: int, h: np.ndarray) -> np.ndarray:
        """Residual restoration (insertquant) or the clamp's delta (insertquant-norm)."""
        p = self.phases
        if self.stop_after is not None and layer > self.stop_after:
            raise StopForward
        if p is None or self.sinks is None or layer != p.cancel + 1:
            return h
        if self.norm_mode and self.plan is not None:
            h = h.copy()
            h[self.sinks] += self.plan.delta
        elif self.level >= RESTORE and self.templates is not None:
            h = h.copy()
            h[self.sinks] = self.templates.residual[self._tidx]
        return h

    def norm(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """insertquant-norm: the sinks' norm outputs are templates in the persistence phase."""
        if self.norm_mode and self.sinks is not None and self.phases.persistent(layer):
            x = x.copy()
            x[self.sinks] = self.plan.norms[(layer, which)]
        return x

    # ---- linear sites -----------------------------------------------------------------------
    def _detect(self, layer: int, x: np.ndarray) -> None:
        p = self.phases
        if layer == p.birth:
            self._birth_x = x
        r = spike_ratio(x)
        found = set(np.flatnonzero(r > (p.alpha0 if layer == p.birth else p.alpha1)).tolist())
        self._found |= found
        if layer == p.birth:
            self._set_sinks({0} | found)
        elif found - set(self.sinks.tolist()):
            self._set_sinks(set(self.sinks.tolist()) | found)

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Detection, clamp, rotation and static quantization of a site input."""
        p = self.phases
        if p is not None and site == "ffn_act" and layer in (p.birth, p.birth + 1):
            if self.level >= DETECT or self.norm_mode:
                self._detect(layer, x)
        if self.sinks is not None and self.level >= CLAMP and p.clamped(layer, site):
            x = x.copy()
            x[self.sinks] = 0.0
        bypass = None
        if self.n_prefix:
            bypass = np.zeros(x.shape[0], dtype=bool)
            bypass[: self.n_prefix] = True
        elif self.norm_mode and self.sinks is not None and p.persistent(layer):
            bypass = np.zeros(x.shape[0], dtype=bool)
            bypass[self.sinks] = True
        self._bypass, self._xfloat = bypass, x
        if not self.method.quantized:
            return x
        rot = self._rots.get(site)
        xr = x if rot is None else rot.apply(x)
        xq = xr if bypass is None else xr[~bypass]
        scale, bias = self.qparams[(layer, site)]
        xc = np.clip(xq, bias, bias + scale)
        self.stats.add((layer, site), xc)
        if self.capture is not None:
            self.capture(layer, site, xc)
        if self.method.pac:
            self._qx = static_codes(xq, self.bits, scale, bias)
            return xq
        return fake_quant(xq, self.bits, scale, bias)

    def matmul(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Fake-quantized GEMM or the PAC macro; bypassed rows (prefix, templates) in float."""
        float_w = self.model.blocks[layer].fused[site]
        if not self.method.quantized:
            return x @ float_w.T
        if self.method.pac:
            ys = []
            for cw in self.weights.q[layer][site]:
                y, st = macro_linear(self._linear_quantized, self._qx, cw, self.operand,
                                     self.want_stats)  # fmt: skip
                if st is not None:
                    self.macro_stats.append(st)
                ys.append(y)
            y = np.concatenate(ys, axis=1).astype(np.float32)
        else:
            y = x @ self.weights.fused[layer][site].T
        bp = self._bypass
        if bp is None:
            return y
        full = np.empty((bp.size, y.shape[1]), dtype=np.float32)
        full[~bp] = y
        full[bp] = self._xfloat[bp] @ float_w.T
        return full

    # ---- the attention BMM inputs -------------------------------------------------------------
    def _kv(self, layer: int, name: str, a: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, Any]:
        hr = self._hrot
        ar = a[keep] if hr is None else hr.apply(a[keep])
        if self.setting.kv == "group":
            codes: Any = group_codes(ar, self.kvbits, self.setting.kv_group)
            deq = codes.dequantize()
        else:
            scale, bias = self.qparams[(layer, name)]
            flat = ar.reshape(ar.shape[0], -1)
            want = self.capture_bmm is not None or self.attention_pac
            codes = static_codes(flat, self.kvbits, scale, bias) if want else None
            deq = fake_quant(flat, self.kvbits, scale, bias).reshape(ar.shape)
        out = a.copy()
        out[keep] = deq if hr is None else hr.apply(deq)  # H is symmetric and orthonormal
        return out, codes

    def attention_inputs(
        self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """KV-cache quantization, then INSERTQUANT's templates and the sinks' zeroed queries."""
        p = self.phases
        sink_layer = p is not None and self.sinks is not None and p.persistent(layer)
        if self.method.quantized and self.kvbits is not None:
            keep = np.ones(k.shape[0], dtype=bool)
            keep[: self.n_prefix] = False  # PrefixQuant: the prefix's KV stays float
            if self.norm_mode and sink_layer:
                keep[self.sinks] = False  # pre-computed from templates, float
            if self.method.insertquant and self.level >= INSERT and self.method.sink_kv_float:
                keep[0] = False  # position 0 is always a sink: its K/V stay float ...
                if self.sinks is not None:
                    keep[self.sinks] = False  # ... and every detected sink's (methods.py)
            k, kc = self._kv(layer, "k", k, keep)
            v, vc = self._kv(layer, "v", v, keep)
            code_row = np.cumsum(keep) - 1  # position -> its row of kc / vc
            if self.capture_bmm is not None:
                self.capture_bmm(layer, q, kc, vc)
        if sink_layer and not self.norm_mode:
            if self.level >= CLAMP:
                q = q.copy()
                q[self.sinks] = 0.0  # the sinks' W_Q input is zeroed: no bias, so q = 0
            if self.level >= INSERT and self.templates is not None:
                tk, tv = self.templates.kv(layer, self._tidx)
                k, v = k.copy(), v.copy()
                k[self.sinks] = self.model.rope_at(tk, self.sinks, layer=layer)
                v[self.sinks] = tv
                if self.attention_pac:
                    keep[self.sinks] = False  # templates: float rows, not codes
        if self.attention_pac:
            hr = self._hrot
            self._kv_codes = KVCodes(kc, vc, keep, code_row, k if hr is None else hr.apply(k),
                                     v if hr is None else hr.apply(v))  # fmt: skip
        return q, k, v

    def attention(
        self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int
    ) -> np.ndarray:
        """Float attention, or with ``attention_pac`` both BMMs on the macro from the KV codes."""
        if not self.attention_pac:
            return super().attention(layer, q, k, v, window)
        assert self._kv_codes is not None
        kv, self._kv_codes = self._kv_codes, None
        return pac_attention(layer, q, kv, bits=self.attention_bits, operand=self.operand,
                             window=window, hrot=self._hrot,
                             linear_quantized=self._linear_quantized,
                             errors=self.attention_errors)  # fmt: skip


class StopForward(Exception):  # noqa: N818  (control flow, not an error)
    """Raised by QuantHooks(stop_after=L) to end a forward pass early (detection checks)."""
