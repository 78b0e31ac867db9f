"""The area model (pacim/energy/area.py): geometry x area table -> mm^2, and where it shows up."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import pacim
from pacim.arch import load_arch
from pacim.cli.main import main
from pacim.energy import chip_area, peak_figures
from pacim.errors import ConfigError
from pacim.pipeline import simulate
from pacim.sweeps import mark_pareto, pareto_front, pareto_front_nd
from pacim.sweeps.run import SerialExecutor, sweep

CHIPS = ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm")


def _v(arch, name: str) -> float:
    """An entry's um^2 (0 when absent), read straight from the arch."""
    e = arch.area.buffers if name.startswith("buffers.") else arch.area
    e = getattr(e, name.split(".")[-1])
    return 0.0 if e is None else e.value


def reference_chip_um2(arch) -> float:
    """The chip's area written out literally from the geometry (no pacim.energy code)."""
    m, p, a = arch.macro, arch.pac, arch.area
    serial = m.kind == "bit_serial"
    if serial:
        planes = a.weight_planes or (m.wbit if (not p.enabled or p.first_layer_exact)
                                     else min(p.operand, m.wbit))
        tree = 0  # balanced tree of ripple adders, level by level (rows a power of two here)
        width, n = 1, m.rows
        while n > 1:
            n //= 2
            tree += n * width
            width += 1
        acc = math.ceil(math.log2(m.rows + 1)) + m.xbit + m.wbit
        bank = (m.rows * m.cols * planes * _v(arch, "bitcell") + m.cols * tree
                * _v(arch, "full_adder") + m.cols * acc * _v(arch, "accumulator_bit")
                + (m.rows + m.cols) * _v(arch, "driver"))
        outputs = m.cols
    else:
        outputs = math.ceil(m.cols / a.columns_per_adc)
        bank = (m.rows * m.cols * _v(arch, "bitcell") + outputs * _v(arch, "adc")
                + (m.rows + m.cols) * _v(arch, "driver"))
    bank *= (1 + _v(arch, "periphery_overhead")) * (_v(arch, "bank_scale") or 1.0)
    total = m.banks * bank
    if p.enabled and serial:
        w_cnt = m.wbit if p.approx == "pac" else 0  # every weight plane meets an LSB x plane
        if w_cnt:
            total += math.ceil(p.engine_ops_per_cycle) * _v(arch, "pac_unit")
        if p.sparsity_encoder:
            total += math.ceil(p.encoder_bits_per_cycle) * _v(arch, "encoder_lane")
        total += m.banks * m.cols * w_cnt * a.count_bits * _v(arch, "count_bit")
    total += m.banks * outputs * _v(arch, "datapath") + m.banks * m.rows * _v(arch,
                                                                               "input_gating")
    mem = arch.memory
    total += mem.global_buffer.size_kib * _v(arch, "buffers.global_buffer")
    total += m.banks * mem.bank_buffer.size_kib * _v(arch, "buffers.bank_buffer")
    total += mem.main.size_kib * _v(arch, "buffers.main")
    return total * (arch.technology.node_nm / a.node_nm) ** 2


@pytest.mark.parametrize("name", CHIPS)
def test_breakdown_sums_to_total_and_hierarchy_nests(name: str) -> None:
    a = chip_area(load_arch(name))
    assert a is not None and a.chip_mm2 > 0
    assert sum(a.breakdown_mm2.values()) == pytest.approx(a.chip_mm2, rel=1e-12)
    assert all(v >= 0 for v in a.breakdown_mm2.values())
    macro_logic = sum(a.breakdown_mm2[k] for k in ("pac_engine", "encoder", "count_storage"))
    assert a.macro_mm2 == pytest.approx(a.bank_group_mm2 + macro_logic, rel=1e-12)
    assert a.chip_mm2 == pytest.approx(a.macro_mm2 + a.chip_logic_mm2
                                       + sum(a.buffers_mm2.values()), rel=1e-12)
    assert a.bank_group_mm2 == load_arch(name).macro.banks * a.bank_mm2


@pytest.mark.parametrize("name", CHIPS)
def test_doubling_banks_doubles_bank_area_exactly(name: str) -> None:
    base = load_arch(name)
    one = chip_area(base)
    two = chip_area(base.with_overrides({"macro.banks": 2 * base.macro.banks}))
    assert two.bank_mm2 == one.bank_mm2
    assert two.bank_group_mm2 == 2 * one.bank_group_mm2
    for k in ("bitcells", "adder_tree", "accumulator", "adc", "drivers", "periphery"):
        assert two.breakdown_mm2[k] == pytest.approx(2 * one.breakdown_mm2[k], rel=1e-15)
    assert two.buffers_mm2["bank_buffer"] == 2 * one.buffers_mm2["bank_buffer"]
    assert two.buffers_mm2["global_buffer"] == one.buffers_mm2["global_buffer"]


@pytest.mark.parametrize("name", CHIPS)
@pytest.mark.parametrize("ov", [{}, {"macro.rows": 128, "macro.cols": 96},
                                {"macro.banks": 3, "macro.rows": 512},
                                {"technology.node_nm": 28}, {"memory.global_buffer.size_kib": 64},
                                {"pac.engine_ops_per_cycle": 10.5}, {"pac.sparsity_encoder": False},
                                {"pac.approx": "truncate"}, {"pac.first_layer_exact": False}])
def test_area_matches_a_literal_reference(name: str, ov: dict) -> None:
    base = load_arch(name)
    if base.macro.kind == "bp_bs" and any(k.startswith("pac.") for k in ov):
        pytest.skip("no PAC on a bp_bs chip")
    arch = base.with_overrides(ov)
    assert chip_area(arch).chip_mm2 * 1e6 == pytest.approx(reference_chip_um2(arch), rel=1e-12)


def test_node_scaling_rule() -> None:
    base = chip_area(load_arch("pacim_65nm"))
    at28 = chip_area(load_arch("pacim_65nm", {"technology.node_nm": 28}))
    for k, v in base.breakdown_mm2.items():
        assert at28.breakdown_mm2[k] == pytest.approx(v * (28 / 65) ** 2, rel=1e-12)
    same = chip_area(load_arch("pacim_65nm", {"technology.node_nm": 28, "area.node_nm": 28}))
    assert same.chip_mm2 == pytest.approx(base.chip_mm2, rel=1e-12)


def test_jia_calibrated_at_1v2_and_predicted_at_0v85() -> None:
    out = {}
    for vdd in (1.2, 0.85):
        arch = load_arch("jia_bpbs_65nm", {"technology.vdd": vdd})
        a = chip_area(arch)
        out[vdd] = peak_figures(arch)["peak_throughput_tops_1b"] / a.macro_mm2, a.chip_mm2
    assert out[1.2][0] == pytest.approx(0.60, rel=0.01)  # the one calibrated factor
    assert out[0.85][0] == pytest.approx(0.24, rel=0.10)  # predicted: throughput alone moves
    assert out[1.2][1] == out[0.85][1]  # area does not change with V
    assert load_arch("jia_bpbs_65nm").area.bank_scale.calibrated
    assert not load_arch("pacim_65nm").area.bank_scale.calibrated  # PACiM: predicted


def test_pacim_overhead_and_bitcells_saved() -> None:
    pac, dcim = chip_area(load_arch("pacim_65nm")), chip_area(load_arch("dcim_65nm"))
    added = sum(pac.breakdown_mm2[k] for k in ("pac_engine", "encoder", "count_storage"))
    assert added > 0 and pac.chip_mm2 - dcim.chip_mm2 == pytest.approx(added, rel=1e-9)
    four = chip_area(load_arch("pacim_65nm", {"area.weight_planes": 4}))
    assert four.breakdown_mm2["bitcells"] == pytest.approx(pac.breakdown_mm2["bitcells"] / 2)
    with pytest.raises(ConfigError, match="weight_planes"):
        load_arch("pacim_65nm", {"area.weight_planes": 9})


def test_missing_or_bad_entries_are_one_clear_error() -> None:
    arch = load_arch("pacim_65nm", {"area.full_adder": None})
    with pytest.raises(ConfigError, match="area.full_adder is missing"):
        chip_area(arch)
    with pytest.raises(ConfigError, match="area.bitcell.value"):
        load_arch("pacim_65nm", {"area.bitcell.value": -1})
    with pytest.raises(ConfigError, match="area.adc.value"):
        load_arch("jia_bpbs_65nm", {"area.adc.value": float("inf")})
    with pytest.raises(ConfigError, match="unknown key"):
        load_arch("pacim_65nm", {"area.bogus": {"value": 1}})
    res = CliRunner().invoke(main, ["area", "--arch", "pacim_65nm", "--set",
                                    "area.bitcell.value=-2"])
    assert res.exit_code == 2 and "area.bitcell.value" in res.output


def test_chip_without_an_area_table_still_simulates() -> None:
    arch = load_arch("pacim_65nm", {"area": None})
    rep = simulate(arch, "resnet18-cifar", data=False)
    d = rep.to_dict()
    assert d["area_mm2"] is None and d["tops_per_mm2"] is None and d["energy_pj"] > 0
    assert "no area table" in rep.table()


@pytest.fixture(scope="module")
def cifar_report():
    return simulate(load_arch("pacim_65nm"), pacim.load_workload("resnet18-cifar", seed=0),
                    data=False)


def test_report_json_csv_and_text(cifar_report) -> None:
    d = json.loads(cifar_report.to_json())
    a = chip_area(load_arch("pacim_65nm"))
    assert d["area_mm2"] == pytest.approx(a.chip_mm2)
    assert sum(d["area_breakdown_mm2"].values()) == pytest.approx(d["area_mm2"])
    assert d["area_hierarchy_mm2"]["macro"] == pytest.approx(a.macro_mm2)
    assert d["tops_per_mm2"] == pytest.approx(d["throughput_tops"] / d["area_mm2"])
    assert d["tops_per_mm2_1b"] == pytest.approx(64 * d["tops_per_mm2"])
    assert d["peak_tops_per_mm2"] == pytest.approx(d["peak_throughput_tops"] / a.macro_mm2)
    csv = cifar_report.to_csv().splitlines()
    assert "area_mm2" in csv[0].split(",") and "tops_per_mm2" in csv[0].split(",")
    mapped = [la for la in d["layers"] if la.get("cycles")]
    ops = sum(2 * la["macs"] for la in mapped)
    cycles = sum(la["cycles"] for la in mapped)
    per_layer = [la["tops_per_mm2"] * la["cycles"] / cycles for la in mapped]
    assert sum(per_layer) == pytest.approx(ops / cycles * 200e6 / 1e12 / d["area_mm2"])


def test_default_simulate_summary_shows_area_next_to_tops_per_w() -> None:
    res = CliRunner().invoke(main, ["simulate", "--arch", "arch_configs/pacim_65nm.yaml",
                                    "--workload", "resnet18-cifar"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "TOPS/W" in ln)
    assert "area " in line and " mm2" in line and "TOPS/mm2" in line
    value = float(line.split("area ")[1].split(" mm2")[0])
    assert value == pytest.approx(chip_area(load_arch("pacim_65nm")).chip_mm2, rel=1e-3)


@pytest.mark.parametrize("cmd", ["area", "energy"])
def test_area_table_is_printed_with_sources(cmd: str) -> None:
    res = CliRunner().invoke(main, [cmd, "--arch", "jia_bpbs_65nm"])
    assert res.exit_code == 0, res.output
    assert "bank_scale" in res.output and "CALIBRATED" in res.output
    assert "426 F^2" in res.output and "TOPS/mm2" in res.output


def test_sweep_grids_area_entries_and_geometry() -> None:
    grid = {"area.full_adder.value": [10.0, 20.0], "macro.banks": [8, 16]}
    recs = sweep(load_arch("pacim_65nm"), grid, ["resnet18-cifar"], data=False,
                 executor=SerialExecutor())
    assert all(r["status"] == "ok" for r in recs)
    by = {(r["area.full_adder.value"], r["macro.banks"]): r for r in recs}
    assert by[(20.0, 16)]["area_mm2"] > by[(10.0, 16)]["area_mm2"]
    assert by[(20.0, 16)]["energy_pj"] == by[(10.0, 16)]["energy_pj"]  # area is not energy
    assert by[(10.0, 16)]["area_mm2.bitcells"] == 2 * by[(10.0, 8)]["area_mm2.bitcells"]
    marked = mark_pareto(recs)
    assert any(r["pareto_energy_latency_area"] for r in marked)
    assert by[(20.0, 16)]["key"] not in {r["key"] for r in marked
                                         if r["pareto_energy_latency_area"]}


def test_pareto_nd_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for n, k in itertools.product((1, 5, 40), (1, 2, 3, 4)):
        pts = rng.integers(0, 6, size=(n, k)).astype(float)  # ties on purpose
        front = pareto_front_nd(pts)
        brute = [i for i in range(n) if not any(
            all(pts[j] <= pts[i]) and any(pts[j] < pts[i]) for j in range(n))]
        assert front == brute
        if k == 2 and len({tuple(p) for p in pts}) == n:
            assert sorted(pareto_front([tuple(p) for p in pts])) == front
    assert pareto_front_nd([[1, 5], [2, 1]], maximize=[True, False]) == [1]


def test_mark_pareto_per_workload_and_none_for_errors() -> None:
    recs = [{"workload": "a", "energy_pj": 1, "latency_s": 1, "area_mm2": 1},
            {"workload": "a", "energy_pj": 2, "latency_s": 2, "area_mm2": 2},
            {"workload": "b", "energy_pj": 9, "latency_s": 9, "area_mm2": 9},
            {"workload": "a", "status": "error", "energy_pj": None},
            {"workload": "a", "energy_pj": 0.5, "latency_s": 3, "area_mm2": None}]
    flags = [r["pareto_energy_latency_area"] for r in mark_pareto(recs)]
    assert flags == [True, False, True, None, None]
    assert "pareto_energy_latency_area" not in recs[0]  # copies, inputs untouched
