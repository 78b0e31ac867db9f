"""INSERTQUANT, the baselines, settings and quantizers on tiny synthetic GGUFs (no download):
the spiky model of tests.llm_fixtures, whose token 0 is a sink born at layer BIRTH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from pacim.errors import PacimError  # noqa: E402
from pacim.functional import linear_quantized  # noqa: E402
from pacim.llm.calibration import get_calibration, get_model, get_weights  # noqa: E402
from pacim.llm.eval import calibration_windows, evaluate  # noqa: E402
from pacim.llm.insertquant import QuantHooks, parse_mode  # noqa: E402
from pacim.llm.insertquant import calibrate as cal  # noqa: E402
from pacim.llm.insertquant.templates import SinkTemplates  # noqa: E402
from pacim.llm.quantizers import (  # noqa: E402
    group_codes,
    macro_linear,
    quantize_weight,
    static_codes,
    static_qparams,
)
from pacim.llm.settings import parse_setting  # noqa: E402
from tests.llm_fixtures import BIRTH, LAYERS4, spiky_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("pacim_cache")
_cfg = spiky_config


# ---- settings -------------------------------------------------------------------------------
def test_settings_grammar() -> None:
    s = parse_setting("w4a4skv4")
    assert (s.wbits, s.abits, s.kvbits, s.kv, s.weights, s.wsym) == (4, 4, 4, "static",
                                                                     "channel", True)
    assert s.label == "W4A4sKV4" and s.rotation == "hadamard"
    t = parse_setting("w8a8")  # pacim's PACiM-style per-tensor family
    assert (t.kvbits, t.weights, t.wsym, t.label) == (None, "tensor", False, "W8A8")
    g = parse_setting("w4a8gkv4:wt,asym,norot,g64")
    assert (g.kv, g.kv_group, g.weights, g.wsym, g.rotation) == ("group", 64, "tensor", False,
                                                                 "none")
    assert parse_setting("w8a8skv8", abits=4, rotation="none").abits == 4
    for bad in ("w4", "w4a4kv4", "w4a4skv4:bogus", "w0a4", "w4a4skv4:g1"):
        with pytest.raises(PacimError):
            parse_setting(bad)


def test_modes() -> None:
    assert parse_mode("naive").base == "rtn"
    assert parse_mode("insertquant").ranges == "iq"
    assert parse_mode("insertquant:insert").level == 3
    assert parse_mode("quarot-rtn+pac").pac and not parse_mode("insertquant-fp").quantized
    with pytest.raises(PacimError, match="unknown mode"):
        parse_mode("insertquant:bogus")


# ---- quantizers -----------------------------------------------------------------------------
@pytest.mark.parametrize("bits, pc, sym", [(4, True, True), (8, True, True), (4, False, False),
                                           (4, True, False), (3, False, True)])
def test_weight_quantizers_and_macro(bits: int, pc: bool, sym: bool) -> None:
    rng = np.random.default_rng(bits)
    w = rng.normal(size=(12, 64)) * rng.uniform(0.1, 3, size=(12, 1))
    cw = quantize_weight(w, bits, per_channel=pc, symmetric=sym)
    step = cw.step if pc else np.full(12, cw.step[0])
    assert np.all(np.abs(cw.dequantize() - w).max(axis=1) <= step / 2 * 1.0001 + 1e-6)
    assert int(cw.codes.max()) < (1 << bits)
    x = rng.normal(size=(9, 64)).astype(np.float32)
    qx = static_codes(x, bits, *static_qparams(float(x.min()), float(x.max()), bits))
    ref = qx.dequantize() @ cw.dequantize().astype(np.float64).T
    y, _ = macro_linear(linear_quantized, qx, cw, bits, False)  # operand = bits: exact
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_group_kv_codes() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3, 24))
    g = group_codes(x, 4, 8)
    assert g.q.shape == (5, 3, 3, 8)
    assert np.abs(g.dequantize() - x).max() <= g.step.max() / 2 + 1e-6
    assert group_codes(x, 4, 128).q.shape == (5, 3, 1, 24)  # a group never spans two heads
    assert np.allclose(group_codes(x, 16, 8).dequantize(), x, atol=1e-3)


def test_mse_clip() -> None:
    rng = np.random.default_rng(1)
    heavy = rng.normal(size=(512, 16))
    heavy[3, 5] = 60.0  # one outlier sets the range: clipping it is far cheaper in MSE
    lo, hi, f = cal.mse_clip(heavy, float(heavy.min()), float(heavy.max()), 4)
    assert f <= 0.35 and hi < 60.0
    flat = rng.uniform(-1, 1, size=(512, 16))
    assert cal.mse_clip(flat, -1.0, 1.0, 4)[2] >= 0.9


def test_template_matching() -> None:
    tpl = SinkTemplates((2, 3), np.zeros((2, 2, 1, 4)), np.zeros((2, 2, 1, 4)),
                        np.array([[0.0, 0.0], [10.0, 10.0]]), np.zeros((2, 5)))  # fmt: skip
    assert list(tpl.match(np.array([[9.0, 9.0], [1.0, 1.0]]))) == [0, 1]  # K sinks: in order
    assert list(tpl.match(np.array([[9.0, 9.0]]))) == [1]  # else nearest MSE
    assert list(tpl.match(np.array([[1.0, 0.0], [8.0, 9.0], [0.0, 1.0]]))) == [0, 1, 0]
    assert cal.detection_agreement([{1, 2}], [{2, 3}]) == pytest.approx(1 / 3)


def test_rope_at_inverts(spiky: Path) -> None:
    m, _ = get_model(str(spiky))
    x = np.random.default_rng(0).normal(size=(7, 2, 8)).astype(np.float32)
    pos = np.arange(7)
    assert np.allclose(m.rope_at(x, pos), m.rope(x), atol=1e-6)
    assert np.allclose(m.rope_at(m.rope_at(x, pos), pos, inverse=True), x, atol=1e-5)


# ---- INSERTQUANT on the spiky model ----------------------------------------------------------
def test_sinks_found_from_calibration(spiky: Path, texts: tuple[Path, Path]) -> None:
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    c = get_calibration(str(spiky), w, parse_setting("w8a8skv8"), prefix=True)
    p = c.phases
    assert p is not None and (p.birth, p.cancel) == (BIRTH, LAYERS4 - 1)
    assert c.info["sink_counts"] == {1: 4, 2: 2}  # position 0 everywhere, token 0 twice more
    assert c.info["sink_positions"] == [0, 11]
    assert c.templates.count == 1 and c.templates.layers == tuple(range(BIRTH + 1, LAYERS4))
    assert c.info["r_correct"] == 1.0
    assert c.prefix == (0,)  # <|endoftext|>, the model's document separator
    # the cache round-trips every range, the phases and the templates
    cal.save(c, Path(str(spiky) + ".calib.npz"))
    back = cal.load(Path(str(spiky) + ".calib.npz"), c.setting)
    assert back.ranges == c.ranges and back.phases == c.phases and back.prefix == c.prefix
    assert np.array_equal(back.templates.k, c.templates.k)


def test_insertquant_removes_the_spike(spiky: Path, texts: tuple[Path, Path]) -> None:
    modes = ("fp", "rtn", "quarot-rtn", "prefixquant", "prefixquant-fp", "insertquant-fp",
             "insertquant:detect", "insertquant:clamp", "insertquant:insert",
             "insertquant:restore", "insertquant", "insertquant-norm", "insertquant+pac")
    res = evaluate(_cfg(spiky, texts, setting="w8a8skv8", modes=modes))
    ppl = res["perplexity"]
    assert set(ppl) == set(modes) and res["setting"]["label"] == "W8A8sKV8"
    assert all(np.isfinite(v) for v in ppl.values())
    assert res["modes"]["insertquant"]["spike_tokens_detected"] == 6 + 2
    assert res["max_ratio_before"] > 50 and res["max_ratio_after"] < 50
    # the sink's K/V are bias vectors: templates in FP cost (almost) nothing
    assert abs(res["modes"]["insertquant-fp"]["vs_fp"]) < 0.01


def test_insertquant_beats_rtn_on_semantic_tokens(spiky: Path, texts: tuple[Path, Path]) -> None:
    """A random model's perplexity says little: compare hidden states with FP instead."""
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    ev = calibration_windows(tok, str(texts[0]), ctx=32, tokens=192)
    s = parse_setting("w8a8skv8")
    c = get_calibration(str(spiky), w, s, prefix=True)
    err = {}
    for mode in ("rtn", "quarot-rtn", "insertquant"):
        hooks = QuantHooks(c, get_weights(str(spiky), s, c.rotation if mode != "rtn" else "none"),
                           mode)  # fmt: skip
        e = []
        for seq in ev:
            ref, got = m.hidden(seq), m.hidden(seq, hooks)
            sem = seq != 0  # semantic tokens: not <|endoftext|>
            e.append(np.sum((got - ref)[sem] ** 2) / np.sum(ref[sem] ** 2))
        err[mode] = float(np.mean(e))
    assert err["insertquant"] < err["quarot-rtn"] / 3 and err["insertquant"] < err["rtn"] / 3


def test_sixteen_bits_is_float(spiky: Path, texts: tuple[Path, Path]) -> None:
    """At 16 bits, calibrated on the evaluation text itself (so no static range clips), the
    quantizers vanish: each method equals its float structure."""
    modes = ("fp", "rtn", "quarot-rtn", "prefixquant", "prefixquant-fp", "insertquant-fp",
             "insertquant:restore")
    res = evaluate(_cfg(spiky, texts, setting="w16a16skv16", modes=modes, calib=str(texts[0])))
    ppl = res["perplexity"]
    # (rtn's 16-bit ranges still hold the spike: steps of ~1e-2, so a looser bound; so do
    # prefixquant's, since token 0 in mid-window spikes again in this model)
    assert ppl["rtn"] == pytest.approx(ppl["fp"], rel=1e-2)
    assert ppl["quarot-rtn"] == pytest.approx(ppl["fp"], rel=1e-2)
    assert ppl["prefixquant"] == pytest.approx(ppl["prefixquant-fp"], rel=1e-2)
    assert ppl["insertquant:restore"] == pytest.approx(ppl["insertquant-fp"], rel=1e-3)


def test_kv_cache_hook(spiky: Path, texts: tuple[Path, Path]) -> None:
    """The quantized K/V codes reach capture_bmm; group-wise dynamic KV runs too."""
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    for spec, kind in (("w8a8skv4", "QTensor"), ("w8a8gkv4:g4", "GroupCodes")):
        s = parse_setting(spec)
        c = get_calibration(str(spiky), w, s)
        seen: list = []
        hooks = QuantHooks(c, get_weights(str(spiky), s, "hadamard"), "insertquant",
                           capture_bmm=lambda la, q, k, v, seen=seen: seen.append((la, k, v)))
        m.nll(w[0], hooks)
        assert [x[0] for x in seen] == list(range(LAYERS4))
        assert type(seen[0][1]).__name__ == kind and int(seen[0][1].q.max()) < 16


def test_sink_kv_bypasses_the_kv_quantizer(spiky: Path, texts: tuple[Path, Path]) -> None:
    """insertquant: position 0's K/V stay float from layer 0 on (before the birth too);
    insertquant-persist (the literal reading) quantizes them outside the persistence phase."""
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    s = parse_setting("w8a8skv4")
    c = get_calibration(str(spiky), w, s)
    rows: dict[str, dict[int, int]] = {}
    for mode in ("insertquant", "insertquant-persist", "insertquant:clamp"):
        seen: dict[int, int] = {}
        hooks = QuantHooks(c, get_weights(str(spiky), s, "hadamard"), mode,
                           capture_bmm=lambda la, q, k, v, seen=seen: seen.setdefault(
                               la, k.q.shape[0]))  # fmt: skip
        m.nll(w[0], hooks)
        rows[mode] = seen
    t = w[0].size
    assert rows["insertquant"][0] == t - 1 and rows["insertquant"][BIRTH] == t - 1
    assert rows["insertquant-persist"][0] == t and rows["insertquant:clamp"][0] == t
    # after the birth every detected sink (here 2) bypasses the quantizer
    assert rows["insertquant"][BIRTH + 1] == t - 2


def test_weights_must_match_rotation(spiky: Path, texts: tuple[Path, Path]) -> None:
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    s = parse_setting("w8a8skv8:g64")  # a setting no other test calibrates with a prefix
    c = get_calibration(str(spiky), w, s)
    with pytest.raises(PacimError, match="needs weights with rotation"):
        QuantHooks(c, get_weights(str(spiky), s, "none"), "insertquant")
    with pytest.raises(PacimError, match="needs weights with rotation"):
        QuantHooks(c, get_weights(str(spiky), s, "hadamard"), "rtn")
    with pytest.raises(PacimError, match="no 'prefix' ranges"):
        QuantHooks(c, get_weights(str(spiky), s, "hadamard"), "prefixquant")


# ---- the second evaluation text -----------------------------------------------------------
def test_handbook_paragraphs(tmp_path: Path) -> None:
    from pacim.llm.texts import handbook_text

    para = ('<div class="para">\n\t\tThe quick <em>brown</em> fox jumps over the lazy dog '
            'number {i}.<pre>$ apt-get install fox</pre>\n</div>')  # fmt: skip
    (tmp_path / "index.html").write_text('<a href="a.html">A</a><a href="b.html#x">B</a>'
                                         '<a href="a.html">A again</a>')  # fmt: skip
    (tmp_path / "a.html").write_text("".join(para.format(i=i) for i in range(60)))
    (tmp_path / "b.html").write_text('<div class="para">too short</div>' +
                                     "".join(para.format(i=100 + i) for i in range(60)))
    text = handbook_text(tmp_path)
    paras = text.strip().split("\n\n")
    assert len(paras) == 120 and paras[0] == "The quick brown fox jumps over the lazy dog number 0."
    assert "apt-get" not in text and "too short" not in text
    assert paras[60].endswith("number 100.")  # book order: a.html, then b.html


def test_named_text_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import pacim.llm.texts as texts

    with pytest.raises(PacimError, match="unknown text"):
        texts.fetch_text("war-and-peace")
    monkeypatch.setattr(texts.shutil, "which", lambda name: None)
    with pytest.raises(PacimError, match="apt-get and dpkg-deb are needed"):
        texts.fetch_text("debian-handbook")
    assert texts.resolve_text("my.txt") == "my.txt" and texts.resolve_text(None) is None


def test_bos_windows_and_prefix() -> None:
    from pacim.llm.eval import make_windows
    from pacim.llm.insertquant.prefix import with_prefix

    ids = np.arange(2, 40)
    w = make_windows(np.concatenate([[1], ids]), 8, None, "t", bos=1)  # text's own BOS dropped
    assert len(w) == 5 and all(x[0] == 1 and x.size == 8 for x in w)
    assert np.array_equal(w[1][1:], ids[7:14])
    assert make_windows(ids, 8, 15, "t", bos=1)[-1][-1] == ids[13]  # 15 tokens: two windows
    with pytest.raises(PacimError, match="fewer than the context"):
        make_windows(ids[:5], 8, None, "t", bos=1)
    assert np.array_equal(with_prefix(np.array([1, 5, 6]), (1,)), [1, 5, 6])  # BOS: not again
    assert np.array_equal(with_prefix(np.array([5, 6]), (0,)), [0, 5, 6])
