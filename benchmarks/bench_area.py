"""Issue 20: the area model against the papers, the PACiM vs D-CiM overhead, TOPS/mm^2.

Calibrated (one factor): Jia et al.'s 0.60 1b-TOPS/mm^2 (MAC hardware) at 1.2 V, by
jia_bpbs_65nm area.bank_scale. Predicted: Jia at 0.85 V (area does not move with V, the
throughput does), every PACiM and D-CiM area (nothing fitted), and the workload TOPS/mm^2.
"""

from __future__ import annotations

from typing import Any

from benchmarks.bench_energy import CALIBRATED_TOL, PREDICTED_TOL, format_rows
from benchmarks.common import BenchResult, Check
from pacim.arch import load_arch
from pacim.energy import (
    MACRO_COMPONENTS,
    PACIM_CALIBRATION_DIGITAL_CYCLES,
    chip_area,
    peak_figures,
    relative_error,
)

JIA_FIG11_MM2 = {"cim": 2.91, "adc": 0.497, "datapath": 0.497, "sparsity": 0.392}
ZIGZAG_FA_65NM = 25.81  # ZigZag-IMC 28 nm full adder (3 ND2 + 2 XOR2) x (65/28)^2, um^2


def _row(claim: str, paper: float | None, pacim: float | None, kind: str,
         diff: str | None = None) -> dict[str, Any]:
    err = None if paper is None or pacim is None else relative_error(pacim, paper)
    r = {"claim": claim, "paper": paper, "pacim": pacim, "error": err, "kind": kind}
    if diff is not None:
        r["diff"] = diff
    return r


def jia_figures() -> dict[str, float]:
    """Jia's peak 1b-TOPS/mm^2 over the MAC hardware at both voltages, and the literal bank."""
    out: dict[str, float] = {}
    for tag, vdd in (("1v2", 1.2), ("0v85", 0.85)):
        arch = load_arch("jia_bpbs_65nm", {"technology.vdd": vdd})
        a = chip_area(arch)
        out[f"jia_{tag}_tops_per_mm2_1b"] = (peak_figures(arch)["peak_throughput_tops_1b"]
                                             / a.macro_mm2)
        out[f"jia_{tag}_chip_mm2"] = a.chip_mm2
    literal = chip_area(load_arch("jia_bpbs_65nm", {"area.bank_scale.value": 1.0}))
    out["jia_literal_mac_hardware_mm2"] = literal.macro_mm2
    b = literal.breakdown_mm2
    out["jia_literal_cim_mm2"] = b["bitcells"] + b["drivers"]
    out["jia_literal_adc_mm2"] = b["adc"]
    out["jia_bank_scale"] = load_arch("jia_bpbs_65nm").area.bank_scale.value
    return out


def overhead_figures() -> dict[str, Any]:
    """PACiM vs D-CiM: the added logic (PAC engine, encoder, counts) vs the bitcells saved."""
    pac, dcim = chip_area(load_arch("pacim_65nm")), chip_area(load_arch("dcim_65nm"))
    four = chip_area(load_arch("pacim_65nm", {"area.weight_planes": 4}))
    zz = chip_area(load_arch("pacim_65nm", {"area.full_adder.value": ZIGZAG_FA_65NM}))
    added = sum(pac.breakdown_mm2[k] for k in MACRO_COMPONENTS)
    saved = dcim.bank_group_mm2 - four.bank_group_mm2
    return {
        "pacim_chip_mm2": pac.chip_mm2, "dcim_chip_mm2": dcim.chip_mm2,
        "pacim_macro_mm2": pac.macro_mm2, "dcim_macro_mm2": dcim.macro_mm2,
        "pacim_4plane_chip_mm2": four.chip_mm2,
        "pacim_added_mm2": added, "pacim_added_share_of_dcim": added / dcim.chip_mm2,
        **{f"pacim_added.{k}": pac.breakdown_mm2[k] for k in MACRO_COMPONENTS},
        "bitcells_saved_4_planes_mm2": saved, "net_4_planes_mm2": added - saved,
        "pacim_chip_mm2_zigzag_full_adder": zz.chip_mm2,
        "breakdown_mm2": {"pacim_65nm": pac.breakdown_mm2, "dcim_65nm": dcim.breakdown_mm2,
                          "jia_bpbs_65nm": chip_area(load_arch("jia_bpbs_65nm")).breakdown_mm2},
        "breakdown_sum_error": max(
            abs(sum(a.breakdown_mm2.values()) - a.chip_mm2) / a.chip_mm2 for a in (pac, dcim)),
    }


def _workload_figures(quick: bool) -> dict[str, Any]:
    """TOPS/mm^2 of a whole workload on the three chips (simulate, everything counted)."""
    from pacim.pipeline import simulate
    from pacim.workloads import load_workload

    wl = load_workload("resnet18-cifar" if quick else "resnet18", seed=0)
    out: dict[str, Any] = {"workload": wl.name}
    for a in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"):
        r = simulate(load_arch(a), wl, data=True).to_dict()
        for k in ("area_mm2", "tops_per_mm2", "tops_per_mm2_1b", "peak_tops_per_mm2",
                  "throughput_tops"):
            out[f"{a}.{k}"] = r.get(k)
    return out


def _doubling_error() -> float:
    worst = 0.0
    for name in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"):
        arch = load_arch(name)
        one = chip_area(arch).bank_group_mm2
        two = chip_area(arch.with_overrides({"macro.banks": 2 * arch.macro.banks}))
        worst = max(worst, abs(two.bank_group_mm2 - 2 * one))
    return worst


def run(quick: bool = False) -> BenchResult:
    """Area figures of the shipped chips vs the papers, the overhead row, TOPS/mm^2."""
    j = jia_figures()
    o = overhead_figures()
    wl = _workload_figures(quick)
    c = PACIM_CALIBRATION_DIGITAL_CYCLES
    pac_peak = (peak_figures(load_arch("pacim_65nm"), c)["peak_throughput_tops"]
                / o["pacim_macro_mm2"])
    dcim_peak = peak_figures(load_arch("dcim_65nm"))["peak_throughput_tops"] / o["dcim_macro_mm2"]
    added, saved = o["pacim_added_mm2"], o["bitcells_saved_4_planes_mm2"]
    name = wl["workload"]
    rows = [
        _row("Jia 1b-TOPS/mm^2 (MAC hardware) at 1.2 V", 0.60, j["jia_1v2_tops_per_mm2_1b"],
             "calibrated (area.bank_scale)"),
        _row("Jia 1b-TOPS/mm^2 (MAC hardware) at 0.85 V", 0.24, j["jia_0v85_tops_per_mm2_1b"],
             "predicted (throughput only)"),
        _row("Jia MAC hardware mm^2 (CiM + ADC), before / after bank_scale", None,
             j["jia_literal_mac_hardware_mm2"], "sources: Fig. 11 via CiMLoop; one factor",
             f"{j['jia_literal_mac_hardware_mm2']:.4g} (Fig. 11: 2.91 + 0.497) x "
             f"{j['jia_bank_scale']:.4g} = "
             f"{j['jia_literal_mac_hardware_mm2'] * j['jia_bank_scale']:.4g}"),
        _row("PACiM vs D-CiM area: PAC engine + encoder + counts vs bitcells saved (4 planes)",
             None, added, "predicted (nothing fitted)",
             f"+{added:.3g} mm^2 (+{100 * o['pacim_added_share_of_dcim']:.1f}% of D-CiM's "
             f"{o['dcim_chip_mm2']:.3g}) vs -{saved:.3g} mm^2 saved: net {added - saved:+.3g}"),
        _row("PACiM / D-CiM chip mm^2 (shipped: 8 planes stored)", None,
             o["pacim_chip_mm2"] / o["dcim_chip_mm2"], "predicted"),
        _row(f"PACiM peak TOPS/mm^2 (macro) at C = {c:.2f}, D-CiM at C = 64", None, pac_peak,
             "predicted", f"{pac_peak:.3g} / {dcim_peak:.3g} ({pac_peak / dcim_peak:.2f}x)"),
        _row(f"{name} TOPS/mm^2 (chip, all counted) PACiM / D-CiM / Jia", None,
             wl.get("pacim_65nm.tops_per_mm2"),
             "predicted",
             " / ".join(f"{wl.get(f'{a}.tops_per_mm2'):.3g}"
                        for a in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm"))),
    ]
    print(format_rows(rows))
    res = BenchResult("area_vs_papers")
    res.figures = {**j, **{k: v for k, v in o.items() if k != "breakdown_mm2"},
                   "breakdown_mm2": o["breakdown_mm2"], "pacim_peak_tops_per_mm2": pac_peak,
                   "dcim_peak_tops_per_mm2": dcim_peak,
                   **{k: v for k, v in wl.items() if not isinstance(v, dict)},
                   "paper_vs_pacim": rows}
    res.checks = [
        Check("Jia 0.60 1b-TOPS/mm^2 at 1.2 V calibrated |error|",
              abs(relative_error(j["jia_1v2_tops_per_mm2_1b"], 0.60)), "<=", CALIBRATED_TOL),
        Check("Jia 0.24 1b-TOPS/mm^2 at 0.85 V predicted |error|",
              abs(relative_error(j["jia_0v85_tops_per_mm2_1b"], 0.24)), "<=", PREDICTED_TOL),
        Check("area breakdown sums to the chip (rel. deviation)", o["breakdown_sum_error"],
              "<=", 1e-12),
        Check("doubling macro.banks doubles the bank group (abs. deviation mm^2)",
              _doubling_error(), "<=", 0.0),
        Check("Jia area at 0.85 V == at 1.2 V (mm^2 deviation)",
              abs(j["jia_0v85_chip_mm2"] - j["jia_1v2_chip_mm2"]), "<=", 0.0),
    ]
    return res
