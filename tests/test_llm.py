"""LLM front end on the real SmolLM2-135M-Instruct (downloaded once into the pacim cache)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from pacim.errors import PacimError  # noqa: E402
from pacim.llm.calibration import get_calibration, get_model, get_weights  # noqa: E402
from pacim.llm.eval import (  # noqa: E402
    CALIB_TEXT,
    EVAL_TEXT,
    EvalConfig,
    calibration_windows,
    evaluate,  # noqa: E402
)
from pacim.llm.insertquant import QuantHooks  # noqa: E402
from pacim.llm.settings import parse_setting  # noqa: E402

pytestmark = pytest.mark.llm


@pytest.fixture(scope="session")
def smol() -> Any:
    try:
        return get_model("smollm2-135m")
    except PacimError as e:  # no network and no cached download
        pytest.skip(f"SmolLM2 not available: {e}")


@pytest.fixture(scope="session")
def w8a8(smol: Any) -> dict[str, Any]:
    """Per-tensor W8A8 (pacim's setting): fp / naive / the first front end, first 512 tokens."""
    return evaluate(EvalConfig(modes=("fp", "naive", "insertquant-norm"), tokens=512))


@pytest.fixture(scope="session")
def paper(smol: Any) -> dict[str, Any]:
    """The paper's family: W8A8sKV8 on the CLI's default 1,024 tokens, W4A4sKV4 on 512.

    W8A8sKV8's 2% target is checked on the default evaluation, not on one 512-token window:
    there INSERTQUANT measures +2.04% (+1.5 to +1.7% on 1,024, with BLAS's thread count), and
    PrefixQuant -2.6%, so one window's perplexity moves by about 2% either way at 8 bits.
    """
    return {
        s: evaluate(EvalConfig(setting=s, tokens=n, modes=modes))
        for s, n, modes in (
            ("w8a8skv8", 1024, ("fp", "rtn", "insertquant", "insertquant-fp")),
            ("w4a4skv4", 512, ("rtn", "quarot-rtn", "prefixquant", "insertquant")))
    }  # fmt: skip


def test_config_facts(smol: Any) -> None:
    cfg = smol[0].config
    assert (cfg.n_layers, cfg.d_model, cfg.d_ff) == (30, 576, 1536)
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (9, 3, 64)
    assert cfg.rope_theta == 100000.0 and cfg.tied_head
    assert abs(cfg.n_params - 134_515_008) < 1_000_000


@pytest.mark.parametrize("path", [CALIB_TEXT, EVAL_TEXT])
def test_tokenizer_roundtrip_shipped_texts(smol: Any, path: Any) -> None:
    tok = smol[1]
    text = path.read_text(encoding="utf-8")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.size > 2000  # "a few thousand tokens"


def test_tokenizer_specials_digits_unicode(smol: Any) -> None:
    tok = smol[1]
    text = "<|im_start|>user\nPi is 3.14159, naïve café 日本 🙂<|im_end|>\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids[0] == 1 and 2 in ids  # <|im_start|>, <|im_end|> are single tokens
    assert len(tok.encode("12345")) == 5  # individual digits
    assert list(tok.encode("The capital of France is")) == [504, 3575, 282, 4649, 314]


def test_greedy_decode_paris(smol: Any) -> None:
    model, tok = smol
    out = tok.decode(model.generate(tok.encode("The capital of France is"), 3))
    assert out.startswith(" Paris")


def test_fp_perplexity_sane(w8a8: dict[str, Any]) -> None:
    assert w8a8["tokens"] == 512
    assert 5 < w8a8["modes"]["fp"]["ppl"] < 30


def test_spike_found_generically(w8a8: dict[str, Any]) -> None:
    plan = w8a8["spike_plan"]
    assert plan["birth_layer"] == 11  # found from statistics, not hard-coded
    assert plan["spike_positions"] == [0] and plan["templates"] == 1  # K = 1: SmolLM2's BOS
    assert plan["cancel_layer"] >= 28
    assert plan["spike_residual_peak"] > 10_000
    assert plan["r_correct"] == 1.0 and plan["prefix"] == []
    assert w8a8["modes"]["insertquant-norm"]["spike_tokens_detected"] == w8a8["windows"]


def test_ratios_before_and_after(w8a8: dict[str, Any]) -> None:
    assert w8a8["max_ratio_before"] > 1000
    assert all(r["after"] < 100 for r in w8a8["sites"]), "a quantized input keeps a spike"
    worst = max(w8a8["sites"], key=lambda r: r["before"])
    assert worst["site"] == "blk.11.ffn_act"


def test_first_front_end_beats_naive(w8a8: dict[str, Any]) -> None:
    m = w8a8["modes"]
    assert m["insertquant-norm"]["ppl"] < m["naive"]["ppl"]
    # W8A8 per-tensor static with the Hadamard rotation; measured +0.3..+1.5% (docs/LLM.md)
    assert m["insertquant-norm"]["vs_fp"] < 0.05


def test_paper_method_w8a8skv8(paper: dict[str, Any]) -> None:
    r = paper["w8a8skv8"]
    assert r["setting"]["label"] == "W8A8sKV8" and set(r["perplexity"]) == set(r["modes"])
    assert r["modes"]["insertquant"]["vs_fp"] < 0.02  # the target
    assert abs(r["modes"]["insertquant-fp"]["vs_fp"]) < 0.005  # FP parity: templates cost ~0
    assert r["perplexity"]["insertquant"] < r["perplexity"]["rtn"]


def test_paper_ordering_w4a4skv4(paper: dict[str, Any]) -> None:
    """Table 1's ordering: RTN >> QuaRot-RTN >> PrefixQuant ~ InsertQuant (512 tokens: loose)."""
    p = paper["w4a4skv4"]["perplexity"]
    assert p["rtn"] > 10 * p["quarot-rtn"] > 10 * max(p["prefixquant"], p["insertquant"])
    assert p["insertquant"] < 1.5 * p["prefixquant"]


def test_first_front_end_without_rotation(w8a8: dict[str, Any]) -> None:
    """pacim's first front end without its rotation still beats naive, but by less."""
    res = evaluate(EvalConfig(modes=("insertquant-norm",), tokens=512, rotation="none"))
    ppl = res["modes"]["insertquant-norm"]["ppl"]
    assert ppl < w8a8["modes"]["naive"]["ppl"]
    assert w8a8["modes"]["insertquant-norm"]["ppl"] < ppl
    assert res["max_ratio_after"] < 100


def test_four_bit_activations(smol: Any) -> None:
    res = evaluate(EvalConfig(modes=("naive", "insertquant-norm"), bits=4, tokens=512))
    m = res["modes"]
    assert np.isfinite(m["insertquant-norm"]["ppl"]) and np.isfinite(m["naive"]["ppl"])
    assert m["insertquant-norm"]["ppl"] < m["naive"]["ppl"]


class _ExactCheck(QuantHooks):
    """PAC hooks that also compute the fake-quantized product on the same codes."""

    worst = 0.0

    def matmul(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        y = super().matmul(layer, site, x)
        ref = self._qx.dequantize() @ self.weights.fused[layer][site].T.astype(np.float64)
        got = y if self._bypass is None else y[~self._bypass]
        self.worst = max(self.worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
        return y


@pytest.mark.parametrize("spec, mode", [("w8a8", "insertquant-norm"),
                                        ("w8a8skv8", "insertquant")])
def test_pac_macro_path(smol: Any, spec: str, mode: str) -> None:
    model, tok = smol
    s = parse_setting(spec)
    cal = get_calibration("smollm2-135m", calibration_windows(tok), s)
    w = get_weights("smollm2-135m", s, "hadamard")
    assert cal.rotation == w.rotation == "hadamard"  # the defaults agree
    with pytest.raises(PacimError, match="needs weights with rotation"):
        QuantHooks(cal, get_weights("smollm2-135m", s, "none"), mode)
    with pytest.raises(PacimError, match="needs weights with rotation"):
        QuantHooks(cal, w, "naive")
    ids = tok.encode(EVAL_TEXT.read_text(encoding="utf-8"))[:64]
    exact = _ExactCheck(cal, w, f"{mode}+pac", operand=8)
    nll8 = model.nll(ids, exact).mean()
    assert exact.worst < 1e-5  # operand = bits: the macro equals the fake-quantized product
    assert exact.spike_rows_seen == 1
    ref = model.nll(ids, QuantHooks(cal, w, mode)).mean()
    # end to end the two differ only by float rounding flipping a few codes
    assert abs(nll8 - ref) < 0.5
    approx = model.nll(ids, QuantHooks(cal, w, f"{mode}+pac", operand=4)).mean()
    assert np.isfinite(approx)


def test_workload(smol: Any) -> None:
    from pacim.llm.workload import smollm2_workload

    wl = smollm2_workload(32)
    names = [la.name for la in wl.layers]
    assert names[:9] == [
        "blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v", "blk.0.attn_qk", "blk.0.attn_pv",
        "blk.0.attn_output", "blk.0.ffn_gate", "blk.0.ffn_up", "blk.0.ffn_down",
    ]  # fmt: skip
    assert len(wl.layers) == 30 * 9 + 1 and names[-1] == "output"
    assert wl.has_data
    lin = [la for la in wl.layers if la.kind == "linear"]
    assert all(la.x.shape == (la.vectors, la.n) and la.weight.shape == (la.k, la.n) for la in lin)
    mm = [la for la in wl.layers if la.kind == "matmul"]
    assert len(mm) == 60 and not any(la.mapped for la in mm)
    assert mm[0].macs == 32 * 64 * 32 * 9
    # inputs are spike-free: the clamped birth site has a small max/median ratio
    down11 = wl.layers[names.index("blk.11.ffn_down")]
    tm = np.abs(down11.x).max(axis=1)
    assert tm.max() / np.median(tm) < 100
    # inputs and weights are both rotated (block Hadamard), so products are the model's
    assert wl.meta["rotation"] == "hadamard" and wl.meta["rotation_adds"] > 0
    assert wl.meta["rotation_blocks"] == {
        "attn_in": 64, "attn_out": 64, "ffn_in": 64, "ffn_act": 512
    }  # fmt: skip
