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
from pacim.llm.attention_pac import attention_summary
from pacim.llm.calibration import get_calibration, get_model, get_weights
from pacim.llm.insertquant import DEFAULT_ALPHA, DEFAULT_MODES, MODES, QuantHooks, parse_mode
from pacim.llm.insertquant.prefix import with_prefix
from pacim.llm.model import SITE_LINEARS, LlamaModel
from pacim.llm.rotation import check_rotation
from pacim.llm.settings import DEFAULT_SETTING, QuantSetting, parse_setting
from pacim.llm.sites import RecordHooks, all_sites, site_name
from pacim.llm.texts import TEXTS, resolve_text
from pacim.llm.tokenizer import Tokenizer

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIB_TEXT = DATA_DIR / "calib.txt"
EVAL_TEXT = DATA_DIR / "eval.txt"
__all__ = ["get_calibration", "get_model", "get_weights"]  # re-exported for old callers


def calibration_windows(
    tok: Tokenizer, calib: str | None = None, *, ctx: int = 512, tokens: int = 1024
) -> list[np.ndarray]:
    """Windows of the calibration text (shipped calib.txt by default)."""
    ctext, label = read_text(calib, CALIB_TEXT)
    return make_windows(tok.encode(ctext), min(ctx, tokens), tokens, f"calibration text {label}",
                        bos=window_bos(tok))  # fmt: skip


def window_bos(tok: Tokenizer) -> int | None:
    """The BOS every window starts with, for models that want one (Gemma), else None."""
    return tok.bos_id if tok.spec.add_bos else None


def read_text(path: str | Path | None, default: Path) -> tuple[str, str]:
    """(text, label) of a UTF-8 text file, or of the shipped default."""
    p = Path(path) if path is not None else default
    try:
        return p.read_text(encoding="utf-8"), (p.name if path is None else str(p))
    except FileNotFoundError as e:
        raise PacimError(f"text file not found: {p}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise PacimError(f"cannot read text file {p}: {e}") from e


def make_windows(
    ids: np.ndarray, ctx: int, tokens: int | None, label: str, *, bos: int | None = None
) -> list[np.ndarray]:
    """Non-overlapping ctx-token windows over the first ``tokens`` ids (None: all).

    With ``bos``, every window is BOS + ctx - 1 text tokens (the text's own leading BOS
    dropped), as a model trained with a BOS expects."""
    if ctx < 2:
        raise PacimError(f"context must be at least 2 tokens, got {ctx}")
    if bos is not None:
        body = ids[1:] if ids.size and ids[0] == bos else ids
        n = body.size if not tokens else min(int(tokens), body.size)
        if n < ctx - 1:
            raise PacimError(f"{label} has {body.size} tokens, fewer than the context of "
                             f"{ctx} (give a longer text or a smaller --ctx)")  # fmt: skip
        head = np.asarray([bos], dtype=ids.dtype)
        return [np.concatenate([head, body[i : i + ctx - 1]])
                for i in range(0, n - (ctx - 1) + 1, ctx - 1)]  # fmt: skip
    n = ids.size if not tokens else min(int(tokens), ids.size)
    if n < ctx:
        raise PacimError(
            f"{label} has {ids.size} tokens, fewer than the context of {ctx} "
            f"(give a longer text or a smaller --ctx)"
        )
    return [ids[i : i + ctx] for i in range(0, n - ctx + 1, ctx)]


@dataclass(frozen=True)
class EvalConfig:
    """Options of one evaluation run (``bits``/``wbits``/``rotation``: overrides of the setting)."""

    model: str = "smollm2-135m"
    modes: tuple[str, ...] = DEFAULT_MODES
    setting: str = DEFAULT_SETTING
    bits: int | None = None  # activation bits (None: the setting's)
    wbits: int | None = None  # weight bits (None: the setting's)
    operand: int = 4  # PAC operand (+pac modes)
    text: str | None = None  # evaluation text file or name (None: shipped eval.txt)
    calib: str | None = None  # calibration text file (None: shipped calib.txt)
    tokens: int = 1024  # evaluation tokens (0: the whole text)
    ctx: int = 512
    calib_tokens: int = 1024
    eta: float = DEFAULT_ALPHA  # alpha_0, the sink threshold at the birth layer
    alpha1: float | None = None  # alpha_1 one layer later (None: eta)
    rotation: str | None = None  # the rotating methods' rotation (None: the setting's)
    attention_pac: bool = False  # +pac modes: QK^T and PV on the macro too (static KV settings)
    attention_bits: int = 8  # the queries' and probabilities' bits on the macro

    def quant_setting(self) -> QuantSetting:
        """The setting with the overrides applied."""
        return parse_setting(self.setting, abits=self.bits, wbits=self.wbits,
                             rotation=self.rotation)  # fmt: skip

    def check(self) -> EvalConfig:
        """Validate; return self."""
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise PacimError(f"unknown mode(s) {bad or '(none)'}; choose from {', '.join(MODES)}")
        if self.rotation is not None:
            check_rotation(self.rotation)
        for name in ("bits", "wbits"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= 16:
                raise PacimError(f"--{name} must be in 1..16, got {v}")
        s = self.quant_setting()
        if self.attention_pac:
            if not any(parse_mode(m).pac for m in self.modes):
                raise PacimError("--attention-pac runs attention on the macro of +pac modes: "
                                 "add one, e.g. --modes fp,insertquant,insertquant+pac")
            if s.kvbits is None or s.kv != "static":
                raise PacimError(f"--attention-pac needs a static KV cache (a setting with sKV, "
                                 f"e.g. w8a8skv8), got {s.label}")  # fmt: skip
            if not 1 <= self.attention_bits <= 16:
                raise PacimError(f"--attention-bits must be in 1..16, got {self.attention_bits}")
        if self.operand < 1:
            raise PacimError(f"--operand must be >= 1, got {self.operand}")
        if self.tokens < 0 or self.calib_tokens < 1:
            raise PacimError("token counts must be positive")
        if not (self.eta > 1 and (self.alpha1 is None or self.alpha1 > 1)):
            raise PacimError(f"sink thresholds must be > 1, got {self.eta}, {self.alpha1}")
        return self


def _ppl(
    model: LlamaModel, windows: Sequence[np.ndarray], hooks: Any, tick: Callable,
    prefix: tuple[int, ...] = (),
) -> float:  # fmt: skip
    nll = []
    for w in windows:
        seq = with_prefix(w, prefix)
        # the prefix's own predictions (and, when prepended, the one of w[0]) are not counted
        nll.append(model.nll(seq, hooks)[seq.size - w.size :])
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
    setting = cfg.quant_setting()
    t_start = time.perf_counter()
    tick = progress or (lambda k: None)
    model, tok = get_model(cfg.model)
    text, text_label = read_text(resolve_text(cfg.text), EVAL_TEXT)
    ctext, calib_label = read_text(cfg.calib, CALIB_TEXT)
    if cfg.text in TEXTS:
        text_label = f"{cfg.text} ({TEXTS[cfg.text]})"
    warnings = []
    if text.strip() == ctext.strip() or text.strip()[:400] in ctext:
        warnings.append("the evaluation text overlaps the calibration text")
    eval_w = make_windows(tok.encode(text), cfg.ctx, cfg.tokens or None, f"text {text_label}",
                          bos=window_bos(tok))  # fmt: skip
    cal_w = calibration_windows(tok, cfg.calib, ctx=cfg.ctx, tokens=cfg.calib_tokens)
    methods = {m: parse_mode(m) for m in cfg.modes}
    need_calib = any(m.base != "fp" for m in methods.values())
    need_before = "fp" not in cfg.modes and any(m.base.startswith("insertquant")
                                                for m in methods.values())  # fmt: skip
    total = len(eval_w) * (len(cfg.modes) + int(need_before)) + (len(cal_w) if need_calib else 0)
    if on_total is not None:
        on_total(total)

    t0 = time.perf_counter()
    calib = None
    if need_calib:
        alpha = (cfg.eta, cfg.alpha1 if cfg.alpha1 is not None else cfg.eta)
        calib = get_calibration(cfg.model, cal_w, setting, alpha=alpha, progress=tick,
                                prefix=any(m.base == "prefixquant" for m in methods.values()))
    t_calib = time.perf_counter() - t0

    modes: dict[str, Any] = {}
    before: dict | None = None
    after: dict | None = None
    after_mode = None
    if need_before:
        rec = RecordHooks()
        _ppl(model, eval_w, rec, tick)
        before = rec.stats.ratios()
    for mode, meth in methods.items():
        t0 = time.perf_counter()
        hooks: Any
        if meth.base == "fp":
            hooks = RecordHooks()
        else:
            assert calib is not None
            rot = calib.rotation if meth.rotated else "none"
            weights = get_weights(cfg.model, setting, rot) if meth.quantized else None
            att = cfg.attention_pac and meth.pac
            hooks = QuantHooks(calib, weights, mode, operand=cfg.operand, attention_pac=att,
                               attention_bits=cfg.attention_bits)  # fmt: skip
        prefix = calib.prefix if calib is not None and meth.base == "prefixquant" else ()
        nll = _ppl(model, eval_w, hooks, tick, prefix)
        entry: dict[str, Any] = {
            "ppl": float(np.exp(nll)),
            "nll": nll,
            "seconds": time.perf_counter() - t0,
        }
        if meth.base == "fp":
            before = hooks.stats.ratios()
        elif meth.quantized:
            if hooks.attention_pac:
                entry["attention_pac"] = attention_summary(hooks.attention_errors,
                                                           cfg.attention_bits)  # fmt: skip
            entry["max_ratio"] = max(hooks.stats.ratios().values())
            if meth.base.startswith("insertquant"):
                entry["spike_tokens_detected"] = hooks.spike_rows_seen
                if after is None:
                    after, after_mode = hooks.stats.ratios(), mode
        modes[mode] = entry
    if "fp" in modes:
        for m in modes:
            if m != "fp":
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
    return {
        "model": {"source": cfg.model, "path": str(model.path), **asdict(cfgm)},
        "config": asdict(cfg),
        "setting": setting.to_dict(),
        "text": text_label,
        "calibration_text": calib_label,
        "tokens": int(sum(w.size for w in eval_w)),
        "windows": len(eval_w),
        "calibration_tokens": calib.tokens if calib is not None else 0,
        "calibration_seconds": t_calib,
        "perplexity": {m: e["ppl"] for m, e in modes.items()},
        "modes": modes,
        "spike_plan": calib.summary() if calib is not None else None,
        "ratios_after_from": after_mode,
        "max_ratio_before": max(before.values()) if before else None,
        "max_ratio_after": max(after.values()) if after else None,
        "sites": sites,
        "warnings": warnings,
        "seconds": time.perf_counter() - t_start,
    }


def _db(x: float | None) -> str:
    return "exact" if x is None else f"{x:.1f} dB"


def format_report(res: dict[str, Any], *, per_layer: bool = True) -> str:
    """Human-readable summary of an evaluate() result."""
    m = res["model"]
    c = res["config"]
    st = res.get("setting") or {}
    lines = [
        f"model {m['name']} ({m['n_layers']} layers, d={m['d_model']}), "
        f"{res['tokens']} eval tokens in {res['windows']} window(s) of {c['ctx']}, "
        f"calibration {res['calibration_tokens']} tokens",
        f"setting {st.get('label', '?')} ({st.get('spec', '?')}: weights per {st.get('weights')}"
        f"{' symmetric' if st.get('wsym') else ' asymmetric'}, activations per tensor static, "
        f"KV {'float' if st.get('kvbits') is None else st.get('kv')}), rotation "
        f"{st.get('rotation')}, alpha={c['eta']:g}, PAC operand {c['operand']}",
        "",
        f"{'mode':<24}{'ppl':>12}{'vs fp':>10}{'seconds':>10}",
    ]
    for mode, e in res["modes"].items():
        vs = ""
        if "vs_fp" in e:
            r = e["vs_fp"]
            vs = f"{100 * r:+.1f}%" if r < 10 else f"x{r + 1:.3g}"
        lines.append(f"{mode:<24}{e['ppl']:>12.5g}{vs:>10}{e['seconds']:>10.1f}")
        att = e.get("attention_pac")
        if att:
            lines.append(f"{'':<4}attention on PAC ({att['bits']}-bit Q and P): worst layer SQNR "
                         f"vs exact QK^T {_db(att['qk_sqnr_db_min'])}, PV "
                         f"{_db(att['pv_sqnr_db_min'])}")  # fmt: skip
    p = res.get("spike_plan")
    if p and p.get("birth_layer") is not None:
        lines += [
            "",
            f"sinks: born at {p['birth_site']} (max |x| {p['birth_max']:.0f}), residual peak "
            f"{p['spike_residual_peak']:.0f}, gone after layer {p['cancel_layer']}; "
            f"{p['templates']} template(s) for layers {p['template_layers'][0]}-"
            f"{p['template_layers'][1]}, positions {p['spike_positions']}, "
            f"R_correct {p.get('r_correct', float('nan')):.2f}, prefix {p['prefix']}",
        ]
    elif p:
        lines += ["", "no spike found in calibration: insertquant = quarot-rtn with spike-aware "
                  "clipping"]
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
