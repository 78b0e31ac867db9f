"""ONNX export of a trained `PacResNet18`, written with onnx.helper (no torch.onnx).

The graph is what the chip runs: Conv (the conv weight the macro quantizes), then BatchNorm as
a per-channel Mul + Add in the digital periphery (so pacim does not fold it into the weight),
Clip(0, alpha) for PACT, Add for the shortcut, GlobalAveragePool, Flatten, Gemm. Initializers
are float32, or float16 for a smaller file (then the whole graph, input included, is float16 so
that it stays valid ONNX; pacim computes in float64 either way). The model's normalization and
training facts go into metadata_props (`pacim.accuracy.metadata`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..metadata import set_metadata
from .model import BasicBlock, MacroConv, PacResNet18

OPSET = 13
DTYPES = ("float32", "float16")


class _Graph:
    def __init__(self, dtype: str) -> None:
        self.np_dtype = np.float16 if dtype == "float16" else np.float32
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, a: np.ndarray | torch.Tensor) -> str:
        from onnx import numpy_helper

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().double().numpy()
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(a).astype(self.np_dtype), n))
        return n

    def op(self, kind: str, inputs: list[str], prefix: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(prefix or kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, m: MacroConv, prefix: str) -> str:
        k = m.kernel_size[0]
        return self.op("Conv", [x, self.const(prefix + ".weight", m.macro_weight())], prefix,
                       kernel_shape=[k, k], strides=[m.stride[0]] * 2, pads=[m.padding[0]] * 4)

    def bn(self, x: str, m: nn.BatchNorm2d, prefix: str) -> str:
        inv = m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)
        shift = m.bias.detach().double() - m.running_mean.double() * inv
        y = self.op("Mul", [x, self.const(prefix + ".scale", inv.reshape(1, -1, 1, 1))], prefix)
        return self.op("Add", [y, self.const(prefix + ".shift", shift.reshape(1, -1, 1, 1))],
                       prefix + "_shift")

    def pact(self, x: str, alpha: torch.Tensor, prefix: str) -> str:
        return self.op("Clip", [x, self.const(prefix + ".min", np.zeros(())),
                                self.const(prefix + ".alpha", alpha.reshape(()))], prefix)

    def block(self, x: str, b: BasicBlock, prefix: str) -> str:
        h = self.pact(self.bn(self.conv(x, b.conv1, prefix + ".conv1"), b.bn1, prefix + ".bn1"),
                      b.act1.alpha, prefix + ".act1")
        h = self.bn(self.conv(h, b.conv2, prefix + ".conv2"), b.bn2, prefix + ".bn2")
        sc = x
        if b.down is not None:
            sc = self.bn(self.conv(x, b.down[0], prefix + ".down"), b.down[1],
                         prefix + ".down_bn")
        return self.pact(self.op("Add", [h, sc], prefix + ".add"), b.act2.alpha,
                         prefix + ".act2")


def to_onnx(model: PacResNet18, input_hw: tuple[int, int], *, dtype: str = "float32",
            metadata: dict[str, Any] | None = None, name: str = "pacim_resnet18") -> Any:
    """The model (its BatchNorm running statistics) as an onnx.ModelProto."""
    from onnx import TensorProto, helper

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    g = _Graph(dtype)
    h = g.pact(g.bn(g.conv("input", model.conv1, "conv1"), model.bn1, "bn1"),
               model.act1.alpha, "act1")
    for i, b in enumerate(model.layers):
        h = g.block(h, b, f"layer{i // 2 + 1}.{i % 2}")
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h], "pool")], "flatten")
    logits = g.op("Gemm", [h, g.const("fc.weight", model.fc.macro_weight()),
                           g.const("fc.bias", model.fc.bias)], "fc", transB=1)
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    cfg = model.config
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("input", elem, ["N", cfg["in_channels"], *input_hw])],
        [helper.make_tensor_value_info(logits, elem, ["N", cfg["classes"]])],
        initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="pacim train")
    m.ir_version = 8
    set_metadata(m, metadata or {})
    return m


def export_onnx(model: PacResNet18, path: str | Path, input_hw: tuple[int, int], *,
                dtype: str = "float32", metadata: dict[str, Any] | None = None) -> Path:
    """Write the model as ONNX (checked by onnx.checker) and return the path."""
    import onnx

    m = to_onnx(model, input_hw, dtype=dtype, metadata=metadata, name=Path(path).stem)
    onnx.checker.check_model(m)
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".part")
    onnx.save(m, str(tmp))
    tmp.replace(p)
    return p
