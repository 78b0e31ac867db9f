"""Built-in ResNet-18 (ImageNet and CIFAR stems) with a real float64 forward pass.

Weights are He-normal, deterministic from the seed. Batch-norm is folded into each conv's weight
and bias, with the statistics taken from the forward pass itself (per-channel mean/std of the conv
output over this batch, gamma = 1, beta = 0), so every activation is well scaled as in a trained
network. Every conv/fc layer carries its folded weight, bias and the input it really receives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, PacimError
from .images import synthetic_batch
from .ir import Layer, Workload, conv_layer, linear_layer
from .options import validate_options

BN_EPS = 1e-5
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, first-block stride)
VARIANTS = {"resnet18": "imagenet", "resnet18-cifar": "cifar"}
_DEFAULTS = {"imagenet": (224, 1000), "cifar": (32, 10)}  # (image size, classes)


class ResNetOptions(BaseModel):
    """Options of the built-in ResNet-18 workloads."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batch: int = Field(1, ge=1, le=1024)
    image_size: int | None = Field(None, ge=8, le=4096)  # default 224 (ImageNet) / 32 (CIFAR)
    num_classes: int | None = Field(None, ge=1)  # default 1000 / 10
    first_layer_exact: bool = True


def _shape_layers(
    stem: Literal["imagenet", "cifar"], batch: int, size: int, classes: int, exact_first: bool
) -> list[Layer]:
    """The mapped layers of ResNet-18 in execution order, shapes only."""
    layers = []
    if stem == "imagenet":
        layers.append(conv_layer("conv1", (batch, 3, size, size), 64, 7, 2, 3, exact=exact_first))
        h = layers[-1].out_hw[0]  # type: ignore[index]
        h = (h + 2 - 3) // 2 + 1  # 3x3/2 max pool, padding 1
    else:
        layers.append(conv_layer("conv1", (batch, 3, size, size), 64, 3, 1, 1, exact=exact_first))
        h = layers[-1].out_hw[0]  # type: ignore[index]
    cin = 64
    for si, (ch, stride) in enumerate(STAGES, start=1):
        for bi in range(2):
            s = stride if bi == 0 else 1
            pre = f"layer{si}.{bi}"
            c1 = conv_layer(f"{pre}.conv1", (batch, cin, h, h), ch, 3, s, 1)
            ho = c1.out_hw[0]  # type: ignore[index]
            layers += [c1, conv_layer(f"{pre}.conv2", (batch, ch, ho, ho), ch, 3, 1, 1)]
            if s != 1 or cin != ch:
                layers.append(conv_layer(f"{pre}.downsample", (batch, cin, h, h), ch, 1, s, 0))
            cin, h = ch, ho
    layers.append(linear_layer("fc", batch, cin, classes))
    return layers


def conv2d_float(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """(B, C, H, W) * (K, C, kh, kw) -> (K, B*Ho*Wo) float64 via im2col + one BLAS GEMM."""
    b, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :ho, :wo]
    cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, b * ho * wo)  # (c,dy,dx) rows
    return w.reshape(k, -1) @ cols


def _to_nchw(y: np.ndarray, b: int, ho: int, wo: int) -> np.ndarray:
    """(K, B*Ho*Wo) -> contiguous (B, K, Ho, Wo)."""
    return np.ascontiguousarray(y.reshape(-1, b, ho, wo).transpose(1, 0, 2, 3))


def max_pool_3x3s2(x: np.ndarray) -> np.ndarray:
    """3x3 max pool, stride 2, padding 1 (padding never wins)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    return np.ascontiguousarray(sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
                                .max(axis=(4, 5)))


ConvFn = Callable[[Layer, np.ndarray], np.ndarray]
FcFn = Callable[[Layer, np.ndarray], np.ndarray]


def _run(
    x: np.ndarray, by_name: dict[str, Layer], maxpool: bool, conv: ConvFn, fc: FcFn
) -> np.ndarray:
    """The ResNet-18 graph; `conv` returns the (BN-folded) conv output as (B, K, Ho, Wo)."""
    h = np.maximum(conv(by_name["conv1"], x), 0.0)
    if maxpool:
        h = max_pool_3x3s2(h)
    for si in range(1, len(STAGES) + 1):
        for bi in range(2):
            pre = f"layer{si}.{bi}"
            out = np.maximum(conv(by_name[f"{pre}.conv1"], h), 0.0)
            out = conv(by_name[f"{pre}.conv2"], out)
            ds = by_name.get(f"{pre}.downsample")
            sc = conv(ds, h) if ds is not None else h
            h = np.maximum(out + sc, 0.0)
    return fc(by_name["fc"], h.mean(axis=(2, 3)))


def _geometry(layer: Layer, x: np.ndarray) -> tuple[int, int, int]:
    _, _, h, w = x.shape
    kh, kw = layer.kernel
    p, s = layer.padding, layer.stride
    return x.shape[0], (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1


def resnet18_forward(
    workload: Workload, x: np.ndarray, return_inputs: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Float64 logits (B, classes) of a ResNet-18 workload built with data, on input x.

    With return_inputs, also the input every mapped layer receives, by layer name.
    """
    if workload.meta.get("builtin") not in VARIANTS or not workload.has_data:
        raise PacimError(f"workload {workload.name!r} is not a ResNet-18 built with data")
    by_name = {la.name: la for la in workload.layers}
    seen: dict[str, np.ndarray] = {}

    def conv(la: Layer, xin: np.ndarray) -> np.ndarray:
        seen[la.name] = xin
        b, ho, wo = _geometry(la, xin)
        y = conv2d_float(xin, la.weight, la.stride, la.padding) + la.bias[:, None]
        return _to_nchw(y, b, ho, wo)

    def fc(la: Layer, xin: np.ndarray) -> np.ndarray:
        seen[la.name] = xin
        return xin @ la.weight.T + la.bias

    logits = _run(np.asarray(x, np.float64), by_name, bool(workload.meta["maxpool"]), conv, fc)
    return (logits, seen) if return_inputs else logits


def _with_data(layers: list[Layer], x: np.ndarray, seed: int, tag: str, maxpool: bool
               ) -> tuple[list[Layer], np.ndarray]:
    """Run the forward pass with fresh He-normal weights, folding BN from the batch statistics."""
    from .rand import normal  # numba: only when data is built

    done: dict[str, Layer] = {}

    def conv(la: Layer, xin: np.ndarray) -> np.ndarray:
        if xin.shape != la.in_shape:
            raise AssertionError(f"{la.name}: input {xin.shape} != planned {la.in_shape}")
        k, (kh, kw) = la.k, la.kernel
        w = normal((k, la.in_channels, kh, kw), seed, f"{tag}/{la.name}", np.sqrt(2.0 / la.n))
        y = conv2d_float(xin, w, la.stride, la.padding)  # (K, P)
        mean = y.mean(axis=1)
        inv = 1.0 / np.sqrt(y.var(axis=1) + BN_EPS)
        y -= mean[:, None]
        y *= inv[:, None]
        done[la.name] = _replace_data(la, w * inv[:, None, None, None], -mean * inv, xin)
        return _to_nchw(y, *_geometry(la, xin))

    def fc(la: Layer, xin: np.ndarray) -> np.ndarray:
        w = normal((la.k, la.n), seed, f"{tag}/{la.name}", np.sqrt(2.0 / la.n))
        bias = np.zeros(la.k)
        done[la.name] = _replace_data(la, w, bias, np.ascontiguousarray(xin))
        return xin @ w.T + bias

    logits = _run(x, {la.name: la for la in layers}, maxpool, conv, fc)
    return [done[la.name] for la in layers], logits


def _replace_data(la: Layer, w: np.ndarray, b: np.ndarray, x: np.ndarray) -> Layer:
    return replace(la, weight=w, bias=b, x=x)


def build_resnet18(name: str, *, data: bool, seed: int, **options: Any) -> Workload:
    """Build `resnet18` (ImageNet) or `resnet18-cifar`; shapes only unless data."""
    stem = VARIANTS[name]
    opt = validate_options(ResNetOptions, options, f"workload {name}")
    size = opt.image_size or _DEFAULTS[stem][0]
    classes = opt.num_classes or _DEFAULTS[stem][1]
    try:
        layers = _shape_layers(stem, opt.batch, size, classes, opt.first_layer_exact)
    except ValueError as exc:
        raise ConfigError(f"workload {name}: image_size {size} is too small ({exc})") from None
    maxpool = stem == "imagenet"
    meta: dict[str, Any] = {
        "source": "builtin",
        "builtin": name,
        "seed": seed,
        "batch": opt.batch,
        "image_size": size,
        "num_classes": classes,
        "first_layer_exact": opt.first_layer_exact,
        "maxpool": maxpool,
        "data": data,
        "input": (f"{opt.batch} synthetic natural-looking {size}x{size} RGB image(s) (1/f fields"
                  " + occluding shapes, 8-bit), ImageNet mean/std normalized"),
        "weights": "He-normal; batch-norm folded with statistics from this batch (gamma=1, beta=0)",
    }
    if data:
        x = synthetic_batch(opt.batch, size, seed)
        layers, logits = _with_data(layers, x, seed, name, maxpool)
        meta["output_shape"] = list(logits.shape)
    return Workload(name, tuple(layers), meta)
