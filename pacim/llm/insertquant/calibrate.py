"""Calibration of every method from FP runs, spike-aware clipping, and its on-disk cache.

Range sets (static (lo, hi) per site input and per layer's K and V):

- ``all``: min/max over every token, as is (``rtn``). ``all-rot``: the same, rotated
  (``quarot-rtn``).
- ``sem``: rotated as the setting says, sink tokens left out where INSERTQUANT clamps or replaces
  them (the ablation levels and ``insertquant-norm``).
- ``iq``: spike-aware calibration (``insertquant``): each range is scaled by the clipping factor
  with the least quantization MSE on *semantic* tokens; then the sinks are re-detected in the
  quantized model and, if they agree with the FP sinks on less than 80% (R_correct < 0.8), the
  factors of every site up to the detection layers are rejected (set back to 1).
- ``prefix``: PrefixQuant: an FP pass over the calibration sequences with the prefix in front,
  ranges over the non-prefix tokens, clipped by the same MSE search (its grid search).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pacim.llm.insertquant.detect import SinkPhases, find_cancel, ratio_sinks
from pacim.llm.insertquant.recorder import CalibrationRecorder, Key
from pacim.llm.insertquant.templates import (
    NormPlan,
    SinkTemplates,
    build_norm_plan,
    build_templates,
)
from pacim.llm.quantizers import fake_quant, static_qparams
from pacim.llm.settings import QuantSetting

CLIP_FACTORS = tuple(round(1.0 - 0.05 * i, 2) for i in range(15))  # 1.0 .. 0.3
R_CORRECT_MIN = 0.8
CALIB_VERSION = 1
Ranges = dict[Key, tuple[float, float]]


@dataclass
class Calibration:
    """Static ranges of every method, sink phases and templates, prefix, and a summary."""

    setting: QuantSetting
    n_layers: int
    tokens: int
    ranges: dict[str, Ranges] = field(repr=False)
    phases: SinkPhases | None = None
    templates: SinkTemplates | None = field(default=None, repr=False)
    norm_plan: NormPlan | None = field(default=None, repr=False)
    prefix: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rotation(self) -> str:
        """The setting's rotation (what ``all-rot``, ``sem``, ``iq``, ``prefix`` are in)."""
        return self.setting.rotation

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description of the spike plan."""
        p = self.phases
        counts = self.info.get("sink_counts", {})
        info = {k: v for k, v in self.info.items() if k != "sink_rows"}
        return {
            **info,
            "eta": p.alpha0 if p else None,
            "spike_positions": self.info.get("sink_positions", []),
            "spike_tokens_in_calibration": sum(int(k) * v for k, v in counts.items()),
            "birth_layer": p.birth if p else None,
            "birth_site": f"blk.{p.birth}.ffn_act" if p else None,
            "cancel_layer": p.cancel if p else None,
            "template_layers": [p.birth + 1, p.cancel] if p else None,
            "templates": self.templates.count if self.templates is not None else 0,
            "alpha": [p.alpha0, p.alpha1] if p else None,
            "prefix": list(self.prefix),
        }


def _bits_of(key: Key, s: QuantSetting) -> int | None:
    return s.kvbits if key[1] in ("k", "v") else s.abits


def mse_clip(sample: np.ndarray, lo: float, hi: float, bits: int) -> tuple[float, float, float]:
    """(lo', hi', factor): the range scaled by the factor with the least quantization MSE."""
    best = (np.inf, lo, hi, 1.0)
    x = sample.astype(np.float32, copy=False)
    for f in CLIP_FACTORS:
        scale, bias = static_qparams(f * lo, f * hi, bits)
        err = float(np.mean(np.square(fake_quant(x, bits, scale, bias) - x)))
        if err < best[0]:
            best = (err, f * lo, f * hi, f)
    return best[1], best[2], best[3]


def _ranges(
    rec: CalibrationRecorder, rotated: bool, drop: np.ndarray | None, excluded: Any
) -> Ranges:
    lo_all = rec.stacked("lo_r" if rotated else "lo_u")
    hi_all = rec.stacked("hi_r" if rotated else "hi_u")
    out: Ranges = {}
    for key, lo in lo_all.items():
        hi = hi_all[key]
        if drop is not None and excluded(*key) and not drop.all():
            lo, hi = lo[~drop], hi[~drop]
        out[key] = (float(lo.min()), float(hi.max()))
    return out


def _searched(
    rec: CalibrationRecorder, base: Ranges, s: QuantSetting, drop: np.ndarray | None,
    excluded: Any,
) -> tuple[Ranges, dict[Key, float]]:  # fmt: skip
    out: Ranges = {}
    factors: dict[Key, float] = {}
    for key, (lo, hi) in base.items():
        bits = _bits_of(key, s)
        if bits is None:
            out[key] = (lo, hi)
            continue
        x = np.concatenate(rec.sample[key])
        if drop is not None and excluded(*key):
            x = x[~drop[np.concatenate(rec.sample_ids[key])]]
        lo2, hi2, f = mse_clip(x, lo, hi, bits)
        out[key], factors[key] = (lo2, hi2), f
    return out, factors


def from_recorder(
    rec: CalibrationRecorder, s: QuantSetting, n_layers: int, model: Any
) -> Calibration:
    """The FP part: phases, templates, norm plan, ranges ``all``, ``all-rot``, ``sem``, ``iq``."""
    spikes = [r for r in rec.records if r is not None]
    phases = templates = plan = None
    drop = None
    info: dict[str, Any] = {"sequences": len(rec.records), "sequences_with_spike": len(spikes)}
    if spikes:
        births = [r.birth for r in spikes]
        birth = max(sorted(set(births)), key=births.count)
        use = [r for r in spikes if r.birth == birth]
        mean_res = {la: np.concatenate([r.res[la] for r in use]).mean(0)
                    for la in range(birth + 1, n_layers + 1)}  # fmt: skip
        cancel = find_cancel(mean_res, birth, n_layers)
        phases = SinkPhases(birth, cancel, rec.alpha0, rec.alpha1)
        templates = build_templates(spikes, birth, cancel, n_layers)
        drop = np.zeros(rec.rows, dtype=bool)
        drop[np.concatenate(rec.sink_rows)] = True
        counts = Counter(r.rows.size for r in use)
        info.update({
            "sink_counts": {int(k): v for k, v in sorted(counts.items())},
            "sink_positions": sorted({int(p) for r in use for p in r.rows}),
            "spike_residual_peak": float(np.abs(mean_res[birth + 1]).max()),
            "birth_max": float(max(np.abs(r.state).max() for r in use)),
        })  # fmt: skip
    exc = phases.excluded if phases is not None else (lambda la, s: False)
    ranges = {"all": _ranges(rec, False, None, exc), "all-rot": _ranges(rec, True, None, exc),
              "sem": _ranges(rec, True, drop, exc)}  # fmt: skip
    ranges["iq"], factors = _searched(rec, ranges["sem"], s, drop, lambda la, s: True)
    info["clip_factor_median"] = float(np.median(list(factors.values()))) if factors else 1.0
    if phases is not None:
        # what the clamp at birth removes from the sinks' down-projection output, in the domain
        # the quantizer clips in: mean(x R - clip(x R)) (W R)^T  (insertquant-norm's delta)
        x = np.concatenate([r.state for r in spikes if r.birth == phases.birth]).astype(np.float64)
        w = model.blocks[phases.birth].fused["ffn_act"]
        rot = rec.rots.get("ffn_act")
        if rot is not None:
            x, w = rot.apply(x).astype(np.float64), rot.apply(w)
        lo, hi = ranges["sem"][(phases.birth, "ffn_act")]
        removed = (x - np.clip(x, lo, hi)).mean(axis=0) @ w.astype(np.float64).T
        plan = build_norm_plan(spikes, phases.birth, phases.cancel, removed)
        info["delta_max_abs"] = float(np.abs(removed).max())
    return Calibration(s, n_layers, rec.rows, ranges, phases, templates, plan, info=info)


def prefix_ranges(rec: CalibrationRecorder, s: QuantSetting) -> Ranges:
    """PrefixQuant's ranges: non-prefix tokens (the recorder skips the prefix), MSE-clipped."""
    base = _ranges(rec, True, None, lambda la, s: False)
    return _searched(rec, base, s, None, lambda la, s: False)[0]


def detection_agreement(fp: list[set], q: list[set]) -> float:
    """Pooled R_correct over sequences: sum of intersections / sum of unions."""
    inter = sum(len(a & b) for a, b in zip(fp, q, strict=True))
    union = sum(len(a | b) for a, b in zip(fp, q, strict=True))
    return 1.0 if union == 0 else inter / union


def fp_sink_sets(rec: CalibrationRecorder, phases: SinkPhases) -> list[set]:
    """FP ratio-detected sinks of every calibration sequence, at the model's birth layer."""
    return [ratio_sinks(a, phases.birth, phases.alpha0, phases.alpha1) for a in rec.act_ratios]


# ---- on-disk cache ---------------------------------------------------------------------------
def _code_hash() -> str:
    """Hash of the code a calibration comes from, so a changed algorithm never reads old files."""
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + [here.parent / n for n in
                                         ("quantizers.py", "calibration.py", "model.py")]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files if f.is_file())).hexdigest()


def cache_key(*parts: Any) -> str:
    """A short hash of the inputs (and the code) that decide a calibration."""
    blob = json.dumps([CALIB_VERSION, _code_hash(), *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _key_str(k: Key) -> str:
    return f"{k[0]}:{k[1]}"


def save(calib: Calibration, path: Path) -> None:
    """Write a calibration (best effort; atomic rename)."""
    arrays: dict[str, np.ndarray] = {}
    if calib.templates is not None:
        arrays.update({f"tpl.{k}": v for k, v in calib.templates.arrays().items()})
    if calib.norm_plan is not None:
        arrays.update({f"np.{k}": v for k, v in calib.norm_plan.arrays().items()})
    p = calib.phases
    meta = {
        "setting": calib.setting.to_dict(), "n_layers": calib.n_layers, "tokens": calib.tokens,
        "ranges": {n: {_key_str(k): v for k, v in r.items()} for n, r in calib.ranges.items()},
        "phases": None if p is None else [p.birth, p.cancel, p.alpha0, p.alpha1],
        "prefix": list(calib.prefix), "info": calib.info,
    }  # fmt: skip
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError:
        pass


def load(path: Path, setting: QuantSetting) -> Calibration | None:
    """Read a calibration written by :func:`save`; None when absent or unreadable."""
    try:
        with np.load(path) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(a.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError):
        return None
    ranges = {
        n: {(int(k.split(":")[0]), k.split(":")[1]): (float(v[0]), float(v[1]))
            for k, v in r.items()}
        for n, r in meta["ranges"].items()
    }  # fmt: skip
    ph = meta["phases"]
    tpl = {k[4:]: v for k, v in a.items() if k.startswith("tpl.")}
    npl = {k[3:]: v for k, v in a.items() if k.startswith("np.")}
    return Calibration(
        setting, meta["n_layers"], meta["tokens"], ranges,
        None if ph is None else SinkPhases(int(ph[0]), int(ph[1]), ph[2], ph[3]),
        SinkTemplates.from_arrays(tpl) if tpl else None,
        NormPlan.from_arrays(npl) if npl else None,
        tuple(meta["prefix"]), meta["info"],
    )  # fmt: skip
