"""Energy model: counts x table, V/f scaling, peak figures, and the calibrated/predicted targets.

Tolerances: exact identities to 1e-9 relative; calibrated paper figures +-3 %; figures the model
predicts (Jia et al. at 0.85 V) +-10 %.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pacim.arch import load_arch
from pacim.energy import (
    PACIM_CALIBRATION_DIGITAL_CYCLES,
    accumulator_bits,
    adder_tree_full_adders,
    components,
    dcim_column_cycle_pj,
    energy_command_text,
    energy_report,
    energy_table,
    format_energy_table,
    layer_energy,
    peak_figures,
)
from pacim.errors import ConfigError
from pacim.sched.counts import LayerCounts, empty_traffic

REL = 1e-9
CALIBRATED = 0.03
PREDICTED = 0.10


def _counts(**kw: object) -> LayerCounts:
    """A hand-built layer with every count non-zero (bit_serial and bp_bs fields alike)."""
    reads = empty_traffic()
    writes = empty_traffic()
    reads["main"]["weights"] = 36_864 * 8
    reads["global_buffer"]["act_msb"] = 1_000_000
    reads["bank_buffer"]["act_msb"] = 2_000_000
    writes["global_buffer"]["outputs"] = 400_000
    writes["main"]["outputs"] = 100_000
    base = dict(
        name="conv", cycles=50_000, compute_cycles=48_000, stall_cycles={"memory": 2000},
        bank_utilization=0.9, passes=1, weight_reloads=0, vector_tiles=3136,
        bit_serial_cycles_baseline=3136 * 64, bit_serial_cycles=3136 * 12,
        column_cycles=3136 * 12 * 64, active_row_cycles=3136 * 12 * 64 * 192,
        bpbs_conversions=123_456, pac_ops=3136 * 64 * 52, encoder_bits=3136 * 64 * 8,
        weight_bits_written=36_864 * 4, psum_bits=3136 * 64 * 25,
        reads_bits=reads, writes_bits=writes,
    )
    base.update(kw)
    return LayerCounts(**base)  # type: ignore[arg-type]


def _close(a: float, b: float, rel: float = REL) -> bool:
    return math.isclose(a, b, rel_tol=rel)


# --- structure -------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [2, 4, 16, 64, 256, 1024])
def test_adder_tree_power_of_two_closed_form(rows: int) -> None:
    assert adder_tree_full_adders(rows) == 2 * rows - int(math.log2(rows)) - 2


def test_adder_tree_general_rows() -> None:
    assert adder_tree_full_adders(1) == 0
    assert adder_tree_full_adders(3) == 1 + 2  # (1+1) then a 2-bit add
    for r in range(2, 600):
        n = adder_tree_full_adders(r)
        assert 2 * r - 2 * math.log2(r) - 3 <= n <= 2 * r  # ~2*rows full-adder ops


def test_accumulator_width() -> None:
    assert accumulator_bits(256, 8, 8) == 9 + 16
    assert accumulator_bits(255, 8, 8) == 8 + 16
    assert accumulator_bits(768, 1, 1) == 10 + 2


def test_column_cycle_scales_with_rows_and_width() -> None:
    a = load_arch("pacim_65nm")
    e = a.energy
    col = dcim_column_cycle_pj(a)
    assert _close(col["dcim_and"], 256 * e.and_gate.value)
    assert _close(col["dcim_adder_tree"], 502 * e.full_adder.value)
    assert _close(col["dcim_accumulate"], 25 * e.accumulator_bit.value)
    big = dcim_column_cycle_pj(load_arch("pacim_65nm", {"macro.rows": 512}))
    assert big["dcim_adder_tree"] / col["dcim_adder_tree"] == pytest.approx(1013 / 502)
    assert big["dcim_accumulate"] / col["dcim_accumulate"] == pytest.approx(26 / 25)
    wide = dcim_column_cycle_pj(load_arch("dcim_65nm", {"macro.xbit": 4, "macro.wbit": 4}))
    assert wide["dcim_accumulate"] / col["dcim_accumulate"] == pytest.approx(17 / 25)


# --- per layer -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"])
def test_breakdown_sums_to_total(name: str) -> None:
    a = load_arch(name)
    kw = {"pac_ops": 0, "encoder_bits": 0} if name == "jia_bpbs_65nm" else {}  # no PAC on bp_bs
    cs = [_counts(**kw), _counts(name="fc", cycles=7, column_cycles=11, **kw)]
    b = layer_energy(a, cs[0])
    assert tuple(b) == components(a)
    assert all(v >= 0 for v in b.values())
    rep = energy_report(a, cs, macs=10**9)
    total = rep["energy_breakdown_pj"]
    assert _close(sum(total.values()), rep["energy_pj"])
    for k in total:
        assert _close(total[k], sum(layer_energy(a, c)[k] for c in cs))
    assert _close(rep["tops_per_w"], 2e9 / rep["energy_pj"])
    assert _close(rep["latency_s"], (50_007) / a.technology.freq_hz)
    assert _close(rep["throughput_tops"], 2e9 / rep["latency_s"] / 1e12)
    mem = sum(v for k, v in total.items() if k.startswith("mem_"))
    assert _close(rep["energy_memory_share"], mem / rep["energy_pj"])


@pytest.mark.parametrize(
    "field,component",
    [
        ("active_row_cycles", "dcim_and"),
        ("active_row_cycles", "dcim_adder_tree"),
        ("column_cycles", "dcim_accumulate"),
        ("pac_ops", "pac_engine"),
        ("encoder_bits", "encoder"),
        ("weight_bits_written", "weight_write"),
        ("psum_bits", "psum"),
        ("cycles", "leakage"),
    ],
)
def test_doubling_a_count_doubles_its_component(field: str, component: str) -> None:
    a = load_arch("pacim_65nm")
    c = _counts()
    c2 = replace(c, **{field: 2 * getattr(c, field)})
    b, b2 = layer_energy(a, c), layer_energy(a, c2)
    assert b[component] > 0
    assert _close(b2[component], 2 * b[component])
    for k in b:  # nothing else moves
        if k != component and not (field == "active_row_cycles" and k.startswith("dcim_")):
            assert _close(b2[k], b[k]), k


def test_doubling_conversions_and_traffic() -> None:
    a = load_arch("jia_bpbs_65nm")
    c = _counts(pac_ops=0, encoder_bits=0)
    b = layer_energy(a, c)
    b2 = layer_energy(a, replace(c, bpbs_conversions=2 * c.bpbs_conversions))
    for k in ("bpbs_array", "bpbs_adc", "bpbs_datapath"):
        assert b[k] > 0 and _close(b2[k], 2 * b[k])
    reads = {lv: {k: 2 * v for k, v in d.items()} for lv, d in c.reads_bits.items()}
    writes = {lv: {k: 2 * v for k, v in d.items()} for lv, d in c.writes_bits.items()}
    b3 = layer_energy(a, replace(c, reads_bits=reads, writes_bits=writes))
    for k in ("mem_main", "mem_global_buffer", "mem_bank_buffer"):
        assert b[k] > 0 and _close(b3[k], 2 * b[k])


def test_memory_energy_is_bits_times_table() -> None:
    a = load_arch("pacim_65nm")
    b = layer_energy(a, _counts())
    m = a.memory
    assert _close(b["mem_main"], 36_864 * 8 * m.main.read_pj_per_bit
                  + 100_000 * m.main.write_pj_per_bit)
    assert _close(b["mem_bank_buffer"], 2_000_000 * m.bank_buffer.read_pj_per_bit)


# --- voltage and frequency -------------------------------------------------------------------
def test_dynamic_energy_scales_with_vdd_squared() -> None:
    a = load_arch("pacim_65nm")
    lo = load_arch("pacim_65nm", {"technology.vdd": 0.8})
    c = _counts()
    b, bl = layer_energy(a, c), layer_energy(lo, c)
    s = (0.8 / 1.0) ** 2
    for k in ("dcim_and", "dcim_adder_tree", "dcim_accumulate", "pac_engine", "encoder",
              "weight_write", "psum", "mem_global_buffer", "mem_bank_buffer"):
        assert _close(bl[k], s * b[k]), k
    assert _close(bl["mem_main"], b["mem_main"])  # off-chip: scales_with_vdd false


def test_alpha_power_frequency() -> None:
    t = load_arch("jia_bpbs_65nm", {"technology.vdd": 0.85}).technology

    def g(v: float) -> float:
        return (v - t.vth) ** t.alpha / v

    assert _close(t.freq_hz, t.freq_mhz * 1e6 * g(0.85) / g(1.2))
    assert load_arch("jia_bpbs_65nm").technology.freq_hz == pytest.approx(100e6)


def test_leakage_scales_with_time_and_voltage() -> None:
    a = load_arch("pacim_65nm")
    c = _counts()
    p_mw = a.energy.leakage_mw.value
    b = layer_energy(a, c)
    assert _close(b["leakage"], p_mw * 1e-3 * c.cycles / a.technology.freq_hz * 1e12)
    assert _close(layer_energy(a, replace(c, cycles=3 * c.cycles))["leakage"], 3 * b["leakage"])
    lo = load_arch("pacim_65nm", {"technology.vdd": 0.8})
    t_lo = c.cycles / lo.technology.freq_hz
    assert _close(layer_energy(lo, c)["leakage"], p_mw * 1e-3 * 0.8 * t_lo * 1e12)
    assert lo.technology.freq_hz < a.technology.freq_hz  # slower clock: more leakage time


# --- missing entries -------------------------------------------------------------------------
def test_missing_entry_for_used_component_raises() -> None:
    a = load_arch("pacim_65nm", {"energy.pac_op": None})
    with pytest.raises(ConfigError, match=r"energy\.pac_op is missing.*PAC ops"):
        layer_energy(a, _counts())
    # unused: no error, component 0
    assert layer_energy(a, _counts(pac_ops=0))["pac_engine"] == 0.0
    with pytest.raises(ConfigError, match="pac_op"):
        peak_figures(a, 12.0)
    b = load_arch("jia_bpbs_65nm", {"energy.bpbs_adc": None})
    with pytest.raises(ConfigError, match=r"energy\.bpbs_adc"):
        layer_energy(b, _counts(pac_ops=0, encoder_bits=0))
    c = load_arch("dcim_65nm", {"energy.leakage_mw": None})
    with pytest.raises(ConfigError, match="leakage_mw"):
        layer_energy(c, _counts())


# --- peak figures and the papers ---------------------------------------------------------------
def test_pacim_peak_calibrated() -> None:
    """PACiM: 14.63 TOPS/W peak 8b/8b at resnet18's mean digital cycles (calibrated, +-3%)."""
    p = peak_figures(load_arch("pacim_65nm"), PACIM_CALIBRATION_DIGITAL_CYCLES)
    assert p["peak_tops_per_w"] == pytest.approx(14.63, rel=CALIBRATED)
    assert _close(p["peak_tops_per_w_1b"], 64 * p["peak_tops_per_w"])
    assert _close(p["peak_throughput_tops_1b"], 64 * p["peak_throughput_tops"])
    assert _close(sum(p["peak_energy_share"].values()), 1.0)


def test_pacim_peak_moves_with_cycles_and_beats_dcim() -> None:
    a = load_arch("pacim_65nm")
    p10, p16 = peak_figures(a, 10.0), peak_figures(a, 16.0)
    assert p10["peak_tops_per_w"] > p16["peak_tops_per_w"]
    assert peak_figures(a)["peak_digital_cycles"] == 16.0  # static operand 4 by default
    d = peak_figures(load_arch("dcim_65nm"))
    assert d["peak_digital_cycles"] == 64.0
    assert 2.0 < p16["peak_tops_per_w"] / d["peak_tops_per_w"] < 6.0


def test_jia_calibrated_at_1v2() -> None:
    p = peak_figures(load_arch("jia_bpbs_65nm"))
    assert p["peak_tops_per_w_1b"] == pytest.approx(152.0, rel=CALIBRATED)
    assert p["peak_throughput_tops_1b"] == pytest.approx(4.7, rel=CALIBRATED)


def test_jia_predicted_at_0v85() -> None:
    """Only (V/1.2)^2 and the alpha-power law move the figures: a prediction, +-10%."""
    p = peak_figures(load_arch("jia_bpbs_65nm", {"technology.vdd": 0.85}))
    assert p["peak_tops_per_w_1b"] == pytest.approx(297.0, rel=PREDICTED)
    assert p["peak_throughput_tops_1b"] == pytest.approx(1.9, rel=PREDICTED)


def test_jia_multibit_scaling() -> None:
    p1 = peak_figures(load_arch("jia_bpbs_65nm"))
    for b in (4, 8):
        p = peak_figures(load_arch("jia_bpbs_65nm", {"macro.wbit": b, "macro.xbit": b}))
        assert p["peak_tops_per_w"] == pytest.approx(p1["peak_tops_per_w"] / b**2)
        assert p["peak_throughput_tops"] == pytest.approx(p1["peak_throughput_tops"] / b**2)


def test_peak_rejects_impossible_cycles() -> None:
    with pytest.raises(ValueError, match="mean_digital_cycles"):
        peak_figures(load_arch("pacim_65nm"), 65.0)


# --- the table ---------------------------------------------------------------------------------
def test_energy_table_has_sources_and_scales() -> None:
    a = load_arch("jia_bpbs_65nm", {"technology.vdd": 0.85})
    rows = {r["component"]: r for r in energy_table(a)}
    s = (0.85 / 1.2) ** 2
    assert rows["bpbs_adc"]["value"] == pytest.approx(0.9305 * s)
    assert rows["bpbs_adc"]["calibrated"] is True
    assert rows["leakage_mw"]["value"] == pytest.approx(0.5 * 0.85 / 1.2)
    assert rows["mem_main.read"]["value"] == pytest.approx(8.0)
    for name in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"):
        for r in energy_table(load_arch(name)):
            assert r["source"], (name, r["component"])
    text = format_energy_table(a)
    assert "bpbs_array" in text and "Jia et al." in text
    assert max(len(line) for line in text.splitlines()) <= 100
    cmd = energy_command_text(load_arch("pacim_65nm"), PACIM_CALIBRATION_DIGITAL_CYCLES)
    assert "full_adder" in cmd and "TOPS/W" in cmd and "CALIBRATED" in cmd


def test_every_calibrated_value_says_to_what() -> None:
    for name in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"):
        for r in energy_table(load_arch(name)):
            if r["calibrated"]:
                assert "CALIBRATED" in r["source"] or "same k" in r["source"], r
