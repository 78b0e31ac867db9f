"""The simulate pipeline (pacim/pipeline.py) and the report it builds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import pacim
from pacim.pipeline import simulate

ROOT = Path(__file__).resolve().parent.parent
TOP_KEYS = {"arch", "workload", "macs", "ops", "bit_serial_cycles", "accuracy", "layers",
            "cycles", "latency_s", "throughput_tops", "energy_pj", "tops_per_w",
            "peak_tops_per_w", "peak_throughput_tops", "peak_tops_per_w_1b",
            "peak_throughput_tops_1b", "memory", "energy_breakdown_pj"}
LAYER_KEYS = {"name", "kind", "macs", "mapped", "exact", "accuracy", "bit_serial_cycles",
              "cycles", "memory", "energy_pj", "energy_breakdown_pj", "digital_cycles_mean"}


@pytest.fixture(scope="module")
def cifar():
    return pacim.load_workload("resnet18-cifar", seed=0)


def test_report_keys_and_consistency(cifar):
    rep = simulate(pacim.load_arch("pacim_65nm"), cifar).to_dict()
    assert TOP_KEYS <= set(rep)
    assert rep["macs"] == 555_422_720 and rep["ops"] == 2 * rep["mapped_macs"]
    for la in rep["layers"]:
        assert LAYER_KEYS <= set(la), la["name"]
    assert {"baseline", "actual", "reduction"} <= set(rep["bit_serial_cycles"])
    assert {"reads_bits", "writes_bits", "by_level"} <= set(rep["memory"])
    assert sum(la["cycles"] for la in rep["layers"]) == rep["cycles"]
    assert sum(rep["energy_breakdown_pj"].values()) == pytest.approx(rep["energy_pj"])
    assert sum(la["energy_pj"] for la in rep["layers"]) == pytest.approx(rep["energy_pj"])
    assert rep["tops_per_w"] == pytest.approx(rep["ops"] / rep["energy_pj"])
    assert rep["latency_s"] == pytest.approx(
        rep["cycles"] / pacim.load_arch("pacim_65nm").technology.freq_hz)
    json.dumps(rep)  # strictly JSON-serialisable


def test_pac_error_nonzero_exact_error_zero(cifar):
    pac = simulate(pacim.load_arch("pacim_65nm"), cifar).to_dict()
    exact = simulate(pacim.load_arch("dcim_65nm"), cifar).to_dict()
    assert pac["accuracy"]["output_rmse_vs_exact"] > 0
    assert math.isfinite(pac["accuracy"]["sqnr_db"])
    assert exact["accuracy"]["output_rmse_vs_exact"] == 0.0
    assert exact["accuracy"]["sqnr_db"] is None  # infinite SQNR is reported as null in JSON
    first = pac["layers"][0]
    assert first["exact"] and first["accuracy"]["output_rmse_vs_exact"] == 0.0
    assert all(la["accuracy"]["output_rmse_vs_exact"] > 0 for la in pac["layers"][1:])
    # fewer bit-serial cycles with PAC; the D-CiM baseline has none removed
    assert pac["bit_serial_cycles"]["reduction"] > 0.6
    assert exact["bit_serial_cycles"]["reduction"] == 0.0
    assert pac["tops_per_w"] > exact["tops_per_w"]


def test_operand_override_trades_error_for_cycles(cifar):
    reps = {op: simulate(pacim.load_arch("pacim_65nm", {"pac.operand": op, "pac.dynamic": None}),
                         cifar).to_dict() for op in (3, 5)}
    assert reps[5]["accuracy"]["sqnr_db"] > reps[3]["accuracy"]["sqnr_db"]
    assert reps[5]["bit_serial_cycles"]["actual"] > reps[3]["bit_serial_cycles"]["actual"]


def test_no_data_mode_is_shapes_only():
    rep = simulate(pacim.load_arch("pacim_65nm"), "resnet18", data=False).to_dict()
    assert rep["accuracy"] is None and rep["data"] is False
    assert rep["macs"] == 1_814_073_344
    assert all(la["accuracy"] is None for la in rep["layers"])
    assert rep["cycles"] > 0 and rep["energy_pj"] > 0


def test_workload_without_data_but_data_requested():
    wl = pacim.load_workload("resnet18-cifar", data=False)
    with pytest.raises(pacim.PacimError, match="no data"):
        simulate(pacim.load_arch("pacim_65nm"), wl, data=True)


def test_layer_memory_keys_match_the_summary():
    rep = simulate(pacim.load_arch("pacim_65nm"), "resnet18-cifar", data=False).to_dict()
    top = rep["memory"]["by_level"]["main"]
    for la in rep["layers"]:
        assert set(la["memory"]["by_level"]["main"]) == set(top)
    assert sum(la["memory"]["by_level"]["main"]["reads_bits"] for la in rep["layers"]) == \
        top["reads_bits"]


def test_prepared_operands_are_reused_and_frozen():
    """A repeated simulation reuses each layer's prepared operands, bit for bit; the layer's
    tensors are frozen when first prepared, so the cache cannot go stale."""
    from pacim.pipeline import clear_prepared, layer_operands

    arch = pacim.load_arch("pacim_65nm")
    wl = pacim.load_workload("workloads/tiny_cnn.yaml")
    first = pacim.simulate(arch, wl).to_dict()
    layer = next(la for la in wl.layers if la.mapped)
    act, pw = layer_operands(layer, 8, 8)
    assert layer_operands(layer, 8, 8)[1] is pw
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[(0,) * layer.weight.ndim] = 1.0
    assert pacim.simulate(arch, wl).to_dict() == first
    clear_prepared()
    assert layer_operands(layer, 8, 8)[1] is not pw
    assert pacim.simulate(arch, wl).to_dict() == first
