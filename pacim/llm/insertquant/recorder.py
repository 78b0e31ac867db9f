"""One FP pass over the calibration sequences that records what every method calibrates from.

Per site input and per layer's K and V (after RoPE, at the BMM inputs): per-row min and max in
both domains (as is, and rotated as the setting rotates), and a row subsample in the setting's
domain for the clipping search. Per sequence: the ``ffn_act`` and residual spike ratios, and for
the sink tokens their detection state, keys, values, residuals and norm outputs.
"""

from __future__ import annotations

import numpy as np

from pacim.llm.insertquant.detect import detect_sinks, spike_ratio, window_birth
from pacim.llm.insertquant.templates import SinkRecord
from pacim.llm.model import Hooks, LlamaModel
from pacim.llm.sites import head_rotation, site_rotations, token_max

Key = tuple[int, str]  # (layer, site) or (layer, "k" / "v")
SAMPLE_EVERY = 4  # every 4th row of a sequence goes into the clipping-search sample ...
SAMPLE_TOP = 8  # ... and the 8 rows with the largest |x|, so a clip is never free on the sample


class CalibrationRecorder(Hooks):
    """FP hooks recording ranges, samples and sinks; rows before ``skip`` are ignored."""

    def __init__(
        self,
        model: LlamaModel,
        rotation: str,
        alpha0: float,
        alpha1: float,
        *,
        skip: int = 0,
        sample_every: int = SAMPLE_EVERY,
        sinks: bool = True,
    ) -> None:
        self.model = model
        self.rots = site_rotations(model, rotation)
        self.hrot = head_rotation(model, rotation)
        self.alpha0, self.alpha1 = float(alpha0), float(alpha1)
        self.skip, self.every, self.want_sinks = int(skip), int(sample_every), sinks
        self.lo_u: dict[Key, list[np.ndarray]] = {}
        self.hi_u: dict[Key, list[np.ndarray]] = {}
        self.lo_r: dict[Key, list[np.ndarray]] = {}
        self.hi_r: dict[Key, list[np.ndarray]] = {}
        self.sample: dict[Key, list[np.ndarray]] = {}
        self.sample_ids: dict[Key, list[np.ndarray]] = {}  # global row ids of the sample
        self.records: list[SinkRecord | None] = []
        self.act_ratios: list[list[np.ndarray]] = []
        self.sink_rows: list[np.ndarray] = []  # global row ids of each sequence's sinks
        self.rows = 0  # rows recorded so far (after skip)

    # ---- per sequence ---------------------------------------------------------------------
    def begin(self, tokens: np.ndarray) -> None:
        """Reset the per-sequence buffers."""
        self.t = int(tokens.size)
        self._act: list[np.ndarray] = []
        self._actx: list[np.ndarray] = []
        self._res: list[np.ndarray] = []
        self._norms: dict[tuple[int, str], np.ndarray] = {}
        self._k: list[np.ndarray] = []
        self._v: list[np.ndarray] = []

    def end(self) -> None:
        """Find the sequence's birth and sinks; keep the sinks' states; free the buffers."""
        off = self.rows - self.skip  # global id of local row r is off + r (r >= skip)
        self.act_ratios.append(self._act)
        res_ratio = [spike_ratio(h) for h in self._res]
        birth = window_birth(self._act, res_ratio, self.alpha0) if self.want_sinks else None
        rec = None
        if birth is not None:
            rows = detect_sinks(self._act, birth, self.alpha0, self.alpha1)
            rows = rows[rows >= self.skip]
            n_layers = len(self._k)
            rec = SinkRecord(birth, rows, self._actx[birth][rows].astype(np.float32))
            for la in range(birth + 1, n_layers):
                rec.k[la] = self.model.rope_at(self._k[la][rows], rows, layer=la, inverse=True)
                rec.v[la] = self._v[la][rows].copy()
                rec.norms[(la, "attn")] = self._norms[(la, "attn")][rows].copy()
                rec.norms[(la, "ffn")] = self._norms[(la, "ffn")][rows].copy()
            for la in range(birth + 1, n_layers + 1):
                rec.res[la] = self._res[la][rows].astype(np.float64)
            self.sink_rows.append(off + rows)
        else:  # position 0 is always a sink (unless it is a skipped prefix row)
            self.sink_rows.append(np.asarray([off] if self.skip == 0 else [], dtype=np.int64))
        self.records.append(rec)
        self.rows += self.t - self.skip
        del self._actx, self._res, self._norms, self._k, self._v

    # ---- hooks ----------------------------------------------------------------------------
    def _record(self, key: Key, x: np.ndarray, xr: np.ndarray) -> None:
        s = self.skip
        self.lo_u.setdefault(key, []).append(x[s:].min(axis=1))
        self.hi_u.setdefault(key, []).append(x[s:].max(axis=1))
        self.lo_r.setdefault(key, []).append(xr[s:].min(axis=1))
        self.hi_r.setdefault(key, []).append(xr[s:].max(axis=1))
        tm = np.abs(xr[s:]).max(axis=1)
        top = np.argpartition(tm, -SAMPLE_TOP)[-SAMPLE_TOP:] if tm.size > SAMPLE_TOP else []
        idx = np.union1d(np.arange(0, tm.size, self.every), top).astype(np.int64)
        self.sample.setdefault(key, []).append(np.ascontiguousarray(xr[s:][idx]))
        self.sample_ids.setdefault(key, []).append(self.rows + idx)

    def residual(self, layer: int, h: np.ndarray) -> np.ndarray:
        """Keep the residual entering each layer."""
        self._res.append(h)
        return h

    def norm(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """Keep the norm outputs (insertquant-norm templates)."""
        self._norms[(layer, which)] = x
        return x

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Ranges and samples of a site input; the ``ffn_act`` spike ratio."""
        rot = self.rots.get(site)
        self._record((layer, site), x, x if rot is None else rot.apply(x))
        if site == "ffn_act":
            self._act.append(token_max(x) / max(float(np.median(token_max(x))), 1e-30))
            self._actx.append(x)
        return x

    def attention_inputs(
        self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ranges and samples of K and V (after RoPE), as the KV cache holds them."""
        self._k.append(k)
        self._v.append(v)
        t = k.shape[0]
        for name, a in (("k", k), ("v", v)):
            ar = a if self.hrot is None else self.hrot.apply(a)
            self._record((layer, name), a.reshape(t, -1), ar.reshape(t, -1))
        return q, k, v

    # ---- results --------------------------------------------------------------------------
    def stacked(self, which: str) -> dict[Key, np.ndarray]:
        """Per-row min or max over all sequences: which in lo_u, hi_u, lo_r, hi_r."""
        return {k: np.concatenate(v) for k, v in getattr(self, which).items()}
