"""Architecture schema: shipped configs, validation errors, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacim.arch import Arch, apply_overrides, load_arch, parse_assignment
from pacim.errors import ConfigError, PacimError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "arch_configs").glob("*.yaml"))


def test_shipped_configs_load():
    names = {p.stem for p in CONFIGS}
    assert {"pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"} <= names
    for p in CONFIGS:
        a = load_arch(p)
        assert isinstance(a, Arch) and a.name == p.stem


def test_pacim_vs_dcim_differ_only_in_pac():
    p = load_arch(ROOT / "arch_configs/pacim_65nm.yaml")
    d = load_arch(ROOT / "arch_configs/dcim_65nm.yaml")
    assert p.operand == 4 and d.operand == 8
    assert p.dynamic_thresholds == (7000.0, 10000.0, 13000.0) and d.dynamic_thresholds is None
    assert p.macro == d.macro and p.memory == d.memory and p.technology == d.technology


def test_overrides_python_and_dotted():
    a = load_arch("pacim_65nm", {"pac.operand": 3, "pac.dynamic": None})
    assert a.operand == 3 and a.dynamic_thresholds is None
    b = load_arch("pacim_65nm", macro__banks=4)
    assert b.macro.banks == 4
    c = a.with_overrides({"technology.vdd": 0.9})
    assert c.technology.vdd == 0.9 and c.pac.operand == 3
    assert parse_assignment("pac.dynamic.thresholds=[1, 2, 3]") == ("pac.dynamic.thresholds",
                                                                    [1, 2, 3])
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    "ov,msg",
    [
        ({"pac.operand": 9}, "pac.operand"),
        ({"pac.operand": 3}, "dynamic"),
        ({"macro.banks": 0}, "macro.banks"),
        ({"macro.kind": "analog"}, "macro.kind"),
        ({"pac.bogus": 1}, "pac.bogus: unknown key"),
        ({"memory.main.bus_bits": "wide"}, "memory.main.bus_bits"),
        ({"technology.vdd": 0.3}, "vth"),
        ({"pac.dynamic.thresholds": [3, 2, 1]}, "ascending"),
        ({"macro.kind": "bp_bs"}, "bp_bs"),
    ],
)
def test_bad_values_name_file_key_and_reason(ov, msg):
    with pytest.raises(ConfigError) as ei:
        load_arch(ROOT / "arch_configs/pacim_65nm.yaml", ov)
    assert msg in str(ei.value)
    assert "pacim_65nm.yaml" in str(ei.value)


def test_bad_files(tmp_path):
    with pytest.raises(PacimError, match="no such file"):
        load_arch(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("macro: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_arch(bad)
    unk = tmp_path / "unk.yaml"
    unk.write_text((ROOT / "arch_configs/pacim_65nm.yaml").read_text() + "\nfrobnicate: 1\n")
    with pytest.raises(ConfigError, match="frobnicate: unknown key"):
        load_arch(unk)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_arch(lst)
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_assignment("novalue")


def test_alpha_power_frequency_and_vdd_scaling():
    a = load_arch("jia_bpbs_65nm")
    lo = a.with_overrides({"technology.vdd": 0.85})
    assert lo.technology.freq_hz < a.technology.freq_hz
    t = lo.technology
    g = lambda v: (v - t.vth) ** t.alpha / v  # noqa: E731
    assert t.freq_hz == pytest.approx(t.freq_mhz * 1e6 * g(0.85) / g(t.vdd_nom))
    assert t.dynamic_scale == pytest.approx((0.85 / 1.2) ** 2)
