"""Spike-aware calibration's R_correct rejection, and group-wise dynamic KV end to end, on the
tiny spiky GGUF of tests.llm_fixtures (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from pacim.llm.calibration import get_calibration, get_model, get_weights  # noqa: E402
from pacim.llm.eval import calibration_windows, evaluate  # noqa: E402
from pacim.llm.insertquant import QuantHooks  # noqa: E402
from pacim.llm.insertquant import calibrate as cal  # noqa: E402
from pacim.llm.settings import parse_setting  # noqa: E402
from tests.llm_fixtures import BIRTH, spiky_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("pacim_cache")
_cfg = spiky_config


def test_detection_agreement_is_pooled_jaccard() -> None:
    assert cal.detection_agreement([{0}, {0, 5}], [{0}, {0}]) == pytest.approx(2 / 3)
    assert cal.detection_agreement([set()], [set()]) == 1.0
    assert cal.detection_agreement([{0}], [{3}]) == 0.0


def test_rejection_resets_the_clipping_up_to_the_detection(
    spiky: Path, texts: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With R_correct below the bar, every clipping factor of layers 0..birth+1 goes back to the
    unclipped semantic range; later layers keep theirs; the agreement is measured again."""
    _, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    s = parse_setting("w4a4skv4")
    kept = get_calibration(str(spiky), w, s)
    assert kept.info["r_correct"] == 1.0 and kept.info["rejected_layers"] == []
    monkeypatch.setenv("PACIM_CALIB_CACHE", "0")
    monkeypatch.setattr(cal, "R_CORRECT_MIN", 1.01)  # any agreement is now too little
    from pacim.llm import calibration as calmod

    monkeypatch.setattr(calmod, "_CALIBRATED", {})
    rej = get_calibration(str(spiky), w, s)
    assert rej.info["rejected_layers"] == list(range(BIRTH + 2))
    # measured again after the reset (a key only a rejection writes); the sinks still agree
    assert "r_correct_after_reject" not in kept.info and rej.info["r_correct_after_reject"] == 1.0
    up = [k for k in rej.ranges["iq"] if k[0] <= BIRTH + 1]
    down = [k for k in rej.ranges["iq"] if k[0] > BIRTH + 1]
    assert up and down
    assert all(rej.ranges["iq"][k] == rej.ranges["sem"][k] for k in up)
    assert all(rej.ranges["iq"][k] == kept.ranges["iq"][k] for k in down)
    # the search did clip somewhere upstream, so the rejection changed something
    assert any(kept.ranges["iq"][k] != kept.ranges["sem"][k] for k in up)


def test_group_wise_dynamic_kv_end_to_end(spiky: Path, texts: tuple[Path, Path]) -> None:
    """gKV runs through evaluate; its error on semantic tokens falls with the KV bits."""
    res = evaluate(_cfg(spiky, texts, setting="w8a8gkv4:g4", modes=("fp", "insertquant")))
    assert res["setting"]["kv"] == "group" and np.isfinite(res["perplexity"]["insertquant"])
    m, tok = get_model(str(spiky))
    w = calibration_windows(tok, str(texts[1]), ctx=32, tokens=192)
    ev = calibration_windows(tok, str(texts[0]), ctx=32, tokens=192)
    err = {}
    for bits in (3, 8):
        s = parse_setting(f"w16a16gkv{bits}:g4")
        c = get_calibration(str(spiky), w, s)
        hooks = QuantHooks(c, get_weights(str(spiky), s, c.rotation), "insertquant")
        e = [np.sum((m.hidden(q, hooks) - m.hidden(q))[q != 0] ** 2) for q in ev]
        err[bits] = float(np.sum(e))
    assert err[8] < err[3] / 10
