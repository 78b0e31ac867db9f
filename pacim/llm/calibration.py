"""Models, quantized weights and calibrations, once per process and cached on disk.

A calibration (every method's static ranges, sink phases, templates, prefix, R_correct) is
computed once per (model file, setting, calibration tokens, alphas) and kept in
``<cache>/calib/`` (``$PACIM_CACHE`` or ``~/.cache/pacim``); ``PACIM_CALIB_CACHE=0`` disables it,
``PACIM_CALIB_CACHE=DIR`` puts it in DIR.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pacim.llm.fetch import cache_dir
from pacim.llm.insertquant import calibrate as cal
from pacim.llm.insertquant.detect import DEFAULT_ALPHA
from pacim.llm.insertquant.hooks import QuantHooks, StopForward
from pacim.llm.insertquant.prefix import with_prefix
from pacim.llm.insertquant.recorder import CalibrationRecorder
from pacim.llm.model import LlamaModel
from pacim.llm.quantizers import QuantizedWeights
from pacim.llm.settings import QuantSetting
from pacim.llm.tokenizer import Tokenizer

_LOADED: dict[str, tuple[LlamaModel, Tokenizer]] = {}
_CALIBRATED: dict[str, cal.Calibration] = {}
_WEIGHTS: dict[tuple, QuantizedWeights] = {}
PREFIX_START_NAMES = ("<|endoftext|>", "<s>", "<bos>")


def get_model(model: str = "smollm2-135m") -> tuple[LlamaModel, Tokenizer]:
    """Load a model once per process (memoized by name or path)."""
    from pacim.llm import load_model  # noqa: PLC0415

    if model not in _LOADED:
        _LOADED[model] = load_model(model)
    return _LOADED[model]


def get_weights(model: str, setting: QuantSetting | int, rotation: str) -> QuantizedWeights:
    """Quantized weights of a setting (or plain per-tensor ``wbits``), once per process."""
    if isinstance(setting, int):
        wbits, per_channel, sym = setting, False, False
    else:
        wbits, wq, sym = setting.weight_key
        per_channel = wq == "channel"
    key = (model, wbits, per_channel, sym, rotation)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = QuantizedWeights(get_model(model)[0], wbits, rotation,
                                         per_channel=per_channel, symmetric=sym)  # fmt: skip
    return _WEIGHTS[key]


def prefix_tokens(tok: Tokenizer, calib: cal.Calibration, windows: Sequence[np.ndarray],
                  ) -> tuple[int, ...]:  # fmt: skip
    """PrefixQuant's prefix: a start token, then the most frequent delimiter-sink tokens.

    The prefix has as many tokens as a calibration sequence has sinks (the most frequent count).
    Sinks after position 0 (delimiters, as in LLaMA-2) contribute their most frequent tokens;
    the start token is BOS when the model adds one, else its document separator
    (``<|endoftext|>`` in SmolLM2, which has no delimiter spikes: its one sink is position 0,
    whatever the token), else BOS, else the most frequent first token.
    """
    spec = tok.spec
    if spec.add_bos and spec.bos_id is not None:
        start = spec.bos_id
    else:
        named = [spec.tokens.index(n) for n in PREFIX_START_NAMES if n in spec.tokens]
        if named:
            start = named[0]
        elif spec.bos_id is not None:
            start = spec.bos_id
        else:
            start = Counter(int(w[0]) for w in windows).most_common(1)[0][0]
    counts = {int(k): v for k, v in (calib.info.get("sink_counts") or {1: 1}).items()}
    n = max(counts, key=lambda k: counts[k])  # (keys are strings after the JSON cache)
    later = Counter(int(windows[i][p]) for i, rows in enumerate(calib.info.get("sink_rows", []))
                    for p in rows if p > 0)  # fmt: skip
    return (start, *[t for t, _ in later.most_common(max(n - 1, 0))])


def _r_correct(
    model: LlamaModel, c: cal.Calibration, w: QuantizedWeights, windows: Sequence[np.ndarray],
    fp_sets: list[set],
) -> float:  # fmt: skip
    """Agreement of the sinks re-detected in the quantized model with the FP sinks."""
    hooks = QuantHooks(c, w, "insertquant", stop_after=c.phases.birth + 1)
    for seq in windows:
        try:
            model.hidden(seq, hooks)
        except StopForward:
            hooks.end()
    return cal.detection_agreement(fp_sets, hooks.detected)


def get_calibration(
    model: str,
    windows: Sequence[np.ndarray],
    setting: QuantSetting,
    *,
    alpha: tuple[float, float] = (DEFAULT_ALPHA, DEFAULT_ALPHA),
    prefix: bool = False,
    progress: Callable[[int], None] | None = None,
) -> cal.Calibration:
    """Calibrate once per (model, windows, setting, alpha); ``prefix`` adds PrefixQuant's part."""
    lm, tok = get_model(model)
    st = lm.path.stat()
    key = cal.cache_key(str(lm.path.resolve()), st.st_size, st.st_mtime_ns, setting.to_dict(),
                        list(alpha), [w.tolist() for w in windows])  # fmt: skip
    path = None
    env = os.environ.get("PACIM_CALIB_CACHE", "1")
    if env != "0":
        root = cache_dir() / "calib" if env == "1" else Path(env).expanduser()
        path = root / f"{Path(lm.path).stem}-{setting.spec.replace(':', '_')}-{key}.npz"
    c = _CALIBRATED.get(key)
    if c is None and path is not None and path.is_file():
        c = cal.load(path, setting)
    dirty = c is None
    if c is None:
        rec = CalibrationRecorder(lm, setting.rotation, *alpha)
        for w in windows:
            lm.hidden(w, rec)
            if progress is not None:
                progress(1)
        c = cal.from_recorder(rec, setting, lm.config.n_layers, lm)
        off = np.cumsum([0, *[w.size for w in windows]])
        c.info["sink_rows"] = [[int(r - off[i]) for r in rows if off[i] <= r < off[i + 1]]
                               for i, rows in enumerate(rec.sink_rows)]  # fmt: skip
        if c.phases is not None:
            fp_sets = cal.fp_sink_sets(rec, c.phases)
            wq = get_weights(model, setting, setting.rotation)
            r0 = _r_correct(lm, c, wq, windows, fp_sets)
            c.info["r_correct"], c.info["rejected_layers"] = r0, []
            if r0 < cal.R_CORRECT_MIN:  # reject the clipping upstream of the detection
                up = [k for k in c.ranges["iq"] if k[0] <= c.phases.birth + 1]
                for k in up:
                    c.ranges["iq"][k] = c.ranges["sem"][k]
                c.info["rejected_layers"] = sorted({k[0] for k in up})
                c.info["r_correct_after_reject"] = _r_correct(lm, c, wq, windows, fp_sets)
        del rec
    elif progress is not None:
        progress(len(windows))
    if prefix and "prefix" not in c.ranges:
        c.prefix = prefix_tokens(tok, c, windows)
        n = len(c.prefix)
        rec = CalibrationRecorder(lm, setting.rotation, *alpha, skip=n, sinks=False)
        for w in windows:
            lm.hidden(with_prefix(w, c.prefix), rec)
        c.ranges["prefix"] = cal.prefix_ranges(rec, setting)
        dirty = True
    if dirty and path is not None:
        cal.save(c, path)
    _CALIBRATED[key] = c
    return c
