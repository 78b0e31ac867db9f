"""Per-tensor static quantization of every linear layer, with and without INSERTQUANT.

Modes (linears q, k, v, o, gate, up, down; the embedding, norms, attention products and the
head stay float):

- ``fp``: no quantization.
- ``naive``: activations quantized per tensor with static (scale, bias) from the calibration
  min/max, spikes included; weights per tensor with ``quantize(w, wbits)``.
- ``insertquant``: the same quantizer with the INSERTQUANT front end (docs/LLM.md):

  1. *Birth.* A spike is born at the MLP down-projection input (site ``ffn_act``) of the first
     layer where a token's max|x| / median token max exceeds ``eta`` (64) and the layer then
     leaves that token's residual with a ratio above ``eta`` as well (a massive activation, not
     just a large MLP value). At inference the spike tokens are found online with the first test,
     at the birth layer found in calibration.
  2. *Clamp.* Static scales are calibrated with the spike rows excluded, so at the birth site the
     quantizer clips the spike and it never enters the residual stream.
  3. *Templates.* For each layer after the birth up to the cancellation, the mean attention-norm
     and MLP-norm outputs of calibration spike tokens are substituted for the spike tokens' norm
     outputs. A spike token's linears in this span then see only constant template-derived inputs:
     their outputs are pre-computed (here: computed in float), never quantized.
  4. *Cancellation.* The cancelling layer is the first layer after which the spike tokens' mean
     residual no longer points along the spike (cosine < 0.5). At its output the mean residual the
     clamp removed, ``delta`` = mean over spike tokens of (x - clip(x)) @ W_down.T, is added back
     to the spike tokens, so the residual leaving the cancellation matches the FP model's.
  5. *Rotation* (pacim's addition, ``rotation="hadamard"``, the default): every quantized input
     is rotated online by a block-Hadamard matrix R and every weight offline by the same R
     (:mod:`pacim.llm.rotation`), so the per-tensor static scales of ``x R`` are not set by a few
     outlier channels. Spike detection runs on the unrotated input. ``rotation="none"`` is
     INSERTQUANT exactly as described in the paper.
- ``insertquant+pac``: ``insertquant`` with every linear's integer MAC computed by pacim's PAC
  macro (``pacim.functional.linear_quantized``, operand 4 by default).

Static (scale, bias) follow pacim's convention (bias = min, scale = max - min + 1e-7) with the bias
nudged by less than half a step so that 0.0 is exactly representable (see :func:`static_qparams`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pacim.errors import PacimError
from pacim.llm.model import SITE_LINEARS, SITES, Hooks, LlamaModel
from pacim.llm.rotation import DEFAULT_ROTATION, BlockHadamard, check_rotation
from pacim.quant import SCALE_EPS, QTensor, check_bits, quantize, quantize_with

MODES: tuple[str, ...] = ("fp", "naive", "insertquant", "insertquant+pac")
DEFAULT_ETA = 64.0
CANCEL_COS = 0.5  # the spike is cancelled once the spike tokens' residual turns away from it
Site = tuple[int, str]


def token_max(x: np.ndarray) -> np.ndarray:
    """max |x| over channels, per row."""
    return np.abs(x).max(axis=1)


def spike_ratio(m: np.ndarray) -> np.ndarray:
    """Per-row ratio of a token max to the median token max."""
    return m / max(float(np.median(m)), 1e-30)


def max_median_ratio(m: np.ndarray) -> float:
    """max over tokens / median over tokens of the per-token max |activation|."""
    return float(m.max() / max(float(np.median(m)), 1e-30))


def site_rotations(model: LlamaModel, rotation: str) -> dict[str, BlockHadamard]:
    """The input rotation of every site (empty for ``rotation="none"``)."""
    if check_rotation(rotation) == "none":
        return {}
    dims = {site: model.blocks[0].fused[site].shape[1] for site in SITES}
    rots = {site: BlockHadamard.for_dim(d) for site, d in dims.items()}
    return {site: r for site, r in rots.items() if not r.identity}


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


# ---------------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------------
@dataclass
class _WindowSpikes:
    """Spike tokens found in one calibration window."""

    birth: int
    rows: np.ndarray
    birth_x: np.ndarray  # their down-projection inputs at the birth layer
    norms: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # (layer, which)
    res: dict[int, np.ndarray] = field(default_factory=dict)  # layer input -> (rows, d_model)


class CalibrationRecorder(Hooks):
    """FP hooks that collect per-row min/max at every site and find spike tokens online."""

    def __init__(
        self, eta: float = DEFAULT_ETA, rotations: dict[str, BlockHadamard] | None = None
    ) -> None:
        self.eta = float(eta)
        self.rotations = rotations or {}
        self.row_min: dict[Site, list[np.ndarray]] = {}  # of the unrotated inputs
        self.row_max: dict[Site, list[np.ndarray]] = {}
        self.rot_min: dict[Site, list[np.ndarray]] = {}  # of the rotated inputs
        self.rot_max: dict[Site, list[np.ndarray]] = {}
        self.windows: list[_WindowSpikes | None] = []  # one entry per window
        self.offsets: list[int] = []
        self._rows_seen = 0

    def begin(self, tokens: np.ndarray) -> None:
        """Reset the per-window state."""
        self._cand: tuple[int, np.ndarray, np.ndarray] | None = None
        self._win: _WindowSpikes | None = None
        self.offsets.append(self._rows_seen)
        self._rows_seen += tokens.size

    def end(self) -> None:
        """Keep the window's spike record (None when it has no spike)."""
        self.windows.append(self._win)

    def residual(self, layer: int, h: np.ndarray) -> np.ndarray:
        """Confirm a candidate birth (massive residual); record spike tokens' residuals."""
        if self._cand is not None and self._win is None:
            bl, rows, x = self._cand
            keep = spike_ratio(token_max(h))[rows] > self.eta
            if keep.any():
                self._win = _WindowSpikes(birth=bl, rows=rows[keep], birth_x=x[keep])
            self._cand = None
        if self._win is not None:
            self._win.res[layer] = h[self._win.rows].astype(np.float64)
        return h

    def norm(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """Record spike tokens' norm outputs."""
        if self._win is not None:
            self._win.norms[(layer, which)] = x[self._win.rows].astype(np.float64)
        return x

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Row min/max of every site; spike candidates at down-projection inputs."""
        self.row_min.setdefault((layer, site), []).append(x.min(axis=1))
        self.row_max.setdefault((layer, site), []).append(x.max(axis=1))
        rot = self.rotations.get(site)
        if rot is not None:
            xr = rot.apply(x)
            self.rot_min.setdefault((layer, site), []).append(xr.min(axis=1))
            self.rot_max.setdefault((layer, site), []).append(xr.max(axis=1))
        if site == "ffn_act" and self._win is None:
            rows = np.flatnonzero(spike_ratio(token_max(x)) > self.eta)
            self._cand = (layer, rows, x[rows].astype(np.float64)) if rows.size else None
        return x


@dataclass(frozen=True)
class SpikePlan:
    """Where the spike is born and cancelled, and what INSERTQUANT inserts."""

    eta: float
    birth: int | None = None
    cancel: int | None = None
    templates: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False)
    delta: np.ndarray | None = field(default=None, repr=False)
    n_spike_tokens: int = 0
    spike_positions: tuple[int, ...] = ()
    peak: float = 0.0
    birth_max: float = 0.0

    @property
    def active(self) -> bool:
        """True when calibration found a spike."""
        return self.birth is not None

    def templated(self, layer: int) -> bool:
        """True when spike tokens use templates (and bypass the quantizers) at this layer."""
        return self.birth is not None and self.birth < layer <= self.cancel  # type: ignore

    def excluded(self, layer: int, site: str) -> bool:
        """True when spike rows are left out of this site's calibration range."""
        return self.templated(layer) or (layer == self.birth and site == "ffn_act")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "eta": self.eta,
            "birth_layer": self.birth,
            "birth_site": f"blk.{self.birth}.ffn_act" if self.active else None,
            "birth_max": self.birth_max,
            "cancel_layer": self.cancel,
            "template_layers": [self.birth + 1, self.cancel] if self.active else None,
            "spike_tokens_in_calibration": self.n_spike_tokens,
            "spike_positions": list(self.spike_positions),
            "spike_residual_peak": self.peak,
            "delta_max_abs": float(np.abs(self.delta).max()) if self.delta is not None else 0.0,
        }


@dataclass(frozen=True)
class Calibration:
    """Static activation ranges per site.

    ``ranges_all``: all rows, unrotated inputs (naive). ``ranges_clean``: spike rows excluded,
    inputs rotated by ``rotation`` (insertquant).
    """

    n_layers: int
    tokens: int
    ranges_all: dict[Site, tuple[float, float]] = field(repr=False)
    ranges_clean: dict[Site, tuple[float, float]] = field(repr=False)
    plan: SpikePlan
    rotation: str = DEFAULT_ROTATION


def calibrate(
    model: LlamaModel,
    windows: Iterable[np.ndarray],
    *,
    eta: float = DEFAULT_ETA,
    rotation: str = DEFAULT_ROTATION,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Run the FP model over calibration windows; build the ranges and the spike plan."""
    if not eta > 1:
        raise PacimError(f"eta must be > 1, got {eta}")
    rots = site_rotations(model, rotation)
    rec = CalibrationRecorder(eta, rots)
    n_tok = 0
    for w in windows:
        model.hidden(w, rec)
        n_tok += int(w.size)
        if progress is not None:
            progress(1)
    if not rec.row_min:
        raise PacimError("no calibration data")
    plan = _plan(model, rec, eta)
    spike_row = np.zeros(n_tok, dtype=bool)  # spike rows of windows agreeing on the birth
    for off, win in zip(rec.offsets, rec.windows, strict=True):
        if win is not None and win.birth == plan.birth:
            spike_row[off + win.rows] = True
    ranges_all: dict[Site, tuple[float, float]] = {}
    ranges_clean: dict[Site, tuple[float, float]] = {}
    for key, mins in rec.row_min.items():
        lo_rows = np.concatenate(mins)
        hi_rows = np.concatenate(rec.row_max[key])
        ranges_all[key] = (float(lo_rows.min()), float(hi_rows.max()))
        if key[1] in rots:
            lo_rows = np.concatenate(rec.rot_min[key])
            hi_rows = np.concatenate(rec.rot_max[key])
        if plan.excluded(*key) and not spike_row.all():
            lo_rows, hi_rows = lo_rows[~spike_row], hi_rows[~spike_row]
        ranges_clean[key] = (float(lo_rows.min()), float(hi_rows.max()))
    if plan.active:
        # what the clamp at birth removes from the spike tokens' down-projection output, in the
        # (rotated) domain the quantizer clips in: (x R - clip(x R)) (W R)^T
        use = [w for w in rec.windows if w is not None and w.birth == plan.birth]
        x = np.concatenate([w.birth_x for w in use], axis=0)
        w_down = model.blocks[plan.birth].fused["ffn_act"]
        rot = rots.get("ffn_act")
        if rot is not None:
            x, w_down = rot.apply(x).astype(np.float64), rot.apply(w_down)
        lo, hi = ranges_clean[(plan.birth, "ffn_act")]
        removed = (x - np.clip(x, lo, hi)).mean(axis=0)
        plan = replace(plan, delta=(removed @ w_down.astype(np.float64).T).astype(np.float32))
    return Calibration(
        model.config.n_layers, n_tok, ranges_all, ranges_clean, plan, rotation=rotation
    )


def _plan(model: LlamaModel, rec: CalibrationRecorder, eta: float) -> SpikePlan:
    """Birth (most frequent over windows), cancellation and templates from calibration."""
    spikes = [w for w in rec.windows if w is not None]
    if not spikes:
        return SpikePlan(eta=eta)
    births = [w.birth for w in spikes]
    birth = max(sorted(set(births)), key=births.count)
    use = [w for w in spikes if w.birth == birth]
    n_layers = model.config.n_layers
    mean_res = {
        la: np.concatenate([w.res[la] for w in use], axis=0).mean(axis=0)
        for la in range(birth + 1, n_layers + 1)
    }
    spike_dir = mean_res[birth + 1] / max(float(np.linalg.norm(mean_res[birth + 1])), 1e-30)
    cancel = n_layers - 1
    for la in range(birth + 1, n_layers):
        r = mean_res[la + 1]
        if float(r @ spike_dir) < CANCEL_COS * float(np.linalg.norm(r)):
            cancel = la
            break
    templates = {
        (la, which): np.concatenate([w.norms[(la, which)] for w in use]).mean(0).astype(np.float32)
        for la in range(birth + 1, cancel + 1)
        for which in ("attn", "ffn")
    }
    bx = np.concatenate([w.birth_x for w in use], axis=0)
    return SpikePlan(
        eta=eta,
        birth=birth,
        cancel=cancel,
        templates=templates,
        n_spike_tokens=int(sum(w.rows.size for w in use)),
        spike_positions=tuple(sorted({int(p) for w in use for p in w.rows})),
        peak=float(np.abs(mean_res[birth + 1]).max()),
        birth_max=float(np.abs(bx).max()),
    )


# ---------------------------------------------------------------------------------------------
# quantized inference
# ---------------------------------------------------------------------------------------------
class QuantizedWeights:
    """Per-tensor quantized weights of every linear: codes (for the macro) and fake-quant floats.

    With ``rotation="hadamard"`` each weight W is quantized as ``W R`` (R: its site's rotation).
    """

    def __init__(
        self, model: LlamaModel, wbits: int, rotation: str = DEFAULT_ROTATION
    ) -> None:
        self.wbits = check_bits(wbits, "wbits")
        self.rotation = rotation
        self.rotations = site_rotations(model, rotation)
        self.q: list[dict[str, list[QTensor]]] = []
        self.fused: list[dict[str, np.ndarray]] = []
        for b in model.blocks:
            qd: dict[str, list[QTensor]] = {}
            fd: dict[str, np.ndarray] = {}
            for site, names in SITE_LINEARS.items():
                rot = self.rotations.get(site)
                qs = [
                    quantize(b.linears[n] if rot is None else rot.apply(b.linears[n]),
                             self.wbits, name=n)
                    for n in names
                ]  # fmt: skip
                qd[site] = qs
                fd[site] = np.concatenate([q.dequantize().astype(np.float32) for q in qs], axis=0)
            self.q.append(qd)
            self.fused.append(fd)


class SiteStats:
    """Per-site pooled per-token max |activation| (for max/median ratios)."""

    def __init__(self) -> None:
        self.m: dict[Site, list[np.ndarray]] = {}

    def add(self, key: Site, x: np.ndarray) -> None:
        """Record the per-token max of x."""
        self.m.setdefault(key, []).append(token_max(x))

    def ratios(self) -> dict[Site, float]:
        """max/median ratio of every site."""
        return {k: max_median_ratio(np.concatenate(v)) for k, v in self.m.items()}


class RecordHooks(Hooks):
    """FP hooks that only record per-site token maxima (the "before" ratios)."""

    def __init__(self) -> None:
        self.stats = SiteStats()

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Record and pass through."""
        self.stats.add((layer, site), x)
        return x


class QuantHooks(Hooks):
    """naive / insertquant / insertquant+pac inference.

    ``capture(layer, site, x)`` receives, for every site, the float activation the quantizer
    represents (non-bypassed rows, rotated when the weights are, clipped to the static range).
    ``naive`` needs unrotated weights; the insertquant modes need weights rotated like the
    calibration.
    """

    def __init__(
        self,
        calib: Calibration,
        weights: QuantizedWeights,
        mode: str,
        *,
        bits: int = 8,
        operand: int = 4,
        capture: Callable[[int, str, np.ndarray], None] | None = None,
        macro_stats: bool = False,
    ) -> None:
        if mode not in MODES[1:]:
            raise PacimError(f"unknown quantized mode {mode!r}; one of {', '.join(MODES[1:])}")
        self.weights = weights
        self.mode = mode
        self.bits = check_bits(bits)
        self.operand = int(operand)
        self.iq = mode.startswith("insertquant")
        self.pac = mode == "insertquant+pac"
        want = calib.rotation if self.iq else "none"
        if weights.rotation != want:
            raise PacimError(
                f"{mode} needs weights with rotation {want!r}, got {weights.rotation!r}"
            )
        self.rotations = weights.rotations
        ranges = calib.ranges_clean if self.iq else calib.ranges_all
        self.qparams = {k: static_qparams(lo, hi, self.bits) for k, (lo, hi) in ranges.items()}
        self.plan = calib.plan
        self.stats = SiteStats()
        self.capture = capture
        self.spike_rows_seen = 0
        self.want_stats = macro_stats
        self.macro_stats: list[Any] = []  # MacroStats per PAC call, when macro_stats
        if self.pac:
            try:
                from pacim.functional import linear_quantized  # noqa: PLC0415
            except ImportError as e:
                raise PacimError(f"insertquant+pac needs pacim.functional: {e}") from e
            self._linear_quantized = linear_quantized

    def begin(self, tokens: np.ndarray) -> None:
        """New sequence: no spike tokens known yet."""
        self.rows: np.ndarray | None = None
        self._keep: np.ndarray | None = None
        self._qx: QTensor | None = None
        self._xfloat: np.ndarray | None = None

    def norm(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """Substitute templates for spike tokens between birth and cancellation."""
        if self.rows is not None and self.plan.templated(layer):
            x = x.copy()
            x[self.rows] = self.plan.templates[(layer, which)]
        return x

    def residual(self, layer: int, h: np.ndarray) -> np.ndarray:
        """Add back the clamped residual to spike tokens at the cancelling layer's output."""
        p = self.plan
        if self.rows is not None and p.delta is not None and layer == p.cancel + 1:  # type: ignore
            h = h.copy()
            h[self.rows] += p.delta
        return h

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Online spike detection at the birth site; static quantization of the other rows."""
        p = self.plan
        if self.iq and p.active and layer == p.birth and site == "ffn_act":
            rows = np.flatnonzero(spike_ratio(token_max(x)) > p.eta)
            if rows.size:
                self.rows = rows
                self._keep = np.ones(x.shape[0], dtype=bool)
                self._keep[rows] = False
                self.spike_rows_seen += int(rows.size)
        bypass = self.rows is not None and p.templated(layer)
        self._xfloat = x if bypass else None  # spike rows: float, unrotated
        rot = self.rotations.get(site)
        if rot is not None:
            x = rot.apply(x)
        xq = x[self._keep] if bypass else x
        scale, bias = self.qparams[(layer, site)]
        xc = np.clip(xq, bias, bias + scale)
        self.stats.add((layer, site), xc)
        if self.capture is not None:
            self.capture(layer, site, xc)
        self._qx = quantize_with(xq, self.bits, scale, bias)
        return xq if self.pac else self._qx.dequantize().astype(np.float32)

    def matmul(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Fake-quantized float GEMM or the PAC macro; bypassed spike rows in float."""
        if self.pac:
            qx = self._qx
            assert qx is not None
            ys = []
            for qw in self.weights.q[layer][site]:
                op = min(self.operand, max(qx.bits, qw.bits))
                r = self._linear_quantized(qx, qw, operand=op, return_stats=self.want_stats)
                if self.want_stats:
                    r, st = r
                    self.macro_stats.append(st)
                ys.append(r)
            y = np.concatenate(ys, axis=1).astype(np.float32)
        else:
            y = x @ self.weights.fused[layer][site].T
        xf = self._xfloat
        if xf is None:
            return y
        full = np.empty((xf.shape[0], y.shape[1]), dtype=np.float32)
        full[self._keep] = y
        full[self.rows] = xf[self.rows] @ self.model.blocks[layer].fused[site].T
        return full


def site_name(layer: int, site: str) -> str:
    """Display name of a quantization site, e.g. ``blk.11.ffn_act``."""
    return f"blk.{layer}.{site}"


def all_sites(n_layers: int) -> list[Site]:
    """Every (layer, site) in forward order."""
    return [(la, s) for la in range(n_layers) for s in SITES]
