"""Workloads: built-in shapes and MAC totals, the ResNet-18 forward pass against an independent
float reference, llm-layer data, YAML loading and its errors, the registry, determinism, speed."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from pacim.errors import ConfigError, PacimError
from pacim.workloads import available_workloads, load_workload
from pacim.workloads.resnet import resnet18_forward

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "workloads").glob("*.yaml"))


# ----------------------------------------------------------------------------- reference network
def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Direct convolution: one einsum per kernel offset over strided slices (no im2col)."""
    bsz, _, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((bsz, k, ho, wo))
    for dy in range(kh):
        for dx in range(kw):
            ys = slice(dy, dy + stride * (ho - 1) + 1, stride)
            xs = slice(dx, dx + stride * (wo - 1) + 1, stride)
            # (K, C) x (B, C, Ho, Wo) -> (K, B, Ho, Wo)
            out += np.tensordot(w[:, :, dy, dx], xp[:, :, ys, xs], axes=([1], [1])).transpose(
                1, 0, 2, 3)
    return out + b[None, :, None, None]


def ref_maxpool(x: np.ndarray) -> np.ndarray:
    """3x3/2 max pool with padding 1, offset by offset."""
    h, w = x.shape[2:]
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    out = np.full(x.shape[:2] + (ho, wo), -np.inf)
    for dy in range(3):
        for dx in range(3):
            out = np.maximum(out, xp[:, :, dy:dy + 2 * (ho - 1) + 1:2, dx:dx + 2 * (wo - 1) + 1:2])
    return out


def ref_resnet18(wl, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Logits, each layer's input and each conv's output, from the layers' weights only."""
    p = {la.name: la for la in wl.layers}
    inputs: dict[str, np.ndarray] = {}
    outs: dict[str, np.ndarray] = {}

    def conv(name: str, t: np.ndarray) -> np.ndarray:
        la = p[name]
        inputs[name] = t
        outs[name] = ref_conv(t, la.weight, la.bias, la.stride, la.padding)
        return outs[name]

    relu = lambda t: np.where(t > 0, t, 0.0)  # noqa: E731
    t = relu(conv("conv1", x))
    if p["conv1"].kernel == (7, 7):
        t = ref_maxpool(t)
    for stage in (1, 2, 3, 4):
        for blk in (0, 1):
            pre = f"layer{stage}.{blk}"
            y = conv(f"{pre}.conv2", relu(conv(f"{pre}.conv1", t)))
            short = conv(f"{pre}.downsample", t) if f"{pre}.downsample" in p else t
            t = relu(y + short)
    feat = t.sum(axis=(2, 3)) / (t.shape[2] * t.shape[3])
    inputs["fc"] = feat
    logits = np.einsum("bi,oi->bo", feat, p["fc"].weight) + p["fc"].bias
    return logits, inputs, outs


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> None:
    scale = max(1.0, float(np.abs(b).max()))
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) <= tol * scale


# ----------------------------------------------------------------------------- ResNet-18 shapes
def test_resnet18_imagenet_shapes_and_macs():
    wl = load_workload("resnet18", data=False)
    assert wl.macs == 1_814_073_344 and round(wl.macs / 1e9, 2) == 1.81
    assert wl.mapped_macs == wl.macs
    convs = [la for la in wl.layers if la.kind == "conv2d"]
    assert len(wl.layers) == 21 and len(convs) == 20
    assert sum(la.kernel in ((3, 3), (7, 7)) for la in convs) == 17
    assert [la.name for la in convs if la.kernel == (1, 1)] == [
        f"layer{s}.0.downsample" for s in (2, 3, 4)
    ]
    first, fc = wl.layers[0], wl.layers[-1]
    assert (first.name, first.in_shape, first.kernel, first.stride, first.padding) == (
        "conv1", (1, 3, 224, 224), (7, 7), 2, 3)
    assert first.macs == 112 * 112 * 64 * 147
    assert (fc.kind, fc.n, fc.k, fc.vectors) == ("linear", 512, 1000, 1)
    assert wl.layers[1].in_shape == (1, 64, 56, 56)  # after the 3x3/2 max pool
    assert [la.in_shape[2] for la in convs if la.name.endswith("conv2")] == [56] * 2 + [
        28] * 2 + [14] * 2 + [7] * 2
    assert not wl.has_data and all(la.x is None for la in wl.layers)


def test_resnet18_cifar_shapes_and_macs():
    wl = load_workload("resnet18-cifar", data=False)
    assert wl.macs == 555_422_720 and round(wl.macs / 1e9, 2) == 0.56
    assert len(wl.layers) == 21
    assert wl.layers[0].kernel == (3, 3) and wl.layers[0].stride == 1
    assert wl.layers[1].in_shape == (1, 64, 32, 32)  # no max pool
    assert (wl.layers[-1].n, wl.layers[-1].k) == (512, 10)


def test_resnet_batch_scales_macs_and_first_layer_exact_flag():
    one = load_workload("resnet18", data=False)
    four = load_workload("resnet18", data=False, batch=4)
    assert four.macs == 4 * one.macs and four.meta["batch"] == 4
    assert [la.exact for la in one.layers] == [True] + [False] * 20
    off = load_workload("resnet18-cifar", data=False, first_layer_exact=False)
    assert not any(la.exact for la in off.layers)


# ----------------------------------------------------------------------------- ResNet-18 data
@pytest.mark.parametrize(
    "name, opts", [("resnet18-cifar", {}), ("resnet18", {"image_size": 64, "batch": 2})]
)
def test_resnet_forward_matches_independent_reference(name, opts):
    wl = load_workload(name, seed=3, **opts)
    assert wl.has_data
    x = wl.layers[0].x
    assert x.shape == wl.layers[0].in_shape
    ref_logits, ref_inputs, ref_outs = ref_resnet18(wl, x)
    logits, seen = resnet18_forward(wl, x, return_inputs=True)
    _close(logits, ref_logits)
    assert logits.shape == tuple(wl.meta["output_shape"])
    for la in wl.layers:  # every stored input is what the reference network feeds that layer
        _close(la.x, ref_inputs[la.name])
        _close(seen[la.name], ref_inputs[la.name])
    # batch-norm folded from this batch's statistics: every conv output is standardized
    for y in ref_outs.values():
        assert np.allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-9)
        std = y.std(axis=(0, 2, 3))  # sqrt(var / (var + eps)): just under 1
        assert std.max() <= 1.0 + 1e-9 and std.min() > 0.5 and std.mean() > 0.99


def test_resnet18_imagenet_with_data():
    wl = load_workload("resnet18")
    assert wl.has_data and wl.macs == 1_814_073_344
    by = {la.name: la for la in wl.layers}
    img = by["conv1"].x
    assert img.shape == (1, 3, 224, 224) and img.dtype == np.float64
    assert -2.2 < img.min() < img.max() < 2.7  # ImageNet-normalized 8-bit pixels
    assert by["layer2.0.downsample"].x is by["layer2.0.conv1"].x
    for la in wl.layers[1:]:
        assert la.x.shape == la.in_shape and la.weight.shape[0] == la.k
        assert la.x.min() >= 0.0 and 0.05 < (la.x > 0).mean() <= 1.0  # post-ReLU real activations
        assert np.isfinite(la.weight).all() and la.bias.shape == (la.k,)
    assert by["conv1"].exact and wl.meta["seed"] == 0 and "synthetic" in wl.meta["input"]


def test_resnet_determinism():
    a = load_workload("resnet18-cifar", seed=7, image_size=16)
    b = load_workload("resnet18-cifar", seed=7, image_size=16)
    c = load_workload("resnet18-cifar", seed=8, image_size=16)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.x, lb.x)
        assert np.array_equal(la.bias, lb.bias)
    assert not np.array_equal(a.layers[0].x, c.layers[0].x)
    assert not np.array_equal(a.layers[5].weight, c.layers[5].weight)


def test_resnet18_forward_rejects_other_workloads():
    with pytest.raises(PacimError, match="not a ResNet-18 built with data"):
        resnet18_forward(load_workload("resnet18-cifar", data=False), np.zeros((1, 3, 32, 32)))


# ----------------------------------------------------------------------------- llm-layer
LLM_SMALL = {"hidden": 1024, "ffn": 2752, "heads": 8, "tokens": 48}


def _llm_macs(t: int, d: int, f: int, h: int, kvh: int) -> int:
    dh = d // h
    return t * (d * d * 2 + 2 * d * kvh * dh + 3 * d * f) + 2 * h * t * t * dh


def test_llm_layer_shapes_and_macs():
    wl = load_workload("llm-layer", data=False)
    names = [la.name for la in wl.layers]
    assert names == ["q_proj", "k_proj", "v_proj", "attn_qk", "attn_pv", "o_proj", "gate_proj",
                     "up_proj", "down_proj"]
    assert wl.macs == _llm_macs(128, 4096, 11008, 32, 32)
    assert wl.mapped_macs == 128 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert [la.name for la in wl.layers if not la.mapped] == ["attn_qk", "attn_pv"]
    by = {la.name: la for la in wl.layers}
    assert (by["down_proj"].n, by["down_proj"].k, by["down_proj"].vectors) == (11008, 4096, 128)
    gqa = load_workload("llm-layer", data=False, hidden=512, heads=8, kv_heads=2, ffn=1024,
                        tokens=16)
    assert {la.name: la.k for la in gqa.layers}["k_proj"] == 128
    assert gqa.macs == _llm_macs(16, 512, 1024, 8, 2)


def test_llama2_example_file():
    wl = load_workload(ROOT / "workloads" / "llm_layer_llama2_7b.yaml", data=False)
    assert wl.macs == _llm_macs(128, 4096, 11008, 32, 32)
    assert wl.meta["builtin"] == "llm-layer" and wl.meta["file"].endswith("llama2_7b.yaml")


def _ref_block(wl, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """o_proj / down_proj inputs recomputed head by head, token by token (float64)."""
    by = {la.name: la for la in wl.layers}
    w = {n: by[n].weight.astype(np.float64) for n in by if by[n].mapped}
    x = by["q_proj"].x.astype(np.float64)
    t, d, h = opts["tokens"], opts["hidden"], opts["heads"]
    dh = d // h

    def rot(m: np.ndarray) -> np.ndarray:  # RoPE, pair (i, i + dh/2) rotated by pos * theta_i
        out = np.empty_like(m)
        for pos in range(t):
            for i in range(dh // 2):
                a = pos * 10000.0 ** (-2 * i / dh)
                c, s = math.cos(a), math.sin(a)
                out[pos, i] = m[pos, i] * c - m[pos, i + dh // 2] * s
                out[pos, i + dh // 2] = m[pos, i + dh // 2] * c + m[pos, i] * s
        return out

    q, k, v = x @ w["q_proj"].T, x @ w["k_proj"].T, x @ w["v_proj"].T
    ctx = np.zeros((t, d))
    for head in range(h):
        sl = slice(head * dh, (head + 1) * dh)
        qh, kh = rot(q[:, sl]), rot(k[:, sl])
        for i in range(t):
            s = np.array([qh[i] @ kh[j] / math.sqrt(dh) for j in range(i + 1)])
            p = np.exp(s - s.max())
            ctx[i, sl] = (p / p.sum()) @ v[: i + 1, sl]
    # MLP input = RMSNorm(residual + o_proj output), the residual being r_t * (q input) for an
    # unknown per-token r_t > 0: solve s_t * mlp_in_t - r_t * x_t = o_t and check the fit
    o_out = by["o_proj"].x.astype(np.float64) @ w["o_proj"].T
    mlp_in = by["gate_proj"].x.astype(np.float64)
    for i in range(t):
        a = np.stack([mlp_in[i], -x[i]], axis=1)
        coef, *_ = np.linalg.lstsq(a, o_out[i], rcond=None)
        assert coef[0] > 0 and coef[1] > 0
        assert np.abs(a @ coef - o_out[i]).max() <= 1e-4 * np.abs(o_out[i]).max()
    g, u = mlp_in @ w["gate_proj"].T, mlp_in @ w["up_proj"].T
    down = g / (1.0 + np.exp(-g)) * u
    return ctx, down


def test_llm_layer_data_spike_and_forward():
    wl = load_workload("llm-layer", seed=1, **LLM_SMALL)
    assert wl.has_data
    by = {la.name: la for la in wl.layers}
    t, d = LLM_SMALL["tokens"], LLM_SMALL["hidden"]
    chans = wl.meta["spike"]["channels"]
    assert len(chans) == 2
    for name in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"):
        x = by[name].x
        assert x.shape == (t, d) and by[name].weight.shape == (by[name].k, d)
        tok_max = np.abs(x).max(axis=1)
        assert int(np.argmax(tok_max)) == 0  # the massive-activation token
        assert tok_max[0] > 5 * np.median(tok_max)
        assert set(np.argsort(np.abs(x[0]))[-2:]) == set(chans)
        assert abs(float(np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1)).mean()) - 1) < 1e-3
    w_std = float(by["up_proj"].weight.std())
    assert abs(w_std * math.sqrt(d) - 1.0) < 0.01  # N(0, 1/in)
    ctx, down = _ref_block(wl, LLM_SMALL)
    _close(by["o_proj"].x.astype(np.float64), ctx, 1e-4)
    _close(by["down_proj"].x.astype(np.float64), down, 1e-4)


def test_llm_layer_determinism():
    small = {"hidden": 256, "ffn": 512, "heads": 4, "tokens": 16}
    a = load_workload("llm-layer", seed=2, **small)
    b = load_workload("llm-layer", seed=2, **small)
    c = load_workload("llm-layer", seed=3, **small)
    for la, lb in zip(a.layers, b.layers, strict=True):
        if la.mapped:
            assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.x, lb.x)
    assert not np.array_equal(a.layers[0].weight, c.layers[0].weight)


# ----------------------------------------------------------------------------- YAML
def test_shipped_yaml_files_load():
    assert {p.name for p in SHIPPED} >= {"tiny_cnn.yaml", "mlp.yaml", "llm_layer_llama2_7b.yaml"}
    for path in SHIPPED:
        wl = load_workload(path, data=False)
        assert wl.layers and wl.macs > 0 and wl.meta["file"] == str(path)


def test_yaml_layer_list_with_random_data():
    wl = load_workload(ROOT / "workloads" / "tiny_cnn.yaml")
    assert wl.name == "tiny-cnn" and wl.has_data and wl.meta["source"] == "yaml"
    conv1 = wl.layers[0]
    assert conv1.exact and conv1.x.shape == (1, 3, 32, 32) and conv1.weight.shape == (16, 3, 3, 3)
    assert conv1.x.min() == 0.0 and 0.4 < (conv1.x > 0).mean() < 0.6  # ReLU'd N(0,1)
    fc = wl.layers[-1]
    assert fc.x.shape == (1, 4096) and fc.weight.shape == (10, 4096)
    assert abs(float(fc.weight.std()) - math.sqrt(2 / 4096)) < 0.1 * math.sqrt(2 / 4096)
    again = load_workload(ROOT / "workloads" / "tiny_cnn.yaml")
    other = load_workload(ROOT / "workloads" / "tiny_cnn.yaml", seed=5)
    assert np.array_equal(again.layers[1].weight, wl.layers[1].weight)
    assert not np.array_equal(other.layers[1].weight, wl.layers[1].weight)
    assert other.meta["seed"] == 5


def test_yaml_explicit_layers(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text(
        "seed: 4\nlayers:\n"
        "  - {kind: conv2d, in_shape: [2, 8, 10, 12], out_channels: 5, kernel: [3, 1], stride: 2}\n"
        "  - {kind: linear, rows: 7, in_features: 9, out_features: 3}\n"
        "  - {kind: matmul, rows: 4, n: 6, k: 4, count: 3}\n"
    )
    wl = load_workload(f)
    conv, lin, mm = wl.layers
    assert (conv.name, conv.kernel, conv.out_hw, conv.n, conv.vectors) == (
        "conv2d0", (3, 1), (4, 6), 24, 2 * 4 * 6)
    assert (lin.n, lin.k, lin.vectors) == (9, 3, 7) and lin.x.shape == (7, 9)
    assert not mm.mapped and mm.macs == 4 * 6 * 4 * 3 and mm.x is None
    assert wl.has_data and wl.meta["seed"] == 4 and wl.name == "w"
    f.write_text("data: none\nlayers:\n  - {kind: linear, rows: 1, in_features: 2, "
                 "out_features: 2}\n")
    assert not load_workload(f).has_data


@pytest.mark.parametrize(
    "text, match",
    [
        ("layers:\n  - {kind: linear, rows: 1, in_features: 2, out_features: 2, bias: 1}\n",
         r"layers\.0\.bias: unknown key"),
        ("layers:\n  - {kind: linear, rows: '1', in_features: 2, out_features: 2}\n",
         r"layers\.0\.rows: Input should be a valid integer"),
        ("layers:\n  - {kind: conv2d, in_shape: [1, 3, 8], out_channels: 2, kernel: 3}\n",
         r"layers\.0\.in_shape"),
        ("layers:\n  - {kind: conv2d, in_shape: [1, 3, 2, 2], out_channels: 2, kernel: 3}\n",
         r"layers\.0: .*does not fit"),
        ("layers:\n  - {kind: pool, rows: 1}\n", r"layers\.0\.kind: must be one of"),
        ("layers: []\n", r"layers: List should have at least 1 item"),
        ("layer:\n  - {kind: linear}\n", r"layer: unknown key"),
        ("seed: 1.5\nlayers:\n  - {kind: matmul, rows: 1, n: 1, k: 1}\n", r"seed:"),
        ("data: real\nlayers:\n  - {kind: matmul, rows: 1, n: 1, k: 1}\n", r"data:"),
        ("layers: [\n", r"invalid YAML \(line 2"),
        ("- 1\n- 2\n", r"must be a mapping"),
        ("", r"must be a mapping of keys, got an empty file"),
        ("builtin: resnet50\n", r"builtin: unknown built-in 'resnet50'"),
        ("builtin: llm-layer\nhiden: 64\n", r"hiden: unknown option"),
        ("builtin: resnet18\nbatch: two\n", r"batch: Input should be a valid integer"),
        ("builtin: llm-layer\nhidden: 100\nheads: 3\n", r"not a multiple of heads"),
    ],
)
def test_yaml_errors_name_file_and_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_workload(f, data=False)
    msg = str(info.value)
    assert msg.startswith(str(f)) and "\n" not in msg


def test_yaml_missing_file_and_builtin_overrides(tmp_path):
    with pytest.raises(PacimError, match="workload file not found: .*nope.yaml"):
        load_workload(tmp_path / "nope.yaml")
    f = tmp_path / "r.yaml"
    f.write_text("builtin: resnet18-cifar\nseed: 9\nbatch: 2\n")
    wl = load_workload(f, data=False, batch=3)
    assert wl.meta["batch"] == 3 and wl.meta["seed"] == 9 and wl.layers[0].in_shape[0] == 3
    g = tmp_path / "m.yaml"
    g.write_text("layers:\n  - {kind: matmul, rows: 1, n: 1, k: 1}\n")
    with pytest.raises(PacimError, match="apply only to built-in"):
        load_workload(g, batch=2)


# ----------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert available_workloads() == ["resnet18", "resnet18-cifar", "llm-layer", "smollm2-135m",
                                     "fashion-resnet18"]
    with pytest.raises(PacimError, match="unknown workload 'resnet50'.*resnet18, resnet18-cifar"):
        load_workload("resnet50")
    with pytest.raises(PacimError, match="bach: unknown option .*valid options: batch"):
        load_workload("resnet18", data=False, bach=2)
    with pytest.raises(PacimError, match="tokens: Input should be greater"):
        load_workload("llm-layer", data=False, tokens=0)
    with pytest.raises(PacimError, match="unknown option"):
        load_workload("smollm2-135m", foo=1)
    with pytest.raises(PacimError, match="seed must be a non-negative integer"):
        load_workload("resnet18", seed="1")
    with pytest.raises(PacimError, match="not found"):
        load_workload("missing.onnx")


def test_no_data_is_fast():
    for name in ("resnet18", "resnet18-cifar", "llm-layer"):
        load_workload(name, data=False)  # imports
        best = min(_timed(name) for _ in range(3))
        assert best < 0.02, f"{name} shapes-only build took {best:.3f} s"


def _timed(name: str) -> float:
    t0 = time.perf_counter()
    load_workload(name, data=False)
    return time.perf_counter() - t0
