"""Phase sweeps: grid keys that are run options (context, tokens, phase), not arch keys; their
records, resume, errors, and the context figure with its crossover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pacim.arch import load_arch
from pacim.cli.main import main
from pacim.errors import PacimError
from pacim.phase import simulate_phase
from pacim.sweeps import SerialExecutor, read_records, sweep
from pacim.sweeps.context_plot import context_series, crossover

WL = "llm-layer"
CONTEXTS = [16, 64, 256]


def _arch() -> Any:
    return load_arch("pacim_65nm", {"attention.mapping": "cim"})


class _NoRun(SerialExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a resumed sweep ran a point again")


def test_context_grid_runs_the_phase_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ctx.jsonl"
    grid = {"context": CONTEXTS, "macro.banks": [8, 16]}
    recs = sweep(_arch(), grid, [WL], data=False, executor=SerialExecutor(), out=out,
                 run={"phase": "decode", "tokens": 3})
    assert [r["status"] for r in recs] == ["ok"] * 6
    assert len({r["key"] for r in recs}) == 6
    for r in recs:  # each record is simulate_phase of its point, figure for figure
        arch = load_arch("pacim_65nm", {"attention.mapping": "cim",
                                        "macro.banks": r["macro.banks"]})
        ph = simulate_phase(arch, WL, "decode", context=r["context"], tokens=3).summary
        assert (r["phase"], r["tokens"]) == ("decode", 3)
        assert r["energy_pj"] == pytest.approx(ph["energy_pj"], rel=1e-12)
        assert r["cycles"] == ph["cycles"]
        p = ph["phase"]
        assert r["tokens_per_s"] == pytest.approx(p["tokens_per_s"], rel=1e-12)
        assert r["energy_per_token_pj"] == pytest.approx(p["energy_per_token_pj"], rel=1e-12)
        assert r["kv_reads_bits_per_token"] == p["traffic_by_kind"]["kv_reads_bits"] / 3
        assert r["weight_reads_bits_per_token"] == (
            p["traffic_by_kind"]["weights"]["reads_bits"] / 3)
    # KV reads grow with the context, the weight reads do not
    kv = [r["kv_reads_bits_per_token"] for r in recs if r["macro.banks"] == 16]
    assert kv == sorted(kv) and kv[0] < kv[-1]
    assert len({r["weight_reads_bits_per_token"] for r in recs if r["macro.banks"] == 16}) == 1
    again = sweep(_arch(), grid, [WL], data=False, executor=_NoRun(), out=out,
                  run={"phase": "decode", "tokens": 3})
    assert [r["key"] for r in again] == [r["key"] for r in recs]
    # tokens and phase are grid keys too; another run option is another point
    more = sweep(_arch(), {"tokens": [3, 4], "phase": ["prefill", "decode"]}, [WL], data=False,
                 executor=SerialExecutor(), run={"context": 16})
    assert len({r["key"] for r in more}) == 4
    assert {(r["phase"], r["tokens"]) for r in more} == {
        (p, t) for p in ("prefill", "decode") for t in (3, 4)}
    # the key hashes the resolved point: the same run reached through other keys is the same
    same = next(r for r in recs if r["context"] == 16 and r["macro.banks"] == 16)
    assert [r["key"] for r in more if (r["phase"], r["tokens"]) == ("decode", 3)] == [
        same["key"]]


def test_phase_sweep_errors() -> None:
    arch = _arch()
    with pytest.raises(PacimError, match="need a phase"):
        sweep(arch, {"context": [1, 2]}, [WL], data=False, executor=SerialExecutor())
    with pytest.raises(PacimError, match="needs --no-data"):
        sweep(arch, {"context": [1]}, [WL], data=True, executor=SerialExecutor(),
              run={"phase": "decode", "tokens": 2})
    with pytest.raises(PacimError, match="needs tokens"):
        sweep(arch, {"context": [1]}, [WL], data=False, executor=SerialExecutor(),
              run={"phase": "decode"})
    with pytest.raises(PacimError, match="context must be an integer >= 0"):
        sweep(arch, {"context": [-1]}, [WL], data=False, executor=SerialExecutor(),
              run={"phase": "decode", "tokens": 2})
    with pytest.raises(PacimError, match="phase must be one of"):
        sweep(arch, {"phase": ["train"]}, [WL], data=False, executor=SerialExecutor(),
              run={"tokens": 2})
    with pytest.raises(PacimError, match="not an LLM workload"):
        sweep(arch, {"context": [1]}, ["resnet18-cifar"], data=False,
              executor=SerialExecutor(), run={"phase": "decode", "tokens": 2})


def test_crossover_closed_form() -> None:
    def pt(c: float, kv: float) -> dict[str, float]:
        return {"context": c, "kv_reads_bits_per_token": kv, "weight_reads_bits_per_token": 10.0}

    # KV reads 4 at context 100, 16 at 400: they reach 10 at 100 + 300 * 6 / 12 = 250
    assert crossover([pt(100, 4), pt(400, 16)]) == pytest.approx(250.0)
    assert crossover([pt(100, 4), pt(400, 8)]) is None
    assert crossover([pt(100, 12), pt(400, 16)]) == 100


def test_cli_context_sweep_and_plot(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ctx.jsonl"
    args = ["--arch", "pacim_65nm", "--set", "attention.mapping=cim", "--workload", WL,
            "--no-data", "--phase", "decode", "--tokens", "2", "--grid",
            "context=" + ",".join(map(str, CONTEXTS)), "--out", str(out), "--workers", "0"]
    r = runner.invoke(main, ["sweep"] + args)
    assert r.exit_code == 0, r.output
    recs = read_records(out)
    assert sorted(x["context"] for x in recs) == CONTEXTS
    series = context_series(recs)
    assert [p["context"] for p in next(iter(series.values()))] == CONTEXTS
    png = tmp_path / "ctx.png"
    r = runner.invoke(main, ["plot", str(out), "--context", "-o", str(png)])
    assert r.exit_code == 0, r.output
    assert png.stat().st_size > 1000 and "3 points in 1 series" in r.output
    # a grid context without a phase is one clear error (exit 2)
    bad = [a for a in args if a not in ("--phase", "decode")]
    r = runner.invoke(main, ["sweep"] + bad + ["--fresh"])
    assert r.exit_code == 2 and "need a phase" in r.output
    # --context on a sweep without phase figures
    plain = tmp_path / "plain.jsonl"
    r = runner.invoke(main, ["sweep", "--arch", "pacim_65nm", "--workload", WL, "--no-data",
                             "--grid", "macro.banks=8,16", "--out", str(plain), "--workers",
                             "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["plot", str(plain), "--context", "-o", str(png)])
    assert r.exit_code == 2 and "--context plots a sweep run with --phase" in r.output
