"""The result-regression harness: it catches a broken model, and results are deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_results
from benchmarks.common import Check

RUN = [("resnet18-cifar", {}, "pacim_65nm")]
KEY = bench_results.run_key(*RUN[0])


@pytest.fixture(scope="module")
def expected():
    data = json.loads(bench_results.EXPECTED.read_text())
    assert KEY in data, "benchmarks/expected.json lacks the resnet18-cifar pacim_65nm run"
    return {KEY: data[KEY]}


def test_current_model_matches_expected(expected):
    checks = bench_results.compare(bench_results.compute(RUN), expected)
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]


def test_pac_counts_off_by_one_fails_the_regression(expected, monkeypatch):
    import pacim.macro.core as core

    real = core.approx_factors

    def broken(approx, nd, sx, *rest):  # every activation plane count one too high
        return real(approx, nd, np.asarray(sx) + 1, *rest)

    monkeypatch.setattr(core, "approx_factors", broken)
    checks = bench_results.compare(bench_results.compute(RUN), expected)
    failed = [c.name for c in checks if not c.ok]
    assert any("sqnr_db" in name for name in failed), failed


def test_results_are_deterministic():
    a = bench_results.compute(RUN)
    b = bench_results.compute(RUN)
    assert a == b


def test_compare_flags_missing_and_changed_figures():
    exp = {"r": {"cycles": 100, "energy_pj": 5.0}}
    assert all(c.ok for c in bench_results.compare({"r": {"cycles": 100, "energy_pj": 5.0}}, exp))
    bad = bench_results.compare({"r": {"cycles": 102, "energy_pj": None}}, exp)
    assert [c.ok for c in bad] == [False, False]
    assert Check("x", 2.0, "<=", 1.0).ok is False


def test_with_joins_earlier_full_runs_and_refuses_quick_ones(tmp_path):
    """`--with FILE`: an earlier full run's benchmarks join this run's results (this run wins);
    a --quick run's results are refused (a report needs full runs)."""
    from benchmarks.__main__ import main

    full = {"bench_x": {"figures": {"a": 1.0}, "checks": [], "seconds": 1.0, "quick": False}}
    quick = {"bench_y": {"figures": {}, "checks": [], "seconds": 1.0, "quick": True}}
    (tmp_path / "full.json").write_text(json.dumps(full))
    (tmp_path / "quick.json").write_text(json.dumps(quick))
    out = tmp_path / "out.json"
    assert main(["--only", "none", "--with", str(tmp_path / "full.json"), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == full
    with pytest.raises(SystemExit, match="bench_y comes from a --quick run"):
        main(["--only", "none", "--with", str(tmp_path / "quick.json"), "--out", str(out)])
    with pytest.raises(SystemExit, match="cannot read benchmark results"):
        main(["--only", "none", "--with", str(tmp_path / "missing.json"), "--out", str(out)])


def test_llm_report_renders_attention_on_pac():
    from benchmarks.bench_llm import report_lines

    layers = [{"layer": 0, "qk_sqnr_db": 31.25, "pv_sqnr_db": None},
              {"layer": 1, "qk_sqnr_db": 40.0, "pv_sqnr_db": 14.9}]  # fmt: skip
    att = {"setting": "W8A8sKV8", "operand": 7, "bits": 8, "fp": 20.0, "ppl": 20.8,
           "ppl_linear_only": 20.6, "layers": layers, "qk_sqnr_db_min": 31.25,
           "pv_sqnr_db_min": 14.9}  # fmt: skip
    fp = {"fp": 20.0}
    table = {s: {"label": s.upper(), "ppl": fp} for s in ("w4a4skv4", "w8a8skv8")}
    text = "\n".join(report_lines({"table": table, "attention_pac": att}))
    assert "| on PAC, as the linear layers | 20.80 | +4.0% |" in text
    assert "| exact (the linear layers on PAC) | 20.60 | +3.0% |" in text
    assert "| 0 | 31.2 | exact |" in text and "worst PV 14.9" in text
    assert "Attention on the CiM" not in "\n".join(report_lines({"table": table}))


def test_llm_bench_assembles_its_figures(monkeypatch, tmp_path):
    """bench_llm's run() and report on a fake evaluate (the real one takes ~30 min)."""
    import benchmarks.bench_llm as bl
    import pacim.llm.eval as ev
    import pacim.llm.gguf_io as gio

    calls = []

    def fake_evaluate(cfg):
        calls.append(cfg)
        ppl = {m: 30.0 + cfg.operand + len(m) / 10 for m in cfg.modes}
        modes = {m: {"seconds": 1.0} for m in cfg.modes}
        if cfg.attention_pac:
            modes["insertquant+pac"]["attention_pac"] = {
                "bits": 8, "layers": [{"layer": 0, "qk_sqnr_db": 30.0, "pv_sqnr_db": 15.0}],
                "qk_sqnr_db_min": 30.0, "pv_sqnr_db_min": 15.0}  # fmt: skip
        return {"perplexity": ppl, "modes": modes, "setting": {"label": cfg.setting.upper()},
                "calibration_seconds": 0.0, "spike_plan": {}, "max_ratio_before": 1.0,
                "text": "t"}  # fmt: skip

    def fake_cli(calib_dir, out):
        out.write_text('{"perplexity": {"fp": 1.0}, "setting": {}}')
        return 1.0

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(gio, "fetch_model", lambda: None)
    monkeypatch.setattr(gio, "load_gguf", lambda p: None)
    monkeypatch.setattr(bl, "_timed_cli", fake_cli)
    book = tmp_path / "book.txt"
    book.write_text("x" * (bl.CALIB_TAIL + 10))
    import pacim.llm.texts as tx

    monkeypatch.setattr(tx, "fetch_text", lambda name: book)
    res = bl.run()
    fig = res.figures
    assert fig["cli_perplexity"] == {"fp": 1.0}  # the CLI's JSON, not a later run's
    assert set(fig["cim"]) == set(bl.CIM_OPERANDS)
    assert list(fig["pac"]["w8a8skv8"]) == ["mode", "5", "6", "7"]
    assert fig["attention_pac"]["ppl_linear_only"] == fig["pac"]["w8a8skv8"]["7"]
    assert any(c.attention_pac for c in calls)
    text = "\n".join(bl.report_lines(fig))
    assert "| insertquant+pac | " in text and "W8A8SKV8, operand 7" in text
    assert "| w4a8skv8 | insertquant+pac | 5: " in text
    assert len(res.checks) == 7
    assert calls[-1].calib and calls[-1].text == bl.SECOND_TEXT
    assert "on the book's own last 12,000 characters" in text


def test_phase_report_names_each_chips_bits():
    from benchmarks.phase_report import section

    row = {k: 1.0 for k in ("tokens_per_s", "energy_per_token_uj", "tops_per_w",
                            "weight_reloads_per_step", "weight_load_share",
                            "weight_read_mbit_per_token", "kv_read_mbit_per_token")}  # fmt: skip
    table = {"m@chip_a/cim": {"bits": "W8A8KV8", "prefill": row, "decode": row},
             "m@chip_b/cim": {"bits": "W1A1KV1", "prefill": row, "decode": row}}  # fmt: skip
    text = "\n".join(section({"table": table, "table_setup": {}}))
    assert "chip_a W8A8KV8, chip_b W1A1KV1" in text
    assert "| m@chip_b/cim | W1A1KV1 | decode |" in text


def test_fashion_report_explains_one_class_baselines_only_at_chance():
    from benchmarks.fashion_report import _table

    def table(trunc):
        top = {"float": 0.93, "truncate": trunc, "expected": 0.1}
        return {"pac": {"images": 10, "thresholds": (1, 2, 3), "top1": top,
                        "agreement_with_float": {}, "s_per_image": dict.fromkeys(top, 1e-3)}}

    assert "one-class score" in "\n".join(_table(table(0.1)))
    assert "one-class score" not in "\n".join(_table(table(0.4)))
