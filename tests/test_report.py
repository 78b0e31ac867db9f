"""The report package: JSON/CSV forms, the text table, output-file checks, and the figures."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pytest

from pacim.arch import load_arch
from pacim.energy import energy_report, layer_energy
from pacim.errors import PacimError
from pacim.report import (
    Report,
    check_writable,
    flatten,
    format_table,
    json_safe,
    summary_text,
    write_text,
)
from pacim.report.plots import number, plot_report_layers
from pacim.sched.counts import LayerCounts, empty_traffic


def _counts(**kw: object) -> LayerCounts:
    """A hand-built layer with every count non-zero."""
    base: dict[str, object] = dict(
        name="l0", cycles=1000, compute_cycles=800, stall_cycles={"memory": 200},
        bank_utilization=0.5, passes=1, weight_reloads=0, vector_tiles=10,
        bit_serial_cycles_baseline=640, bit_serial_cycles=160, column_cycles=1000,
        active_row_cycles=10_000, bpbs_conversions=100, pac_ops=50, encoder_bits=800,
        weight_bits_written=4096, psum_bits=64, reads_bits=empty_traffic(),
        writes_bits=empty_traffic())
    base.update(kw)
    return LayerCounts(**base)  # type: ignore[arg-type]


def _report() -> Report:
    layers = [
        {"name": "conv1", "kind": "conv2d", "macs": 1000, "mapped": True,
         "digital_cycles_mean": 16.0, "accuracy": {"sqnr_db": 12.5}, "cycles": 100,
         "stall_cycles": {"memory": 5, "total": 5},
         "memory": {"reads_bits": 2_000_000, "writes_bits": 1_000_000},
         "energy_pj": 3e6, "energy_breakdown_pj": {"dcim_and": 1e6, "mem_main": 2e6},
         "cycle_hist": {"16": 4}},
        {"name": "qk", "kind": "matmul", "macs": 10, "mapped": False},
    ]
    summary = {"arch": "chip", "workload": "net", "data": True, "macs": 1010,
               "mapped_macs": 1000, "ops": 2000, "energy_pj": 3e6, "tops_per_w": float("nan"),
               "bit_serial_cycles": {"baseline": 64, "actual": 16, "reduction": 0.75},
               "accuracy": {"output_rmse_vs_exact": 0.1, "sqnr_db": math.inf}}
    return Report(summary, layers)


def test_json_is_the_dict_with_non_finite_floats_as_null() -> None:
    rep = _report()
    d = rep.to_dict()
    assert d["tops_per_w"] is None and d["accuracy"]["sqnr_db"] is None
    assert json.loads(rep.to_json()) == d
    assert json_safe((1.0, float("-inf"))) == [1.0, None]


def test_csv_has_one_flat_row_per_layer(tmp_path: Path) -> None:
    rep = _report()
    out = tmp_path / "l.csv"
    assert rep.to_csv(out) == out  # given a path: written there, the path returned
    text = rep.to_csv()
    assert out.read_bytes().decode() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == ["conv1", "qk"]
    assert rows[0]["memory.reads_bits"] == "2000000"
    assert json.loads(rows[0]["cycle_hist.16"]) == 4
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": "[1, 2]"}


def test_text_table_and_summary() -> None:
    d = _report().to_dict()
    text = format_table(d)
    head = text.splitlines()[0]
    assert head.split()[:3] == ["layer", "kind", "MACs"] and "energy uJ" in head
    conv1 = next(ln for ln in text.splitlines() if ln.startswith("conv1"))
    assert "1,000" in conv1 and "2" in conv1 and "3" in conv1  # MACs, Mbit, uJ
    assert "not mapped" in next(ln for ln in text.splitlines() if ln.startswith("qk"))
    s = summary_text(d)
    assert "reduction 75%" in s and "workload net" in s
    assert text.endswith(s) and _report().table() == text


def test_output_files_fail_early_with_one_line(tmp_path: Path) -> None:
    check_writable(None)
    check_writable(tmp_path / "new.json")  # a new file in a writable directory
    assert not (tmp_path / "new.json").exists()  # checked without creating it
    with pytest.raises(PacimError, match="is a directory"):
        check_writable(tmp_path)
    with pytest.raises(PacimError, match="does not exist"):
        check_writable(tmp_path / "missing" / "r.json")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PacimError, match="permission denied"):
            check_writable(ro / "r.json")
    with pytest.raises(PacimError, match="cannot write"):
        write_text(tmp_path / "missing" / "r.json", "x")


def test_number_accepts_finite_numbers_only() -> None:
    assert number(3) == 3.0 and number(2.5) == 2.5
    assert number(True) is None and number("1") is None and number(math.nan) is None


def test_plot_report_layers(tmp_path: Path) -> None:
    out = tmp_path / "layers.png"
    plot_report_layers(_report().to_dict(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PacimError, match="no per-layer"):
        plot_report_layers({"layers": []}, out)
    with pytest.raises(PacimError, match="cannot write the figure"):
        plot_report_layers(_report().to_dict(), tmp_path / "missing" / "x.png")


def test_plot_energy_breakdown(tmp_path) -> None:
    from pacim.report.plots import plot_energy_breakdown

    a = load_arch("pacim_65nm")
    cs = [_counts(name=f"l{i}", cycles=1000 * (i + 1)) for i in range(3)]
    rep = energy_report(a, cs, macs=10**9)
    rep["layers"] = [{"name": c.name, "energy_breakdown_pj": layer_energy(a, c)} for c in cs]
    out = plot_energy_breakdown(rep, tmp_path / "e.png")
    assert out.stat().st_size > 1000


def test_to_json_and_to_csv_return_the_path_when_given_one(tmp_path: Path) -> None:
    rep = _report()
    assert rep.to_json(tmp_path / "r.json") == tmp_path / "r.json"
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(rep.to_json())
    assert isinstance(rep.to_json(), str) and isinstance(rep.to_csv(), str)


def test_summary_in_engineering_units_with_clock_and_legend() -> None:
    from pacim.pipeline import simulate
    from pacim.workloads import load_workload

    arch = load_arch("pacim_65nm", {"technology.vdd": 0.9})
    d = simulate(arch, load_workload("resnet18-cifar", data=False), data=False).to_dict()
    s = summary_text(d)
    mem = d["memory"]
    assert f"energy {d['energy_pj'] / 1e6:.4g} uJ" in s and " pJ" not in s
    assert f"latency {d['latency_s'] * 1e3:.4g} ms" in s
    assert (f"reads {mem['reads_bits'] / 1e6:.4g} Mbit  writes {mem['writes_bits'] / 1e6:.4g} "
            "Mbit") in s
    f_mhz = arch.technology.freq_hz / 1e6
    assert f"clock {f_mhz:.4g} MHz at VDD 0.9 V" in s
    assert abs(d["cycles"] / d["latency_s"] / 1e6 - f_mhz) < 1e-9 * f_mhz  # the clock used
    table = format_table(d)
    assert "dig.cyc: mean digital bit-serial cycles" in table and "stalls: cycles" in table
