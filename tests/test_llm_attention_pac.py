"""Attention's BMMs on the PAC macro: exact at full operand, against a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

from pacim.errors import PacimError
from pacim.functional import linear_quantized
from pacim.llm.attention_pac import AttentionError, KVCodes, pac_attention
from pacim.llm.quantizers import static_codes, static_qparams


def _case(t: int = 24, h: int = 4, hkv: int = 2, d: int = 16, bits: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(t, h, d)).astype(np.float32)
    k = rng.normal(size=(t, hkv, d)).astype(np.float32)
    v = rng.normal(size=(t, hkv, d)).astype(np.float32)
    coded = np.ones(t, dtype=bool)
    coded[0] = False  # a sink row: float, on the digital unit
    kc = static_codes(k[coded].reshape(-1, hkv * d), bits, *static_qparams(k.min(), k.max(), bits))
    vc = static_codes(v[coded].reshape(-1, hkv * d), bits, *static_qparams(v.min(), v.max(), bits))
    kf, vf = k.copy(), v.copy()
    kf[coded] = kc.dequantize().reshape(-1, hkv, d)
    vf[coded] = vc.dequantize().reshape(-1, hkv, d)
    return q, KVCodes(kc, vc, coded, np.cumsum(coded) - 1, kf, vf)


def _reference(q: np.ndarray, kv: KVCodes, bits: int) -> np.ndarray:
    """Float64, per head: quantized Q, exact scores on the decoded K, quantized P, decoded V."""
    t, h, d = q.shape
    hkv = kv.k_float.shape[1]
    lo, hi = min(q.min(), 0.0), max(q.max(), 0.0)
    qd = static_codes(q.reshape(t * h, d), bits, *static_qparams(lo, hi, bits)).dequantize()
    qd = qd.reshape(t, h, d).astype(np.float64)
    out = np.zeros((t, h, d))
    levels = (1 << bits) - 1
    for head in range(h):
        kh = kv.k_float[:, head // (h // hkv), :].astype(np.float64)
        vh = kv.v_float[:, head // (h // hkv), :].astype(np.float64)
        s = qd[:, head, :] @ kh.T / np.sqrt(d)
        s[np.triu_indices(t, 1)] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[:, head, :] = (np.rint(p * levels) / levels) @ vh
    return out.reshape(t, h * d)


@pytest.mark.parametrize("bits", [4, 8])
def test_full_operand_is_exact(bits: int) -> None:
    q, kv = _case(bits=bits)
    err = AttentionError()
    got = pac_attention(0, q, kv, bits=bits, operand=bits, window=0, hrot=None,
                        linear_quantized=linear_quantized, errors=err)  # fmt: skip
    np.testing.assert_allclose(got, _reference(q, kv, bits), rtol=1e-4, atol=1e-4)
    (row,) = err.table()  # exact up to the float32 output: no PAC error
    assert row["layer"] == 0 and all(row[k] is None or row[k] > 100 for k in ("qk_sqnr_db",
                                                                          "pv_sqnr_db"))


def test_pac_error_shrinks_with_the_operand() -> None:
    q, kv = _case(t=48, d=32, bits=8, seed=1)
    sq = []
    for op in (2, 4, 6):
        err = AttentionError()
        pac_attention(0, q, kv, bits=8, operand=op, window=0, hrot=None,
                      linear_quantized=linear_quantized, errors=err)  # fmt: skip
        sq.append(err.sqnr_db(0, "qk"))
    assert sq[0] < sq[1] < sq[2] and np.isfinite(sq).all()


def test_attention_pac_needs_pac_mode_and_static_kv() -> None:
    pytest.importorskip("gguf")
    from pacim.llm.eval import EvalConfig  # noqa: PLC0415

    with pytest.raises(PacimError, match=r"\+pac"):
        EvalConfig(setting="w8a8skv8", modes=("fp", "insertquant"), attention_pac=True).check()
    with pytest.raises(PacimError, match="static KV"):
        EvalConfig(setting="w8a8", modes=("insertquant+pac",), attention_pac=True).check()


def test_eval_runs_attention_on_pac() -> None:
    """On SmolLM2 with W8A8sKV8: every layer's two BMMs on the macro, a finite perplexity."""
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from pacim.llm.eval import EvalConfig, evaluate  # noqa: PLC0415

    res = evaluate(EvalConfig(setting="w8a8skv8", modes=("insertquant+pac",), tokens=128, ctx=128,
                              operand=7, attention_pac=True))  # fmt: skip
    e = res["modes"]["insertquant+pac"]
    att = e["attention_pac"]
    assert att["bits"] == 8 and [r["layer"] for r in att["layers"]] == list(range(30))
    assert 10 < att["qk_sqnr_db_min"] < 80 and 0 < att["pv_sqnr_db_min"] < 80
    assert np.isfinite(e["ppl"]) and e["ppl"] < 100
