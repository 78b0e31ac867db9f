"""Workload IR: an ordered list of layers with shapes, optionally carrying real tensors.

A layer is one matrix-vector workload for the CiM macro: a dot product of length ``n`` computed
for ``vectors`` input vectors against ``k`` weight columns. Conv layers are seen through im2col
(n = C*kh*kw, vectors = B*Ho*Wo). ``matmul`` layers (activation x activation, e.g. QK^T) are
counted but never mapped to the macro (weights must be stationary in the banks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

LayerKind = Literal["conv2d", "linear", "matmul"]


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer of a workload.

    conv2d: x is (B, C, H, W), weight (K, C, kh, kw).
    linear: x is (rows, in_features), weight (out_features, in_features).
    matmul: (rows x n) @ (n x k), both activations; never on the macro.
    """

    name: str
    kind: LayerKind
    n: int  # dot-product length N (C*kh*kw for conv, in_features for linear)
    k: int  # output channels / features (weight columns)
    vectors: int  # input vectors (output positions B*Ho*Wo, or rows/tokens)
    # conv geometry (None for linear/matmul)
    in_shape: tuple[int, ...] | None = None  # (B, C, H, W) for conv, (rows, n) for linear
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    exact: bool = False  # force exact (operand = bits) for this layer, e.g. the first conv
    # matmul only: the right operand (n x k, e.g. K^T or V) is what arch.attention maps
    group: int = 1  # left-operand instances sharing one right operand (GQA: heads / kv_heads)
    cached: int = 0  # elements of each right operand already in the KV cache (the rest are new)
    kv_axis: str | None = None  # the right operand's axis along KV positions: "k" (K^T), "n" (V)
    # real data, present when the workload was built with data
    weight: np.ndarray | None = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)
    x: np.ndarray | None = field(default=None, repr=False)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer."""
        return self.n * self.k * self.vectors

    @property
    def mapped(self) -> bool:
        """True when the layer runs on the CiM macro (weight-stationary)."""
        return self.kind != "matmul"

    @property
    def has_data(self) -> bool:
        """True when the layer carries its float weights and input."""
        return self.weight is not None and self.x is not None

    @property
    def out_hw(self) -> tuple[int, int] | None:
        """(Ho, Wo) for conv layers."""
        if self.kind != "conv2d" or self.in_shape is None:
            return None
        _, _, h, w = self.in_shape
        kh, kw = self.kernel
        return (
            (h + 2 * self.padding - kh) // self.stride + 1,
            (w + 2 * self.padding - kw) // self.stride + 1,
        )

    @property
    def in_channels(self) -> int:
        """Input channels (conv) or input features."""
        if self.kind == "conv2d" and self.in_shape is not None:
            return self.in_shape[1]
        return self.n

    def without_data(self) -> Layer:
        """The same layer, shapes only."""
        return replace(self, weight=None, bias=None, x=None)

    def shape_dict(self) -> dict[str, Any]:
        """JSON-friendly description of the layer's shape."""
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "k": self.k,
            "vectors": self.vectors,
            "macs": self.macs,
            "mapped": self.mapped,
            "exact": self.exact,
        }
        if self.kind == "conv2d":
            d.update(
                in_shape=list(self.in_shape or ()),
                kernel=list(self.kernel),
                stride=self.stride,
                padding=self.padding,
            )
        return d


def conv_layer(
    name: str,
    in_shape: tuple[int, int, int, int],
    out_ch: int,
    kernel: int | tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    **kw: Any,
) -> Layer:
    """Build a conv2d Layer from its input shape (B, C, H, W) and kernel geometry."""
    kh, kw_ = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    b, c, h, w = in_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw_) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"layer {name}: kernel {kh}x{kw_} does not fit input {h}x{w}")
    return Layer(
        name=name,
        kind="conv2d",
        n=c * kh * kw_,
        k=out_ch,
        vectors=b * ho * wo,
        in_shape=(b, c, h, w),
        kernel=(kh, kw_),
        stride=stride,
        padding=padding,
        **kw,
    )


def linear_layer(name: str, rows: int, in_features: int, out_features: int, **kw: Any) -> Layer:
    """Build a linear Layer: `rows` input vectors of length in_features."""
    return Layer(
        name=name,
        kind="linear",
        n=in_features,
        k=out_features,
        vectors=rows,
        in_shape=(rows, in_features),
        **kw,
    )


def matmul_layer(name: str, rows: int, n: int, k: int, count: int = 1, group: int = 1,
                 cached: int = 0, kv_axis: str | None = None) -> Layer:
    """An activation x activation product (count independent (rows x n)@(n x k)).

    `group` products share one right operand (count / group distinct ones: grouped-query
    attention's KV heads); `cached` of each right operand's n x k elements come from the KV
    cache, the rest are produced by this step. `kv_axis`: the right operand's axis that runs
    along KV positions ("k": K^T, dh x L; "n": V, L x dh; None: not a KV cache), what a cache
    resident in the banks (attention.kv_banks) is allocated by."""
    if group < 1 or count % group:
        raise ValueError(f"layer {name}: count {count} is not a multiple of group {group}")
    if not 0 <= cached <= n * k:
        raise ValueError(f"layer {name}: cached {cached} outside 0..{n * k} (n x k)")
    if kv_axis not in (None, "n", "k"):
        raise ValueError(f"layer {name}: kv_axis must be 'n', 'k' or None, got {kv_axis!r}")
    if kv_axis is not None and cached % (k if kv_axis == "n" else n):
        raise ValueError(f"layer {name}: cached {cached} is not whole KV positions")
    return Layer(name=name, kind="matmul", n=n, k=k, vectors=rows * count, in_shape=(rows, n),
                 group=group, cached=cached, kv_axis=kv_axis)


@dataclass(frozen=True, eq=False)
class Workload:
    """An ordered list of layers plus free-form metadata (source, seed, options)."""

    name: str
    layers: tuple[Layer, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """All MACs, mapped or not."""
        return sum(layer.macs for layer in self.layers)

    @property
    def mapped_macs(self) -> int:
        """MACs that run on the CiM macro."""
        return sum(layer.macs for layer in self.layers if layer.mapped)

    @property
    def has_data(self) -> bool:
        """True when every mapped layer carries data."""
        return all(layer.has_data for layer in self.layers if layer.mapped)

    def without_data(self) -> Workload:
        """Shapes-only copy."""
        return Workload(self.name, tuple(la.without_data() for la in self.layers), dict(self.meta))
