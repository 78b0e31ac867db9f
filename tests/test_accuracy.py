"""Datasets, `evaluate` and `pacim accuracy`: CIFAR-format end to end, and real data (digits)."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

from pacim.datasets import (
    ArrayDataset,
    FolderDataset,
    Normalization,
    load_dataset,
    read_cifar,
)
from pacim.errors import PacimError


def _write_cifar(path, images_nchw: np.ndarray, labels, key: bytes = b"labels") -> None:
    d = {b"batch_label": b"test", key: list(map(int, labels)),
         b"data": images_nchw.reshape(len(images_nchw), -1).astype(np.uint8),
         b"filenames": [b"x.png"] * len(labels)}
    path.write_bytes(pickle.dumps(d, protocol=2))


# --- datasets ------------------------------------------------------------------------------


def test_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    _write_cifar(d / "test_batch", imgs, [0, 1, 2, 3, 9])
    ds = load_dataset(d)
    assert len(ds) == 5
    x, y = ds.get(0, 5)
    assert x.shape == (5, 3, 32, 32) and np.allclose(x, imgs / 255.0)
    assert y.tolist() == [0, 1, 2, 3, 9]
    c100 = tmp_path / "test"
    _write_cifar(c100, imgs, [5, 99, 0, 1, 2], key=b"fine_labels")
    assert read_cifar(c100).get(0, 2)[1].tolist() == [5, 99]
    norm = Normalization.parse(norm="cifar10")
    xn, _ = ds.get(0, 1, norm)
    assert np.allclose(xn[0, 1], (imgs[0, 1] / 255.0 - 0.4822) / 0.2435)


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil"
    p.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(PacimError, match="not a CIFAR python batch"):
        read_cifar(p)


def test_npz_and_image_folder(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=nhwc, labels=np.array([1, 0, 1, 0]))
    x, y = load_dataset(tmp_path / "d.npz").get(0, 4)
    assert x.shape == (4, 3, 6, 6) and np.allclose(x[2], nhwc[2].transpose(2, 0, 1) / 255)
    root = tmp_path / "folder"
    for cls, img in (("cat", nhwc[0]), ("dog", nhwc[1]), ("cat", nhwc[2])):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / cls / f"{len(list((root / cls).iterdir()))}.png")
    ds = load_dataset(root)
    assert isinstance(ds, FolderDataset) and ds.classes == ["cat", "dog"] and len(ds) == 3
    x, y = ds.get(0, 3)
    assert y.tolist() == [0, 0, 1] and np.allclose(x[0], nhwc[0].transpose(2, 0, 1) / 255)
    big = load_dataset(root, size=(4, 4)).get(0, 1)[0]  # resized to the model's input
    assert big.shape == (1, 3, 4, 4)


def test_normalization_sources_and_errors(tmp_path):
    n = Normalization.parse("0.5,0.5,0.5", "0.25, 0.25, 0.25")
    assert n.mean == (0.5,) * 3 and n.std == (0.25,) * 3
    yml = tmp_path / "norm.yaml"
    yml.write_text("normalization:\n  mean: [0.1, 0.2, 0.3]\n  std: [1, 2, 3]\n")
    assert Normalization.parse(norm=str(yml)).std == (1.0, 2.0, 3.0)
    assert Normalization.parse(norm="imagenet", mean="0").mean == (0.0,)
    with pytest.raises(PacimError, match="std must be nonzero"):
        Normalization.parse(std="1,0,1")
    with pytest.raises(PacimError, match="mean: expected comma-separated numbers"):
        Normalization.parse(mean="a,b")
    with pytest.raises(PacimError, match="not a preset"):
        Normalization.parse(norm="nope")
    with pytest.raises(PacimError, match="2 values but the images have 3 channels"):
        Normalization((0.1, 0.2), (1.0,)).apply(np.zeros((1, 3, 2, 2)))
    with pytest.raises(PacimError, match="no such file"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "junk.bin").write_bytes(b"junk")
    with pytest.raises(PacimError, match="not a CIFAR python batch"):
        load_dataset(tmp_path / "junk.bin")
    np.savez(tmp_path / "bad.npz", foo=np.zeros(3))
    with pytest.raises(PacimError, match="expected arrays 'images' and 'labels'"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(PacimError, match="3 images but 2 labels"):
        ArrayDataset(np.zeros((3, 4)), np.zeros(2, int))


# --- end to end on a CIFAR-format dataset ------------------------------------------------------


def colour_net(path) -> None:
    """A CNN whose answer is the image's dominant colour channel: conv-bn-relu, maxpool, GAP,
    gemm (3 classes)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = np.zeros((3, 3, 3, 3), np.float32)
    w[np.arange(3), np.arange(3), 1, 1] = 1.0
    w += 0.01 * rng.standard_normal(w.shape).astype(np.float32)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", w), ("g", np.ones(3)), ("b", np.zeros(3)), ("m", np.full(3, 0.1)),
        ("v", np.ones(3)), ("fc", np.eye(3) * 4), ("fcb", np.zeros(3))]]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["out"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "colour", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 3, 32, 32])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, ["N", 3])], initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def colour_cifar(path, n: int = 96) -> np.ndarray:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, n)
    imgs = rng.integers(0, 140, (n, 3, 32, 32))
    imgs[np.arange(n), labels] += rng.integers(60, 115, (n, 1, 1))
    _write_cifar(path, imgs.astype(np.uint8), labels)
    return labels


def test_evaluate_end_to_end_on_cifar_format(tmp_path):
    pytest.importorskip("onnx")
    from pacim.accuracy import evaluate

    colour_net(tmp_path / "colour.onnx")
    colour_cifar(tmp_path / "test_batch")
    res = evaluate(tmp_path / "colour.onnx", tmp_path / "test_batch", "pacim_65nm",
                   batch=40, norm=Normalization.parse(norm="cifar10"))
    print("\ncolour CIFAR-format top-1:", {m: round(100 * a, 2) for m, a in res["top1"].items()},
          "agreement pac/float", res["agreement"]["pac_vs_float"])
    assert res["images"] == 96 and res["modes"] == ["float", "exact", "pac"]
    assert res["top1"]["float"] > 0.95 and res["top1"]["exact"] > 0.9
    assert 0.0 <= res["top1"]["pac"] <= 1.0 and 0.0 <= res["agreement"]["pac_vs_float"] <= 1.0
    assert res["first_layer"] == {"float": "float", "exact": "exact", "pac": "exact"}
    hw = res["hardware"]
    assert hw["images"] == 1 and hw["workload"] == "colour"
    assert hw.get("error") or hw["macs"] == 3 * 27 * 1024 + 9


def test_accuracy_command(tmp_path):
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from pacim.accuracy import accuracy_command

    colour_net(tmp_path / "colour.onnx")
    colour_cifar(tmp_path / "test_batch", n=20)
    out = tmp_path / "acc.json"
    args = ["--model", str(tmp_path / "colour.onnx"), "--data", str(tmp_path / "test_batch"),
            "--arch", "pacim_65nm", "--limit", "12", "--modes", "float,pac", "--norm",
            "cifar10", "--set", "pac.operand=3", "--set", "pac.dynamic=null", "--json", str(out)]
    r = CliRunner().invoke(accuracy_command, args)
    assert r.exit_code == 0, r.output
    assert "top-1 agreement: pac vs float" in r.output and "float" in r.output
    d = json.loads(out.read_text())
    assert d["images"] == 12 and set(d["top1"]) == {"float", "pac"}
    assert d["macro"]["operand"] == 3 and "exact" not in d["top1"]
    bad = CliRunner().invoke(accuracy_command, args[:2] + ["--data", str(tmp_path / "nope")]
                             + args[4:6])
    assert isinstance(bad.exception, PacimError) and "no such file" in str(bad.exception)
    bad = CliRunner().invoke(accuracy_command, args[:6] + ["--modes", "float,fast"])
    assert isinstance(bad.exception, PacimError) and "unknown mode 'fast'" in str(bad.exception)


# --- real data, offline: scikit-learn's digits -----------------------------------------------


def test_digits_mlp_float_exact_pac(tmp_path):
    """A small MLP trained on scikit-learn's bundled digits, written as ONNX (Gemm/Relu)."""
    pytest.importorskip("sklearn")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    from pacim.accuracy import evaluate

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.3, random_state=0,
                                          stratify=y)
    with warnings.catch_warnings(), threadpool_limits(1):  # small GEMMs: threads only contend
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=200,
                            random_state=0).fit(xtr, ytr)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w1", mlp.coefs_[0]), ("b1", mlp.intercepts_[0]),
        ("w2", mlp.coefs_[1]), ("b2", mlp.intercepts_[1])]]
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["out"], name="fc2")]
    g = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 64])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
              str(tmp_path / "digits.onnx"))
    np.savez(tmp_path / "digits_test.npz", images=xte, labels=yte)

    res = evaluate(tmp_path / "digits.onnx", tmp_path / "digits_test.npz", "pacim_65nm",
                   batch=128)
    both = evaluate(tmp_path / "digits.onnx", tmp_path / "digits_test.npz", "pacim_65nm",
                    batch=128, modes=("pac",), first_layer="pac", hw_images=0)
    acc = {m: round(100 * a, 2) for m, a in res["top1"].items()}
    print(f"\ndigits held-out ({res['images']} images) top-1 %: {acc}; "
          f"pac with the first layer in PAC too: {100 * both['top1']['pac']:.2f}; "
          f"sklearn's own: {100 * mlp.score(xte, yte):.2f}")
    assert res["images"] == len(yte)
    assert abs(res["top1"]["float"] - mlp.score(xte, yte)) < 1e-9  # same network
    assert res["top1"]["float"] > 0.85
    assert abs(res["top1"]["exact"] - res["top1"]["float"]) <= 0.02
    assert 0.5 < res["top1"]["pac"] <= 1.0 and 0.0 < both["top1"]["pac"] <= 1.0
