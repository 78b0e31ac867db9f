"""The analog BP/BS model in the ONNX executor and `pacim accuracy`; first-layer precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pacim.arch import load_arch
from pacim.errors import ConfigError
from pacim.workloads.onnx import MacroConfig

onnx = pytest.importorskip("onnx")


def _cnn(path: Path) -> Path:
    """A 2-conv + FC network: conv 1->4 (3x3, pad 1), relu, conv 4->6 (3x3), relu, pool, Gemm."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w1", (4, 1, 3, 3)), ("w2", (6, 4, 3, 3)), ("wf", (3, 6)), ("bf", (3,)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, str(path))
    return path


def _jia(**over: object):
    return load_arch("jia_bpbs_65nm", {"macro.xbit": 4, "macro.wbit": 4, **over})


def test_pac_mode_on_bp_bs_runs_the_adc(tmp_path: Path) -> None:
    from pacim.workloads.onnx import OnnxNet

    net = OnnxNet.load(_cnn(tmp_path / "m.onnx"))
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8))
    exact = net.run(x, "exact", config=_jia())
    # an ADC that holds every column sum (one code per row, 10 bits) and no noise is exact
    holds = _jia(**{"analog.adc_bits": 10, "analog.full_scale": None, "analog.noise_lsb": 0.0})
    assert np.array_equal(net.run(x, "pac", config=holds), exact)
    modes = net.layer_modes("pac", config=MacroConfig.from_arch(holds))
    assert modes[net.macro_layers[0].name] == "pac"  # the first conv on the array too
    shipped = net.run(x, "pac", config=_jia())  # 8 b over 768 rows: coarse for 36-row sums
    assert not np.allclose(shipped, exact)
    # the noise is per image: batching (with image0) does not change any output
    noisy = _jia(**{"analog.noise_lsb": 0.7})
    whole = net.run(x, "pac", config=noisy)
    parts = np.concatenate([net.run(x[:1], "pac", config=noisy, image0=0),
                            net.run(x[1:], "pac", config=noisy, image0=1)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, net.run(x, "pac", config=noisy.with_overrides(
        {"analog.seed": 1})))


def test_first_layer_bits_in_the_executor_and_the_scheduler(tmp_path: Path) -> None:
    from pacim.pipeline import simulate
    from pacim.workloads import load_workload
    from pacim.workloads.onnx import OnnxNet

    net = OnnxNet.load(_cnn(tmp_path / "m.onnx"))
    x = np.random.default_rng(2).standard_normal((2, 1, 8, 8))
    rec4: dict = {}
    net.run(x, "exact", config=_jia(analog=None), record=rec4)
    rec8: dict = {}
    net.run(x, "exact", config=_jia(analog=None, **{"macro.first_layer_bits": 8}), record=rec8)
    first, second = (la.name for la in net.macro_layers[:2])
    assert np.array_equal(rec4[first], rec8[first])  # same input, other precision:
    assert not np.array_equal(rec4[second], rec8[second])  # the first conv's output differs
    # the scheduler charges the first conv at 8 bits and nothing else changes
    wl = load_workload(str(tmp_path / "m.onnx"), data=False)
    r4 = simulate(_jia(), wl, data=False).to_dict()["layers"]
    r8 = simulate(_jia(**{"macro.first_layer_bits": 8}), wl, data=False).to_dict()["layers"]
    assert r8[0]["energy_pj"] > 3 * r4[0]["energy_pj"] and r8[0]["cycles"] > r4[0]["cycles"]
    assert [d["energy_pj"] for d in r8[1:]] == [d["energy_pj"] for d in r4[1:]]
    with pytest.raises(ConfigError, match="first_layer_bits"):
        _jia(**{"macro.first_layer_bits": 0})


def test_accuracy_cli_names_the_analog_array(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pacim.cli import main

    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=(rng.random((6, 8, 8, 1)) * 255).astype(np.uint8),
             y=rng.integers(0, 3, 6))
    r = CliRunner().invoke(main, ["accuracy", "--model", str(_cnn(tmp_path / "m.onnx")),
                                  "--data", str(tmp_path / "d.npz"), "--arch", "jia_bpbs_65nm",
                                  "--set", "macro.xbit=4", "--set", "macro.wbit=4",
                                  "--hw-images", "0"])
    assert r.exit_code == 0, r.output
    assert "analog BP/BS" in r.output and "8-b ADC" in r.output
