"""ONNX import and the numpy graph executor: float vs an independent reference, exact vs the
fake-quantized float graph, PAC vs exact, the workload IR, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pacim.errors import PacimError  # noqa: E402
from pacim.functional import conv2d  # noqa: E402
from pacim.macro import prepare_weight  # noqa: E402
from pacim.workloads.onnx import (  # noqa: E402
    MacroConfig,
    OnnxNet,
    from_onnx,
    macro_conv2d,
)

THR = (7000.0, 10000.0, 13000.0)


# --- model building ------------------------------------------------------------------------


class Builder:
    """Collects nodes and initializers for a small onnx.helper model."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.params: dict[str, np.ndarray] = {}
        self.n = 0

    def const(self, name: str, a: np.ndarray) -> str:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        self.params[name] = a
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}{self.n}",
                                           **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0,
             bias: bool = True, **attrs) -> str:
        i = self.n + 1
        w = self.const(f"w{i}", self.rng.standard_normal((cout, cin, k, k))
                       * np.sqrt(2.0 / (cin * k * k)))
        ins = [x, w]
        if bias:
            ins.append(self.const(f"b{i}", 0.1 * self.rng.standard_normal(cout)))
        attrs.setdefault("pads", [pad] * 4)
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], **attrs)

    def bn(self, x: str, c: int) -> str:
        i = self.n + 1
        ins = [x, self.const(f"g{i}", 1 + 0.2 * self.rng.standard_normal(c)),
               self.const(f"be{i}", 0.1 * self.rng.standard_normal(c)),
               self.const(f"m{i}", 0.1 * self.rng.standard_normal(c)),
               self.const(f"v{i}", 0.5 + self.rng.random(c))]
        return self.node("BatchNormalization", ins, epsilon=1e-5)

    def model(self, out: str, in_shape: list, out_shape: list | None = None, opset: int = 13):
        g = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            initializer=self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def small_resnet(seed: int = 0):
    """conv-bn-relu, a residual block, maxpool, strided conv-bn-clip, avgpool, GAP, gemm, matmul."""
    b = Builder(seed)
    a = b.node("Relu", [b.bn(b.conv("input", 3, 8, 3, pad=1), 8)])
    r = b.bn(b.conv(a, 8, 8, 3, pad=1, bias=False), 8)
    r = b.node("Relu", [b.node("Add", [r, a])])
    r = b.node("MaxPool", [r], kernel_shape=[2, 2], strides=[2, 2])
    r = b.bn(b.conv(r, 8, 16, 3, stride=2, pad=1), 16)
    r = b.node("Clip", [r, b.const("lo", np.array(0.0, np.float32)),
                        b.const("hi", np.array(6.0, np.float32))])
    r = b.node("AveragePool", [r], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    r = b.node("GlobalAveragePool", [r])
    r = b.node("Flatten", [r], axis=1)
    r = b.node("Gemm", [r, b.const("fc1", b.rng.standard_normal((10, 16)) * 0.4),
                        b.const("fc1b", 0.1 * b.rng.standard_normal(10))], transB=1)
    r = b.node("Relu", [r])
    r = b.node("MatMul", [r, b.const("fc2", b.rng.standard_normal((10, 5)) * 0.4)])
    r = b.node("Add", [r, b.const("fc2b", 0.1 * b.rng.standard_normal(5))])
    return b.model(r, ["N", 3, 8, 8], ["N", 5]), b.params


# --- an independent numpy reference ----------------------------------------------------------


def ref_fq(x: np.ndarray, bits: int = 8) -> tuple[np.ndarray, float, float]:
    """Fake-quantize one tensor (PACiM's per-tensor formula): (x~, step, bias)."""
    lo = x.min()
    scale = x.max() - lo + 1e-7
    levels = 2**bits - 1
    q = np.round(np.clip((x - lo) / scale, 0, 1) * levels)
    return q * scale / levels + lo, scale / levels, lo


def ref_conv(x, w, b, stride, pad, quant: bool):
    """Direct convolution by kernel offsets; quant fake-quantizes each image and the weight
    and pads with the dequantized pad code (PACiM)."""
    if quant:
        w = ref_fq(w)[0]
    outs = []
    for img in x:
        pv = 0.0
        if quant:
            img, step, lo = ref_fq(img)
            scale = step * 255
            pv = np.round(np.clip(abs(lo) / scale, 0, 1) * 255) * step + lo
        xp = np.pad(img, ((0, 0), (pad, pad), (pad, pad)), constant_values=pv)
        k, c, kh, kw = w.shape
        ho = (xp.shape[1] - kh) // stride + 1
        wo = (xp.shape[2] - kw) // stride + 1
        y = np.zeros((k, ho, wo))
        for dy in range(kh):
            for dx in range(kw):
                patch = xp[:, dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
                y += np.einsum("kc,chw->khw", w[:, :, dy, dx], patch)
        outs.append(y + (0 if b is None else b[:, None, None]))
    return np.stack(outs)


def ref_linear(x, w, b, quant: bool):
    """x (B, N) @ w (K, N).T per image (rows fake-quantized one by one)."""
    if quant:
        w = ref_fq(w)[0]
        x = np.stack([ref_fq(r)[0] for r in x])
    return x @ w.T + (0 if b is None else b)


def ref_bn(x, p, i):
    g, be, m, v = (p[f"{k}{i}"].astype(np.float64) for k in ("g", "be", "m", "v"))
    s = g / np.sqrt(v + 1e-5)
    return x * s[None, :, None, None] + (be - m * s)[None, :, None, None]


def fold(p, conv_i, bn_i):
    """Folded (w, b) of conv conv_i followed by bn bn_i (for the quantized reference)."""
    w = p[f"w{conv_i}"].astype(np.float64)
    b = p.get(f"b{conv_i}", np.zeros(w.shape[0])).astype(np.float64)
    g, be, m, v = (p[f"{k}{bn_i}"].astype(np.float64) for k in ("g", "be", "m", "v"))
    s = g / np.sqrt(v + 1e-5)
    return w * s[:, None, None, None], (b - m) * s + be


def ref_small_resnet(x, p, quant: bool, first_exact: bool = True):
    """small_resnet in plain numpy; quant: every Conv/Gemm/MatMul fake-quantized."""
    f64 = {k: v.astype(np.float64) for k, v in p.items()}
    if quant:
        w1, b1 = fold(p, 1, 2)
        a = np.maximum(ref_conv(x, w1, b1, 1, 1, True), 0)
        w4, b4 = fold(p, 4, 5)
        r = ref_conv(a, w4, b4, 1, 1, True)
    else:
        a = np.maximum(ref_bn(ref_conv(x, f64["w1"], f64["b1"], 1, 1, False), p, 2), 0)
        r = ref_bn(ref_conv(a, f64["w4"], None, 1, 1, False), p, 5)
    r = np.maximum(r + a, 0)
    b_, c, h, w = r.shape
    r = r.reshape(b_, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    if quant:
        w9, b9 = fold(p, 9, 10)
        r = ref_conv(r, w9, b9, 2, 1, True)
    else:
        r = ref_bn(ref_conv(r, f64["w9"], f64["b9"], 2, 1, False), p, 10)
    r = np.clip(r, 0, 6)
    # 2x2 avg pool, stride 1, pad bottom/right by 1, count_include_pad=0
    rp = np.pad(r, ((0, 0), (0, 0), (0, 1), (0, 1)))
    ones = np.pad(np.ones(r.shape[2:]), ((0, 1), (0, 1)))
    s = rp[:, :, :-1, :-1] + rp[:, :, 1:, :-1] + rp[:, :, :-1, 1:] + rp[:, :, 1:, 1:]
    cnt = ones[:-1, :-1] + ones[1:, :-1] + ones[:-1, 1:] + ones[1:, 1:]
    r = (s / cnt).mean(axis=(2, 3))
    r = np.maximum(ref_linear(r, f64["fc1"], f64["fc1b"], quant), 0)
    return ref_linear(r, f64["fc2"].T, None, quant) + f64["fc2b"]


def _save(model, tmp_path, name="net.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def net_and_params():
    model, params = small_resnet()
    return OnnxNet.from_model(model, name="small"), params


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).standard_normal((3, 3, 8, 8))


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# --- numerics -----------------------------------------------------------------------------


def test_float_matches_independent_reference(net_and_params, images):
    net, p = net_and_params
    y = net.run(images, "float")
    ref = ref_small_resnet(images, p, quant=False)
    assert y.shape == (3, 5)
    assert _rel(y, ref) < 1e-6
    # BatchNormalization was folded into the Convs before it
    assert [n.op for n in net.nodes].count("BatchNormalization") == 0
    assert [la.kind for la in net.macro_layers] == ["conv2d"] * 3 + ["linear"] * 2


def test_exact_mode_is_the_fake_quantized_graph(net_and_params, images):
    net, p = net_and_params
    y = net.run(images, "exact", config=MacroConfig())
    ref = ref_small_resnet(images, p, quant=True)
    assert _rel(y, ref) < 1e-9
    assert _rel(y, net.run(images, "float")) > 1e-6  # quantization does change the output


def test_pac_differs_from_exact_but_stays_close(net_and_params, images):
    net, _ = net_and_params
    cfg = MacroConfig(operand=4, dynamic=THR)
    ex = net.run(images, "exact", config=cfg)
    pac = net.run(images, "pac", config=cfg)
    assert not np.allclose(pac, ex)
    assert _rel(pac, ex) < 0.5
    # the first layer's mode matters: forced PAC differs from the arch's exact first layer
    assert not np.allclose(net.run(images, "pac", config=cfg, first_layer="pac"), pac)
    assert net.layer_modes("pac", config=cfg)["conv1"] == "exact"
    assert set(list(net.layer_modes("pac", config=cfg).values())[1:]) == {"pac"}
    # PAC off in the arch: pac mode is exact
    off = MacroConfig(pac_enabled=False)
    assert np.array_equal(net.run(images, "pac", config=off), net.run(images, "exact",
                                                                      config=off))


def test_images_are_quantized_one_by_one(net_and_params, images):
    net, _ = net_and_params
    cfg = MacroConfig(dynamic=THR)
    batch = net.run(images, "pac", config=cfg, first_layer="pac")
    for i in range(len(images)):
        one = net.run(images[i:i + 1], "pac", config=cfg, first_layer="pac")
        assert np.allclose(one[0], batch[i], rtol=0, atol=1e-12)


@pytest.mark.parametrize("operand,dynamic,stride,pad", [(4, THR, 1, 1), (3, None, 2, 1),
                                                         (8, None, 1, 0)])
def test_batched_conv_equals_functional_conv2d_per_image(operand, dynamic, stride, pad):
    rng = np.random.default_rng(operand)
    x = np.maximum(rng.standard_normal((3, 16, 9, 9)), 0) * 40 + rng.random((3, 1, 1, 1))
    w = rng.standard_normal((8, 16, 3, 3))
    b = rng.standard_normal(8)
    y = macro_conv2d(x, prepare_weight(w, 8), (3, 3), b, stride=stride, pads=(pad,) * 4,
                     xbit=8, operand=operand, approx="pac", dynamic=dynamic)
    for i in range(3):
        ref = conv2d(x[i:i + 1], w, b, stride=stride, padding=pad, operand=operand,
                     dynamic=dynamic)
        assert np.allclose(y[i:i + 1], ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_operator_coverage_against_onnx_reference():
    """auto_pad, asymmetric pads, ceil_mode, count_include_pad, dynamic Reshape, transA, ReduceMean,
    Softmax."""
    from onnx.reference import ReferenceEvaluator

    b = Builder(3)
    r = b.node("Relu", [b.conv("input", 2, 4, 3, pads=None, auto_pad="SAME_UPPER")])
    r = b.node("MaxPool", [r], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0],
               ceil_mode=1)
    r = b.conv(r, 4, 4, 2, pads=[0, 1, 1, 0])
    r = b.node("AveragePool", [r], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)
    r = b.node("Add", [r, b.node("ReduceMean", [r], axes=[2, 3], keepdims=1)])
    shp = b.node("Shape", [r])
    n = b.node("Gather", [shp, b.const("zero", np.array(0, np.int64))], axis=0)
    n = b.node("Unsqueeze", [n, b.const("ax0", np.array([0], np.int64))])
    shape = b.node("Concat", [n, b.const("m1", np.array([-1], np.int64))], axis=0)
    r = b.node("Transpose", [b.node("Reshape", [r, shape])], perm=[1, 0])
    r = b.node("Gemm", [r, b.const("fc", b.rng.standard_normal((3, 48)))], transA=1,
               transB=1, alpha=0.5)
    r = b.node("Softmax", [r], axis=1)
    model = b.model(r, [None, 2, 11, 11])
    x = np.random.default_rng(0).standard_normal((2, 2, 11, 11))
    ref = ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0]
    y = OnnxNet.from_model(model).run(x, "float")
    assert y.shape == ref.shape
    assert np.allclose(y, ref, rtol=1e-4, atol=1e-6)  # the ONNX reference runs in float32
    net = OnnxNet.from_model(model)
    assert np.abs(net.run(x, "exact") - y).max() < 0.05


def test_same_pads_pooling_and_unfolded_batchnorm():
    """auto_pad SAME_LOWER / SAME_UPPER pooling against a window-by-window loop, and a
    BatchNormalization with no Conv before it (a per-channel affine) against its formula.

    Not onnx.reference here: at opset 13 its BatchNormalization blends the batch statistics in
    (momentum), and its SAME_LOWER MaxPool returns a floor-sized output."""
    from pacim.workloads.onnx.ops import same_pads

    for h, k, s in ((11, 3, 2), (8, 3, 2), (8, 2, 2), (7, 3, 1), (5, 4, 3)):
        for upper in (True, False):
            top, left, bottom, right = same_pads(h, h, k, k, s, upper)
            assert (h + top + bottom - k) // s + 1 == -(-h // s)  # output = ceil(h / s)
            assert (top, bottom) == (left, right) and abs(top - bottom) <= 1
            assert (bottom >= top) if upper else (top >= bottom)
    x = np.random.default_rng(2).standard_normal((2, 2, 8, 8))
    for auto in ("SAME_LOWER", "SAME_UPPER"):
        b = Builder(5)
        r = b.bn("input", 2)
        r = b.node("MaxPool", [r], kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto)
        r = b.node("MatMul", [r, b.const("eye", np.eye(4))])
        net = OnnxNet.from_model(b.model(r, [None, 2, 8, 8]))
        assert [n.op for n in net.nodes].count("BatchNormalization") == 1  # not folded
        g, be, mu, var = (np.asarray(b.params[n], dtype=np.float64)
                          for n in ("g1", "be1", "m1", "v1"))
        ch = (slice(None), None, None)
        bn = (x - mu[ch]) / np.sqrt(var[ch] + 1e-5) * g[ch] + be[ch]
        top, left, _, _ = same_pads(8, 8, 3, 3, 2, auto == "SAME_UPPER")
        want = np.full((2, 2, 4, 4), -np.inf)
        for i in range(4):
            for j in range(4):
                r0, c0 = 2 * i - top, 2 * j - left
                win = bn[:, :, max(r0, 0):r0 + 3, max(c0, 0):c0 + 3]
                want[:, :, i, j] = win.max(axis=(2, 3))
        assert np.allclose(net.run(x, "float"), want, rtol=1e-12, atol=1e-12)


# --- the workload IR ---------------------------------------------------------------------------


def test_from_onnx_builds_the_workload_with_real_inputs(tmp_path, net_and_params):
    model, _ = small_resnet()
    path = _save(model, tmp_path)
    wl = from_onnx(path, seed=3)
    names = [la.name for la in wl.layers]
    assert names == ["conv1", "conv4", "conv9", "gemm15", "matmul17"]
    c1, c2, c3, g1, g2 = wl.layers
    assert c1.in_shape == (1, 3, 8, 8) and c1.kernel == (3, 3) and c1.padding == 1
    assert c3.stride == 2 and c3.in_shape == (1, 8, 4, 4) and c3.k == 16
    assert (g1.n, g1.k, g1.vectors) == (16, 10, 1) and (g2.n, g2.k) == (10, 5)
    assert wl.macs == 8 * 27 * 64 + 8 * 72 * 64 + 16 * 72 * 4 + 160 + 50
    assert wl.has_data and wl.meta["source"] == "onnx" and wl.meta["input"] == "synthetic"
    # the recorded inputs are the real float activations of the synthetic image
    net, _ = net_and_params
    x = net.synthetic_input(1, 3)
    assert np.array_equal(c1.x, x)
    assert np.all(c2.x >= 0)  # post-ReLU
    # deterministic, and the shapes-only form
    assert np.array_equal(from_onnx(path, seed=3).layers[1].x, c2.x)
    bare = from_onnx(path, data=False)
    assert not bare.has_data and [la.macs for la in bare.layers] == [la.macs for la in wl.layers]
    given = from_onnx(path, input_data=np.ones((2, 3, 8, 8)))
    assert given.layers[0].in_shape[0] == 2 and given.meta["input"] == "given"


def test_load_workload_and_simulate_an_onnx_file(tmp_path):
    from pacim.arch import load_arch
    from pacim.pipeline import simulate
    from pacim.workloads import load_workload

    path = _save(small_resnet()[0], tmp_path)
    wl = load_workload(path, seed=1)
    assert len(wl.layers) == 5 and wl.has_data
    rep = simulate(load_arch("pacim_65nm"), wl).to_dict()
    assert rep["macs"] == wl.macs and len(rep["layers"]) == 5
    assert rep["layers"][0]["exact"] and not rep["layers"][1]["exact"]


# --- errors --------------------------------------------------------------------------------


def test_unsupported_operator_names_the_node(tmp_path):
    b = Builder()
    r = b.node("LRN", [b.conv("input", 3, 4, 3)], size=3)
    path = _save(b.model(r, [1, 3, 8, 8]), tmp_path)
    with pytest.raises(PacimError, match=r"node lrn2 \(LRN\): operator not supported"):
        OnnxNet.load(path)
    with pytest.raises(PacimError, match="lrn2"):
        from_onnx(path)


def test_grouped_conv_and_activation_matmul_are_rejected():
    b = Builder()
    w = b.const("w", np.ones((4, 1, 3, 3)))
    r = b.node("Conv", ["input", w], kernel_shape=[3, 3], group=4)
    with pytest.raises(PacimError, match=r"node conv1 \(Conv\): group=4 is not supported"):
        OnnxNet.from_model(b.model(r, [1, 4, 8, 8]))
    b = Builder()
    r = b.node("MatMul", ["input", "input"])
    with pytest.raises(PacimError, match=r"matmul1 \(MatMul\).*constant weight"):
        OnnxNet.from_model(b.model(r, [1, 4, 4]))


def test_bad_files_and_missing_extra(tmp_path, monkeypatch):
    with pytest.raises(PacimError, match="no such file"):
        OnnxNet.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model\xff" * 10)
    with pytest.raises(PacimError, match="junk.onnx"):
        OnnxNet.load(junk)
    net = OnnxNet.from_model(small_resnet()[0])
    with pytest.raises(PacimError, match="does not fit the model's input"):
        net.run(np.zeros((1, 3, 9, 9)))
    with pytest.raises(PacimError, match="unknown mode"):
        net.run(np.zeros((1, 3, 8, 8)), "approx")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(PacimError, match=r"pip install 'pacim\[onnx\]'"):
        OnnxNet.load(junk)
