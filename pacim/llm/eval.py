"""Perplexity of a GGUF Llama model under fp / naive / insertquant / insertquant+pac.

The evaluation text is cut into non-overlapping windows of ``ctx`` tokens (each window starts a
fresh sequence, so position 0 of every window carries the attention-sink spike); perplexity is
exp(mean NLL) over every predicted token (ctx - 1 per window). Static activation scales come from
a separate calibration text (shipped: ``pacim/llm/data/calib.txt``; evaluation:
``pacim/llm/data/eval.txt``; both written for pacim and disjoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pacim.errors import PacimError
from pacim.llm.insertquant import (
    MODES,
    Calibration,
    QuantHooks,
    QuantizedWeights,
    RecordHooks,
    all_sites,
    calibrate,
    site_name,
)
from pacim.llm.model import SITE_LINEARS, LlamaModel
from pacim.llm.rotation import DEFAULT_ROTATION, check_rotation
from pacim.llm.tokenizer import Tokenizer

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIB_TEXT = DATA_DIR / "calib.txt"
EVAL_TEXT = DATA_DIR / "eval.txt"

_LOADED: dict[str, tuple[LlamaModel, Tokenizer]] = {}
_CALIBRATED: dict[tuple, Calibration] = {}
_WEIGHTS: dict[tuple[str, int, str], QuantizedWeights] = {}


def get_model(model: str = "smollm2-135m") -> tuple[LlamaModel, Tokenizer]:
    """Load a model once per process (memoized by name or path)."""
    from pacim.llm import load_model  # noqa: PLC0415

    if model not in _LOADED:
        _LOADED[model] = load_model(model)
    return _LOADED[model]


def get_calibration(
    model: str,
    windows: Sequence[np.ndarray],
    *,
    eta: float = 64.0,
    rotation: str = DEFAULT_ROTATION,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Calibrate once per (model, calibration windows, eta, rotation) in this process."""
    key = (model, eta, rotation, len(windows), *(hash(w.tobytes()) for w in windows))
    if key not in _CALIBRATED:
        _CALIBRATED[key] = calibrate(
            get_model(model)[0], windows, eta=eta, rotation=rotation, progress=progress
        )
    elif progress is not None:
        progress(len(windows))
    return _CALIBRATED[key]


def get_weights(model: str, wbits: int, rotation: str = DEFAULT_ROTATION) -> QuantizedWeights:
    """Per-tensor quantized weights, once per (model, wbits, rotation) in this process."""
    key = (model, wbits, rotation)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = QuantizedWeights(get_model(model)[0], wbits, rotation)
    return _WEIGHTS[key]


def calibration_windows(
    tok: Tokenizer, calib: str | None = None, *, ctx: int = 512, tokens: int = 1024
) -> list[np.ndarray]:
    """Windows of the calibration text (shipped calib.txt by default)."""
    ctext, label = read_text(calib, CALIB_TEXT)
    return make_windows(tok.encode(ctext), min(ctx, tokens), tokens, f"calibration text {label}")


def read_text(path: str | Path | None, default: Path) -> tuple[str, str]:
    """(text, label) of a UTF-8 text file, or of the shipped default."""
    p = Path(path) if path is not None else default
    try:
        return p.read_text(encoding="utf-8"), (p.name if path is None else str(p))
    except FileNotFoundError as e:
        raise PacimError(f"text file not found: {p}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise PacimError(f"cannot read text file {p}: {e}") from e


def make_windows(ids: np.ndarray, ctx: int, tokens: int | None, label: str) -> list[np.ndarray]:
    """Non-overlapping ctx-token windows over the first ``tokens`` ids (None: all)."""
    if ctx < 2:
        raise PacimError(f"context must be at least 2 tokens, got {ctx}")
    n = ids.size if not tokens else min(int(tokens), ids.size)
    if n < ctx:
        raise PacimError(
            f"{label} has {ids.size} tokens, fewer than the context of {ctx} "
            f"(give a longer text or a smaller --ctx)"
        )
    return [ids[i : i + ctx] for i in range(0, n - ctx + 1, ctx)]


@dataclass(frozen=True)
class EvalConfig:
    """Options of one evaluation run."""

    model: str = "smollm2-135m"
    modes: tuple[str, ...] = MODES
    bits: int = 8  # activation bits
    wbits: int = 8  # weight bits
    operand: int = 4  # PAC operand (insertquant+pac)
    text: str | None = None  # evaluation text file (None: shipped eval.txt)
    calib: str | None = None  # calibration text file (None: shipped calib.txt)
    tokens: int = 1024  # evaluation tokens (0: the whole text)
    ctx: int = 512
    calib_tokens: int = 1024
    eta: float = 64.0
    rotation: str = DEFAULT_ROTATION  # insertquant's input rotation ("none": the paper's method)

    def check(self) -> EvalConfig:
        """Validate; return self."""
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise PacimError(f"unknown mode(s) {bad or '(none)'}; choose from {', '.join(MODES)}")
        check_rotation(self.rotation)
        for name in ("bits", "wbits"):
            v = getattr(self, name)
            if not 1 <= v <= 16:
                raise PacimError(f"--{name} must be in 1..16, got {v}")
        if self.operand < 1:
            raise PacimError(f"--operand must be >= 1, got {self.operand}")
        if self.tokens < 0 or self.calib_tokens < 1:
            raise PacimError("token counts must be positive")
        return self


def _ppl(model: LlamaModel, windows: Sequence[np.ndarray], hooks: Any, tick: Callable) -> float:
    nll = []
    for w in windows:
        nll.append(model.nll(w, hooks))
        tick(1)
    return float(np.concatenate(nll).mean())


def evaluate(
    cfg: EvalConfig,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the evaluation; return a JSON-friendly result dict.

    ``on_total(n)`` is called once with the number of progress steps; ``progress(k)`` advances.
    """
    cfg.check()
    t_start = time.perf_counter()
    tick = progress or (lambda k: None)
    model, tok = get_model(cfg.model)
    text, text_label = read_text(cfg.text, EVAL_TEXT)
    ctext, calib_label = read_text(cfg.calib, CALIB_TEXT)
    warnings = []
    if text.strip() == ctext.strip() or text.strip()[:400] in ctext:
        warnings.append("the evaluation text overlaps the calibration text")
    eval_w = make_windows(tok.encode(text), cfg.ctx, cfg.tokens or None, f"text {text_label}")
    cal_w = calibration_windows(tok, cfg.calib, ctx=cfg.ctx, tokens=cfg.calib_tokens)
    quant_modes = [m for m in cfg.modes if m != "fp"]
    need_before = "fp" not in cfg.modes and any(m.startswith("insertquant") for m in cfg.modes)
    total = len(eval_w) * (len(cfg.modes) + int(need_before)) + (len(cal_w) if quant_modes else 0)
    if on_total is not None:
        on_total(total)

    calib: Calibration | None = None
    if quant_modes:
        calib = get_calibration(
            cfg.model, cal_w, eta=cfg.eta, rotation=cfg.rotation, progress=tick
        )

    modes: dict[str, Any] = {}
    before: dict | None = None
    after: dict | None = None
    after_mode = None
    if need_before:
        rec = RecordHooks()
        _ppl(model, eval_w, rec, tick)
        before = rec.stats.ratios()
    for mode in cfg.modes:
        t0 = time.perf_counter()
        hooks: Any
        if mode == "fp":
            hooks = RecordHooks()
        else:
            assert calib is not None
            rot = cfg.rotation if mode.startswith("insertquant") else "none"
            weights = get_weights(cfg.model, cfg.wbits, rot)
            hooks = QuantHooks(calib, weights, mode, bits=cfg.bits, operand=cfg.operand)
        nll = _ppl(model, eval_w, hooks, tick)
        entry: dict[str, Any] = {
            "ppl": float(np.exp(nll)),
            "nll": nll,
            "seconds": time.perf_counter() - t0,
        }
        if mode == "fp":
            before = hooks.stats.ratios()
        else:
            entry["max_ratio"] = max(hooks.stats.ratios().values())
            if hooks.iq:
                entry["spike_tokens_detected"] = hooks.spike_rows_seen
                if after is None:
                    after, after_mode = hooks.stats.ratios(), mode
        modes[mode] = entry
    if "fp" in modes:
        for m in quant_modes:
            modes[m]["vs_fp"] = modes[m]["ppl"] / modes["fp"]["ppl"] - 1.0

    cfgm = model.config
    sites = []
    for la, s in all_sites(cfgm.n_layers):
        row: dict[str, Any] = {
            "site": site_name(la, s),
            "layer": la,
            "input_of": [f"blk.{la}.{n}" for n in SITE_LINEARS[s]],
        }
        if before is not None:
            row["before"] = before[(la, s)]
        if after is not None:
            row["after"] = after[(la, s)]
        sites.append(row)
    res: dict[str, Any] = {
        "model": {"source": cfg.model, "path": str(model.path), **asdict(cfgm)},
        "config": asdict(cfg),
        "text": text_label,
        "calibration_text": calib_label,
        "tokens": int(sum(w.size for w in eval_w)),
        "windows": len(eval_w),
        "calibration_tokens": calib.tokens if calib is not None else 0,
        "modes": modes,
        "spike_plan": calib.plan.summary() if calib is not None else None,
        "ratios_after_from": after_mode,
        "max_ratio_before": max(before.values()) if before else None,
        "max_ratio_after": max(after.values()) if after else None,
        "sites": sites,
        "warnings": warnings,
        "seconds": time.perf_counter() - t_start,
    }
    return res


def format_report(res: dict[str, Any], *, per_layer: bool = True) -> str:
    """Human-readable summary of an evaluate() result."""
    m = res["model"]
    c = res["config"]
    lines = [
        f"model {m['name']} ({m['n_layers']} layers, d={m['d_model']}), "
        f"{res['tokens']} eval tokens in {res['windows']} window(s) of {c['ctx']}, "
        f"calibration {res['calibration_tokens']} tokens",
        f"W{c['wbits']}A{c['bits']} per-tensor static, eta={c['eta']:g}, "
        f"PAC operand {c['operand']}, insertquant rotation: {c.get('rotation', 'none')}",
        "",
        f"{'mode':<18}{'ppl':>12}{'vs fp':>10}{'seconds':>10}",
    ]
    for mode, e in res["modes"].items():
        vs = ""
        if "vs_fp" in e:
            r = e["vs_fp"]
            vs = f"{100 * r:+.1f}%" if r < 10 else f"x{r + 1:.3g}"
        lines.append(f"{mode:<18}{e['ppl']:>12.5g}{vs:>10}{e['seconds']:>10.1f}")
    p = res.get("spike_plan")
    if p and p.get("birth_layer") is not None:
        lines += [
            "",
            f"spike: born at {p['birth_site']} (max |x| {p['birth_max']:.0f}), "
            f"residual peak {p['spike_residual_peak']:.0f}, "
            f"cancelled by layer {p['cancel_layer']}; "
            f"templates for layers {p['template_layers'][0]}-{p['template_layers'][1]}, "
            f"positions {p['spike_positions']}",
        ]
    elif p:
        lines += ["", "no spike found in calibration (insertquant = naive with clean ranges)"]
    if res["max_ratio_before"] is not None:
        after = res["max_ratio_after"]
        lines += [
            "",
            f"max/median |activation| over quantized inputs: before {res['max_ratio_before']:.1f}"
            + (f", after INSERTQUANT {after:.1f}" if after is not None else ""),
        ]
    if per_layer and res["max_ratio_before"] is not None:
        lines.append(f"{'layer':<8}{'before':>10} {'(site)':<10}{'after':>10} {'(site)':<10}")
        by_layer: dict[int, list[dict]] = {}
        for r in res["sites"]:
            by_layer.setdefault(r["layer"], []).append(r)
        for la, rows in by_layer.items():
            b = max(rows, key=lambda r: r["before"])
            txt = f"blk.{la:<4}{b['before']:>10.1f} {b['site'].split('.')[-1]:<10}"
            if "after" in rows[0]:
                a = max(rows, key=lambda r: r["after"])
                txt += f"{a['after']:>10.1f} {a['site'].split('.')[-1]:<10}"
            lines.append(txt)
    for w in res.get("warnings", []):
        lines.append(f"warning: {w}")
    lines.append(f"total {res['seconds']:.1f} s")
    return "\n".join(lines)
