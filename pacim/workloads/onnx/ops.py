"""The numpy operators of the ONNX executor: the float conv of the reference network, pooling
(auto_pad, ceil_mode) and the elementwise and shape operators, each run on float64 arrays.

onnx.reference's evaluator was weighed against these: it would need our own Conv, Gemm and
MatMul anyway (the macro layers), its MaxPool / AveragePool are Python loops (22x / 120x slower
on a (8, 64, 112, 112) input), and with those three kept it ran the float CIFAR ResNet-18 10%
slower (62.5 vs 56.6 ms per image, CPU). The operators below are one numpy call each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .reader import Node

CHUNK_ELEMS = 1 << 23  # im2col elements per chunk of images: bounds memory on big batches

SUPPORTED_OPS = (
    "Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Add", "Sub", "Mul", "Div", "Sum",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
    "Gemm", "MatMul", "Identity", "Dropout", "Softmax", "LogSoftmax", "Constant", "Shape",
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Transpose", "Cast", "ReduceMean",
)


def same_pads(h: int, w: int, kh: int, kw: int, s: int, upper: bool
              ) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of auto_pad SAME_UPPER (upper) or SAME_LOWER: the output is
    ceil(input / stride), the odd pad goes to the end (UPPER) or the start (LOWER)."""
    th = max((math.ceil(h / s) - 1) * s + kh - h, 0)
    tw = max((math.ceil(w / s) - 1) * s + kw - w, 0)
    if upper:
        return (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    return (th - th // 2, tw - tw // 2, th // 2, tw // 2)


def bn_affine(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
              eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of an inference-mode BatchNormalization."""
    inv = gamma / np.sqrt(var + eps)
    return inv, beta - mean * inv


def float_conv2d(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, stride: int,
    pads: tuple[int, int, int, int],
) -> np.ndarray:
    """Float64 conv (groups=1) by im2col + GEMM, zero padding."""
    b_, c_, h, w_ = x.shape
    k_, _, kh, kw = w.shape
    pt, pl, pb, pr = pads
    ho = (h + pt + pb - kh) // stride + 1
    wo = (w_ + pl + pr - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(pads) else x
    wm = w.reshape(k_, -1).T
    out = np.empty((b_, k_, ho, wo), dtype=np.float64)
    chunk = max(1, CHUNK_ELEMS // max(ho * wo * c_ * kh * kw, 1))
    for i0 in range(0, b_, chunk):
        i1 = min(i0 + chunk, b_)
        win = np.lib.stride_tricks.sliding_window_view(xp[i0:i1], (kh, kw), axis=(2, 3))
        win = win[:, :, ::stride, ::stride][:, :, :ho, :wo]  # (b, C, Ho, Wo, kh, kw)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape((i1 - i0) * ho * wo, c_ * kh * kw)
        y = cols @ wm
        if bias is not None:
            y += bias
        out[i0:i1] = y.reshape(i1 - i0, ho, wo, k_).transpose(0, 3, 1, 2)
    return out


def _axes(nd: Node, args: list[Any], idx: int = 1) -> list[int] | None:
    if "axes" in nd.attrs:
        return list(nd.attrs["axes"])
    if len(args) > idx and args[idx] is not None:
        return [int(v) for v in np.asarray(args[idx]).reshape(-1)]
    return None


def _pool_geometry(nd: Node, h: int, w: int, default_stride: int = 1,
                   ) -> tuple[int, int, int, tuple[int, int, int, int], int, int]:
    """(kh, kw, stride, pads, ho, wo) of a 2-D pool, honouring auto_pad and ceil_mode."""
    ks = nd.attrs.get("kernel_shape")
    if ks is None or len(ks) != 2:
        raise ValueError(f"kernel_shape {ks} is not 2-D")
    kh, kw = ks
    strides = nd.attrs.get("strides", [default_stride] * 2)
    if len(set(strides)) != 1:
        raise ValueError(f"unequal strides {strides} are not supported")
    if any(d != 1 for d in nd.attrs.get("dilations", [1, 1])):
        raise ValueError("dilated pooling is not supported")
    s = int(strides[0])
    auto = nd.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(h, w, kh, kw, s, upper=auto == "SAME_UPPER")
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        p = nd.attrs.get("pads", [0, 0, 0, 0])
        pads = (p[0], p[1], p[2], p[3])
    ceil = bool(nd.attrs.get("ceil_mode", 0))

    def out(n: int, k: int, lo: int, hi: int) -> int:
        span = n + lo + hi - k
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + lo:  # the last window must start inside the input
            o -= 1
        return o

    return kh, kw, s, pads, out(h, kh, pads[0], pads[2]), out(w, kw, pads[1], pads[3])


def _pool(x: np.ndarray, nd: Node, kind: str) -> np.ndarray:
    """MaxPool / AveragePool over (B, C, H, W)."""
    if x.ndim != 4:
        raise ValueError(f"only 2-D pooling of (B, C, H, W) is supported, got {x.shape}")
    h, w = x.shape[2:]
    kh, kw, s, (pt, pl, pb, pr), ho, wo = _pool_geometry(nd, h, w)
    eb = max((ho - 1) * s + kh - (h + pt + pb), 0)  # extra rows for ceil_mode
    er = max((wo - 1) * s + kw - (w + pl + pr), 0)
    padw = ((0, 0), (0, 0), (pt, pb + eb), (pl, pr + er))

    def windows(a: np.ndarray) -> np.ndarray:
        v = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))
        return v[:, :, ::s, ::s][:, :, :ho, :wo]

    if kind == "max":
        return windows(np.pad(x, padw, constant_values=-np.inf)).max(axis=(4, 5))
    total = windows(np.pad(x, padw)).sum(axis=(4, 5))
    mask = np.zeros((1, 1, h + pt + pb + eb, w + pl + pr + er))
    if int(nd.attrs.get("count_include_pad", 0)):
        mask[:, :, : h + pt + pb, : w + pl + pr] = 1.0
    else:
        mask[:, :, pt:pt + h, pl:pl + w] = 1.0
    return total / windows(mask).sum(axis=(4, 5))


def _reshape(nd: Node, args: list[Any]) -> np.ndarray:
    x, shape = args[0], [int(v) for v in np.asarray(args[1]).reshape(-1)]
    if not int(nd.attrs.get("allowzero", 0)):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return np.reshape(x, shape)


def _clip(nd: Node, args: list[Any]) -> np.ndarray:
    lo = nd.attrs.get("min")
    hi = nd.attrs.get("max")
    if len(args) > 1 and args[1] is not None:
        lo = float(np.asarray(args[1]))
    if len(args) > 2 and args[2] is not None:
        hi = float(np.asarray(args[2]))
    return np.clip(args[0], lo, hi) if lo is not None or hi is not None else args[0]


def _softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    if log:
        return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _div(a: Any, b: Any) -> Any:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(a.dtype)
    return a / b


def _cast(nd: Node, args: list[Any]) -> np.ndarray:
    from onnx import helper

    return np.asarray(args[0]).astype(helper.tensor_dtype_to_np_dtype(int(nd.attrs["to"])))


def _batchnorm(nd: Node, args: list[Any]) -> np.ndarray:
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in args[1:5])
    inv, shift = bn_affine(gamma, beta, mean, var, float(nd.attrs.get("epsilon", 1e-5)))
    shape = (1, -1) + (1,) * (args[0].ndim - 2)
    return args[0] * inv.reshape(shape) + shift.reshape(shape)


def _flatten(nd: Node, x: np.ndarray) -> np.ndarray:
    axis = int(nd.attrs.get("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(lead, -1) if x.size else x.reshape(lead, 0)


def _squeeze(nd: Node, args: list[Any]) -> np.ndarray:
    axes = _axes(nd, args)
    return np.squeeze(args[0], axis=tuple(axes)) if axes is not None else np.squeeze(args[0])


def _unsqueeze(nd: Node, args: list[Any]) -> np.ndarray:
    axes = _axes(nd, args)
    if axes is None:
        raise ValueError("Unsqueeze needs axes")
    return np.expand_dims(args[0], tuple(axes))


def _reduce_mean(nd: Node, args: list[Any]) -> np.ndarray:
    axes = _axes(nd, args)
    if axes is None and int(nd.attrs.get("noop_with_empty_axes", 0)):
        return args[0]
    keep = bool(nd.attrs.get("keepdims", 1))
    return np.mean(args[0], axis=None if axes is None else tuple(axes), keepdims=keep)


def _shape(nd: Node, x: Any) -> np.ndarray:
    shp = np.asarray(np.shape(x), dtype=np.int64)
    return shp[nd.attrs.get("start", 0):nd.attrs.get("end", None)]


OpFn = Callable[[Node, list[Any]], Any]

# the operators run in numpy (Conv, Gemm, MatMul run as macro layers; Constant is folded)
OPS: dict[str, OpFn] = {
    "Relu": lambda nd, a: np.maximum(a[0], 0.0),
    "LeakyRelu": lambda nd, a: np.where(a[0] >= 0, a[0],
                                         a[0] * float(nd.attrs.get("alpha", 0.01))),
    "Clip": lambda nd, a: _clip(nd, a),
    "Add": lambda nd, a: np.add(a[0], a[1]),
    "Sub": lambda nd, a: np.subtract(a[0], a[1]),
    "Mul": lambda nd, a: np.multiply(a[0], a[1]),
    "Div": lambda nd, a: _div(a[0], a[1]),
    "Sum": lambda nd, a: sum(a[1:], start=np.asarray(a[0])),
    "BatchNormalization": _batchnorm,
    "MaxPool": lambda nd, a: _pool(a[0], nd, "max"),
    "AveragePool": lambda nd, a: _pool(a[0], nd, "avg"),
    "GlobalAveragePool": lambda nd, a: a[0].mean(axis=tuple(range(2, a[0].ndim)),
                                                  keepdims=True),
    "GlobalMaxPool": lambda nd, a: a[0].max(axis=tuple(range(2, a[0].ndim)),
                                             keepdims=True),
    "Flatten": lambda nd, a: _flatten(nd, a[0]),
    "Reshape": lambda nd, a: _reshape(nd, a),
    "Identity": lambda nd, a: a[0],
    "Dropout": lambda nd, a: a[0],
    "Softmax": lambda nd, a: _softmax(a[0], int(nd.attrs.get("axis", -1)), False),
    "LogSoftmax": lambda nd, a: _softmax(a[0], int(nd.attrs.get("axis", -1)), True),
    "Shape": lambda nd, a: _shape(nd, a[0]),
    "Gather": lambda nd, a: np.take(a[0], np.asarray(a[1], dtype=np.int64),
                                     axis=int(nd.attrs.get("axis", 0))),
    "Unsqueeze": lambda nd, a: _unsqueeze(nd, a),
    "Squeeze": lambda nd, a: _squeeze(nd, a),
    "Concat": lambda nd, a: np.concatenate([np.asarray(v) for v in a],
                                            axis=int(nd.attrs["axis"])),
    "Transpose": lambda nd, a: np.transpose(a[0], nd.attrs.get("perm")),
    "Cast": lambda nd, a: _cast(nd, a),
    "ReduceMean": lambda nd, a: _reduce_mean(nd, a),
}
