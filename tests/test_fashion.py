"""The shipped fashion-resnet18, normalization from ONNX metadata, the built-in workload, the
accuracy table and `pacim calibrate-thresholds`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pacim.errors import PacimError

onnx = pytest.importorskip("onnx")


def _shipped_or_skip():
    from pacim.accuracy.fetch import cached_fashion_mnist
    from pacim.accuracy.metadata import MODELS_DIR, SHIPPED_MODELS

    if not (MODELS_DIR / SHIPPED_MODELS["fashion-resnet18"]).is_file():
        pytest.skip("the shipped model is not in this checkout")
    if cached_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST is not fetched (pacim data fetch fashion-mnist; CI does)")


def test_shipped_model_float_top1_first_1000():
    """CI's check of the shipped model: float top-1 on the first 1,000 test images, with the
    normalization from its metadata (no flags)."""
    _shipped_or_skip()
    from pacim.accuracy import evaluate

    r = evaluate("fashion-resnet18", "fashion-mnist", "pacim_65nm", limit=1000,
                 modes=("float", "exact"), batch=100, hw_images=0)
    print(f"\nfashion-resnet18, first 1000 test images: float {100 * r['top1']['float']:.1f}% "
          f"exact {100 * r['top1']['exact']:.1f}%")
    assert r["normalization_source"] == "model metadata"
    assert r["images"] == 1000 and r["top1"]["float"] >= 0.92
    assert abs(r["top1"]["exact"] - r["top1"]["float"]) <= 0.01


def test_shipped_workload_feeds_real_images():
    _shipped_or_skip()
    from pacim.accuracy.datasets import load_dataset
    from pacim.accuracy.metadata import model_normalization, resolve_model
    from pacim.workloads import available_workloads, load_workload

    assert "fashion-resnet18" in available_workloads()
    wl = load_workload("fashion-resnet18", batch=2, start=3)
    x, _ = load_dataset("fashion-mnist").get(3, 5, model_normalization(
        resolve_model("fashion-resnet18")))
    first = wl.layers[0]
    assert first.kind == "conv2d" and first.x.shape[0] == 2
    assert np.allclose(first.x, x) and "real data" in wl.meta["input"]
    shapes = load_workload("fashion-resnet18", data=False)
    assert not shapes.has_data and len(shapes.layers) == len(wl.layers)
    with pytest.raises(PacimError, match="batch"):
        load_workload("fashion-resnet18", batch=0)
    with pytest.raises(PacimError, match="exceed the 10000 test images"):
        load_workload("fashion-resnet18", batch=2, start=9999)


def _colour_with_norm(tmp_path):
    from pacim.accuracy.metadata import NORM_KEY, set_metadata
    from tests.test_accuracy import colour_cifar, colour_net

    colour_net(tmp_path / "colour.onnx")
    m = onnx.load(str(tmp_path / "colour.onnx"))
    set_metadata(m, {NORM_KEY: {"mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435,
                                                                          0.2616]}})
    onnx.save(m, str(tmp_path / "colour.onnx"))
    colour_cifar(tmp_path / "test_batch", n=40)
    return tmp_path / "colour.onnx", tmp_path / "test_batch"


def test_normalization_from_metadata_and_override(tmp_path):
    from click.testing import CliRunner

    from pacim.accuracy import accuracy_command, evaluate
    from pacim.accuracy.metadata import model_normalization
    from pacim.accuracy.norm import Normalization

    model, data = _colour_with_norm(tmp_path)
    assert model_normalization(model).std == (0.247, 0.2435, 0.2616)
    meta = evaluate(model, data, "pacim_65nm", modes=("float",), hw_images=0)
    given = evaluate(model, data, "pacim_65nm", modes=("float",), hw_images=0,
                     norm=Normalization.parse(norm="cifar10"))
    none = evaluate(model, data, "pacim_65nm", modes=("float",), hw_images=0,
                    norm=Normalization())
    assert meta["normalization_source"] == "model metadata"
    assert meta["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    assert given["normalization_source"] == "given" and none["normalization"]["std"] == [1.0]
    assert meta["top1"] == given["top1"]  # the metadata holds CIFAR-10's statistics
    out = tmp_path / "a.json"
    r = CliRunner().invoke(accuracy_command, ["--model", str(model), "--data", str(data),
                                              "--arch", "pacim_65nm", "--modes", "float",
                                              "--norm", "none", "--hw-images", "0",
                                              "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "(given)" in r.output and json.loads(out.read_text())["normalization"]["std"] == [1.0]
    bad = onnx.load(str(model))
    from pacim.accuracy.metadata import NORM_KEY, set_metadata

    set_metadata(bad, {NORM_KEY: "not json"})
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    with pytest.raises(PacimError, match="metadata pacim.normalization is not"):
        model_normalization(tmp_path / "bad.onnx")


def _tiny_model_and_data(tmp_path):
    """A width-4 PacResNet18 (random, BN statistics set) with metadata, and an IDX folder."""
    torch = pytest.importorskip("torch")
    from pacim.accuracy.train.export import export_onnx
    from pacim.accuracy.train.model import PacResNet18
    from tests.test_idx_fetch import fake_fashion

    torch.manual_seed(0)
    m = PacResNet18(4, 1, 10, 2)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.uniform_(0.5, 2.0)
            mod.bias.data.uniform_(-0.2, 0.6)
    fake_fashion(tmp_path / "idx", n_train=120, n_test=10)
    path = export_onnx(m.eval(), tmp_path / "tiny.onnx", (28, 28), metadata={
        "pacim.normalization": {"mean": [0.5], "std": [0.29]},
        "pacim.dataset": str(tmp_path / "idx"), "pacim.holdout": "train[80:120]"})
    return path, tmp_path / "idx"


def test_calibrate_thresholds_curve_and_cycles_as_simulate(tmp_path):
    from pacim.accuracy.evaluate import open_model_and_data
    from pacim.accuracy.thresholds import (
        calibrate,
        calibration_slice,
        fc_rows_cycles,
        layer_weights,
        mean_cycles,
        speculation_values,
    )
    from pacim.arch import load_arch
    from pacim.pipeline import simulate

    model, _ = _tiny_model_and_data(tmp_path)
    data, split, a, b = calibration_slice(model, None, None, None, 30)
    assert (split, a, b) == ("train", 80, 110)  # the held-out training images, not test images
    net, ds, norm, src = open_model_and_data(model, data, split=split)
    assert src == "model metadata"
    x, y = ds.get(a, b, norm)
    arch = load_arch("pacim_65nm")
    res = calibrate(net, x, y, arch, target_cycles=13.0, batch=16)
    cyc = [p["mean_cycles"] for p in res["curve"]]
    assert cyc == sorted(cyc, reverse=True) and 10 <= min(cyc) and max(cyc) <= 16
    assert res["chosen"]["mean_cycles"] <= 13.0 and len(res["curve"]) >= 12
    # the cycles are measured as simulate counts them: per vector-tile over the PAC layers
    w = layer_weights(arch, net, x[:1])
    for i in range(2):
        rec = {}
        net.run(x[i:i + 1], "float", record=rec)
        e = speculation_values(net, {k: rec[k] for k in w}, 8)
        ours = mean_cycles(e, w, arch.dynamic_thresholds, fc_rows_cycles(arch, net, x[:1], 1))
        rep = simulate(arch, net.workload(x[i:i + 1])).to_dict()
        assert ours == pytest.approx(rep["digital_cycles_mean"], rel=1e-12)
    with pytest.raises(PacimError, match="exactly one of"):
        calibrate(net, x, y, arch)
    with pytest.raises(PacimError, match="dynamic configuration is off"):
        calibrate(net, x, y, arch.with_overrides({"pac.dynamic": None}), max_drop=1.0)


def test_calibrate_thresholds_command(tmp_path):
    from click.testing import CliRunner

    from pacim.cli import main

    model, _ = _tiny_model_and_data(tmp_path)
    args = ["calibrate-thresholds", "--model", str(model), "--images", "20", "--batch", "20",
            "--max-drop", "100", "--plot", str(tmp_path / "c.png"), "--json",
            str(tmp_path / "c.json")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "chosen (top-1 within 100 points of float)" in r.output
    assert "--set pac.dynamic.thresholds=[" in r.output and (tmp_path / "c.png").stat().st_size
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["data"].endswith("[80:100]") and d["chosen"]["mean_cycles"] == min(
        p["mean_cycles"] for p in d["curve"])
    r = CliRunner().invoke(main, args[:5] + ["--target-cycles", "9"])
    assert r.exit_code == 2 and "--target-cycles must be in 10..16" in r.output


def test_accuracy_table_row(tmp_path):
    from pacim.accuracy.table import COLUMNS, accuracy_row

    model, data = _tiny_model_and_data(tmp_path)
    r = accuracy_row(model, data, limit=10, batch=5)
    assert set(r["top1"]) == set(COLUMNS) and r["images"] == 10
    assert r["agreement_with_float"]["exact"] >= 0.8
    assert all(v > 0 for v in r["s_per_image"].values())
