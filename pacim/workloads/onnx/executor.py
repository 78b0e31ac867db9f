"""The ONNX executor: a CNN graph as numpy steps whose Conv (groups=1) and Gemm/MatMul with a
constant weight are *macro layers*, plus the workload IR of the graph.

A macro layer runs in one of three modes:

- ``float``: float64 im2col + GEMM (the reference network);
- ``exact``: through the bit-serial macro at operand = max(xbit, wbit): exact integer
  arithmetic on the quantized tensors, i.e. the fake-quantized float network;
- ``pac``:   through the macro as the arch configures it (operand, approx, dynamic); a first
  conv runs exact when ``pac.first_layer_exact`` (PACiM), or as configured.

Activations are quantized per image (macro_layers.py), weights once per layer. Everything else
(BatchNormalization is folded into the Conv before it) runs in float64 numpy (ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...errors import PacimError
from ...macro.operands import PreparedWeight, prepare_weight
from ..ir import Layer, Workload, conv_layer, linear_layer
from .macro_layers import MacroConfig, macro_conv2d, macro_linear
from .ops import OPS, SUPPORTED_OPS, bn_affine, float_conv2d, same_pads
from .reader import Node, load_model, read_graph

Mode = Literal["float", "exact", "pac"]
MODES: tuple[str, ...] = ("float", "exact", "pac")
FIRST_LAYER_CHOICES: tuple[str, ...] = ("arch", "float", "exact", "pac")


def as_config(config: Any) -> MacroConfig:
    """None (8b/8b, operand 4, PAC), a MacroConfig, or an Arch, as a MacroConfig."""
    if config is None:
        return MacroConfig()
    if isinstance(config, MacroConfig):
        return config
    return MacroConfig.from_arch(config)


@dataclass(eq=False)
class MacroLayer:
    """A Conv or Gemm/MatMul with a constant weight: runs float, exact or through PAC."""

    name: str
    kind: Literal["conv2d", "linear"]
    weight: np.ndarray  # conv (K, C, kh, kw); linear (K, N)
    bias: np.ndarray | None
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    auto_pad: str = "NOTSET"
    trans_a: bool = False  # Gemm transA: the activation arrives as (N, rows)
    _prepared: dict[int, PreparedWeight] = field(default_factory=dict, repr=False)

    def prepared(self, wbit: int) -> PreparedWeight:
        """The weight quantized to wbit bits (cached)."""
        if wbit not in self._prepared:
            self._prepared[wbit] = prepare_weight(self.weight, wbit, name=self.name)
        return self._prepared[wbit]

    def conv_pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Explicit pads for an input of h x w (resolves auto_pad)."""
        if self.auto_pad in ("NOTSET", "VALID"):
            return self.pads if self.auto_pad == "NOTSET" else (0, 0, 0, 0)
        kh, kw = self.weight.shape[2:]
        return same_pads(h, w, kh, kw, self.stride, upper=self.auto_pad == "SAME_UPPER")


class OnnxNet:
    """An ONNX CNN as a list of numpy steps; Conv/Gemm/MatMul are `MacroLayer`s.

    ``OnnxNet.load("net.onnx").run(x, "pac", config=arch)`` -> the graph's first output.
    """

    def __init__(self, name: str, nodes: list[Node], consts: dict[str, np.ndarray],
                 input_name: str, input_shape: tuple[int | None, ...], output_name: str,
                 source: str = "") -> None:
        self.name = name
        self.source = source
        self.nodes = nodes
        self.consts = consts
        self.input_name = input_name
        self.input_shape = input_shape
        self.output_name = output_name
        self.layers: dict[str, MacroLayer] = {}
        self._fold_and_check()

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> OnnxNet:
        """Read an .onnx file (needs the onnx extra)."""
        p = Path(path)
        return cls.from_model(load_model(p), name=p.stem, source=str(p))

    @classmethod
    def from_model(cls, model: Any, name: str = "onnx", source: str = "") -> OnnxNet:
        """Build from an in-memory onnx.ModelProto."""
        g = read_graph(model, name, source)
        return cls(g.name, g.nodes, g.consts, g.input_name, g.input_shape, g.output_name,
                   g.source)

    def _err(self, node: Node, msg: str) -> PacimError:
        return PacimError(f"{self.source or self.name}: node {node.name} ({node.op}): {msg}")

    def _const(self, node: Node, idx: int, what: str) -> np.ndarray:
        if idx >= len(node.inputs) or node.inputs[idx] not in self.consts:
            raise self._err(node, f"{what} must be a constant initializer")
        return np.asarray(self.consts[node.inputs[idx]], dtype=np.float64)

    def _fold_and_check(self) -> None:
        """Reject unsupported operators, build MacroLayers, fold BatchNormalization into Conv."""
        for nd in self.nodes:
            if nd.op not in SUPPORTED_OPS:
                raise self._err(nd, "operator not supported; supported: "
                                + ", ".join(SUPPORTED_OPS))
        consumers: dict[str, int] = {}
        for nd in self.nodes:
            for i in nd.inputs:
                consumers[i] = consumers.get(i, 0) + 1
        producer: dict[str, Node] = {}
        kept: list[Node] = []
        for nd in self.nodes:
            if nd.op == "Conv":
                self.layers[nd.name] = self._conv_layer(nd)
            elif nd.op == "Gemm":
                self.layers[nd.name] = self._gemm_layer(nd)
            elif nd.op == "MatMul":
                if len(nd.inputs) < 2 or nd.inputs[1] not in self.consts:
                    raise self._err(nd, "only a MatMul by a constant weight (second input) is "
                                    "supported; activation x activation products are not")
                w = np.asarray(self.consts[nd.inputs[1]], dtype=np.float64)
                if w.ndim != 2:
                    raise self._err(nd, f"weight must be 2-D, got shape {w.shape}")
                self.layers[nd.name] = MacroLayer(nd.name, "linear",
                                                  np.ascontiguousarray(w.T), None)
            elif nd.op == "BatchNormalization":
                src = producer.get(nd.inputs[0])
                if (src is not None and src.op == "Conv" and consumers.get(nd.inputs[0]) == 1
                        and nd.inputs[0] != self.output_name):
                    self._fold_bn(src, nd)
                    src.outputs = [nd.outputs[0]]
                    producer[nd.outputs[0]] = src
                    continue
                self._bn_params(nd)  # validated now, applied as a per-channel affine
            for o in nd.outputs:
                producer[o] = nd
            kept.append(nd)
        self.nodes = kept
        if not self.layers:
            raise PacimError(f"{self.source or self.name}: no Conv/Gemm/MatMul layer to map "
                             "onto the macro")

    def _conv_layer(self, nd: Node) -> MacroLayer:
        w = self._const(nd, 1, "the weight")
        if w.ndim != 4:
            raise self._err(nd, f"only 2-D convolutions are supported (weight shape {w.shape})")
        if int(nd.attrs.get("group", 1)) != 1:
            raise self._err(nd, f"group={nd.attrs['group']} is not supported (groups=1 only)")
        if any(d != 1 for d in nd.attrs.get("dilations", [1, 1])):
            raise self._err(nd, f"dilations {nd.attrs['dilations']} are not supported")
        strides = nd.attrs.get("strides", [1, 1])
        if len(set(strides)) != 1:
            raise self._err(nd, f"unequal strides {strides} are not supported")
        ks = nd.attrs.get("kernel_shape")
        if ks is not None and tuple(ks) != w.shape[2:]:
            raise self._err(nd, f"kernel_shape {ks} does not match the weight {w.shape}")
        pads = tuple(nd.attrs.get("pads", [0, 0, 0, 0]))
        b = self._const(nd, 2, "the bias") if len(nd.inputs) > 2 and nd.inputs[2] else None
        return MacroLayer(nd.name, "conv2d", w, b, stride=int(strides[0]),
                          pads=(pads[0], pads[1], pads[2], pads[3]),
                          auto_pad=str(nd.attrs.get("auto_pad", "NOTSET")))

    def _gemm_layer(self, nd: Node) -> MacroLayer:
        if len(nd.inputs) < 2 or nd.inputs[1] not in self.consts:
            raise self._err(nd, "input B must be a constant weight")
        b = self._const(nd, 1, "B")
        if b.ndim != 2:
            raise self._err(nd, f"B must be 2-D, got shape {b.shape}")
        alpha = float(nd.attrs.get("alpha", 1.0))
        beta = float(nd.attrs.get("beta", 1.0))
        w = b if int(nd.attrs.get("transB", 0)) else b.T  # (K, N)
        k = w.shape[0]
        bias = None
        if len(nd.inputs) > 2 and nd.inputs[2]:
            c = self._const(nd, 2, "C")
            if c.size not in (1, k):
                raise self._err(nd, f"C of shape {c.shape} is not a per-output bias")
            bias = beta * np.broadcast_to(c.reshape(-1), (k,)).astype(np.float64)
        return MacroLayer(nd.name, "linear", np.ascontiguousarray(alpha * w), bias,
                          trans_a=bool(nd.attrs.get("transA", 0)))

    def _bn_params(self, nd: Node) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, shift) of an inference-mode BatchNormalization."""
        gamma, beta, mean, var = (self._const(nd, i, n) for i, n in
                                  enumerate(("scale", "B", "mean", "var"), start=1))
        return bn_affine(gamma, beta, mean, var, float(nd.attrs.get("epsilon", 1e-5)))

    def _fold_bn(self, conv: Node, bn: Node) -> None:
        layer = self.layers[conv.name]
        inv, shift = self._bn_params(bn)
        if inv.shape != (layer.weight.shape[0],):
            raise self._err(bn, f"{inv.shape[0]} channels but the Conv has "
                            f"{layer.weight.shape[0]}")
        layer.weight = layer.weight * inv[:, None, None, None]
        b0 = layer.bias if layer.bias is not None else 0.0
        layer.bias = b0 * inv + shift

    # -- running ----------------------------------------------------------------------------
    @property
    def macro_layers(self) -> list[MacroLayer]:
        """Conv/Gemm/MatMul layers in execution order."""
        return [self.layers[n.name] for n in self.nodes if n.name in self.layers]

    def layer_modes(self, mode: str, first_layer: str = "arch",
                    config: Any = None) -> dict[str, str]:
        """Mode of each macro layer for a run in `mode` (see `run`)."""
        if mode not in MODES:
            raise PacimError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if first_layer not in FIRST_LAYER_CHOICES:
            raise PacimError(f"unknown first-layer mode {first_layer!r}; choose from "
                             f"{', '.join(FIRST_LAYER_CHOICES)}")
        cfg = as_config(config)
        # `pac` = as the arch configures: PAC, or on a bp_bs chip with an ADC model, analog
        base = "exact" if mode == "pac" and not cfg.pac_enabled and cfg.analog is None else mode
        modes = {la.name: base for la in self.macro_layers}
        if mode != "float" and modes:
            first = next(iter(modes))
            if first_layer != "arch":
                modes[first] = first_layer
            elif base == "pac" and cfg.analog is None and cfg.first_layer_exact and \
                    self.macro_layers[0].kind == "conv2d":
                # PACiM keeps a CNN's first conv exact; the scheduler applies the same rule
                # (pacim.sched.layer_is_exact), so accuracy and hardware cost agree
                modes[first] = "exact"
        return modes

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """x as float64, reshaped to the model's input shape when only the layout differs."""
        x = np.asarray(x, dtype=np.float64)
        want = self.input_shape
        if len(want) == x.ndim and all(d is None or d == s for d, s in
                                       zip(want[1:], x.shape[1:], strict=True)):
            return x
        known = [d for d in want[1:] if d is not None]
        if len(known) == len(want) - 1 and int(np.prod(known)) == int(np.prod(x.shape[1:])):
            return x.reshape((x.shape[0],) + tuple(known))
        shown = "x".join("?" if d is None else str(d) for d in want)
        raise PacimError(f"{self.name}: input of shape {x.shape} does not fit the model's "
                         f"input {shown}")

    def run(self, x: np.ndarray, mode: str = "float", *, config: Any = None,
            first_layer: str = "arch", record: dict[str, np.ndarray] | None = None,
            image0: int = 0) -> np.ndarray:
        """Forward pass; returns the graph's first output (float64).

        mode: ``float`` | ``exact`` | ``pac`` for every macro layer; config: an Arch or a
        MacroConfig (default 8b/8b, operand 4, PAC). first_layer: ``arch`` (exact when
        pac.first_layer_exact in pac mode) or a mode forced on the first macro layer.
        record: filled with each macro layer's float input. image0: index of x[0] in its
        dataset (the analog model's noise is drawn per image, whatever the batching).
        On a bp_bs chip ``pac`` runs the analog array (pacim.macro.analog) when the arch has an
        ``analog`` section, and a first conv runs at macro.first_layer_bits when set.
        """
        cfg = as_config(config)
        modes = self.layer_modes(mode, first_layer, cfg)
        order = {la.name: i for i, la in enumerate(self.macro_layers)}
        env: dict[str, Any] = dict(self.consts)
        env[self.input_name] = self.check_input(x)
        for nd in self.nodes:
            args = [env[i] if i else None for i in nd.inputs]
            if nd.name in self.layers:
                layer = self.layers[nd.name]
                if layer.trans_a:
                    args[0] = np.asarray(args[0]).T
                if record is not None:
                    record[layer.name] = args[0]
                out = self._run_macro(layer, args[0], modes[layer.name], cfg,
                                      order[layer.name], image0)
                env[nd.outputs[0]] = out
                continue
            fn = OPS[nd.op]
            try:
                outs = fn(nd, args)
            except PacimError:
                raise
            except (ValueError, IndexError, TypeError) as e:
                raise self._err(nd, f"cannot execute: {e}") from None
            if not isinstance(outs, tuple):
                outs = (outs,)
            for name, val in zip(nd.outputs, outs, strict=False):
                if name:
                    env[name] = val
        return np.asarray(env[self.output_name], dtype=np.float64)

    def _run_macro(self, layer: MacroLayer, x: np.ndarray, mode: str,
                   cfg: MacroConfig, index: int = 0, image0: int = 0) -> np.ndarray:
        xb, wb = cfg.xbit, cfg.wbit
        if index == 0 and layer.kind == "conv2d" and cfg.first_layer_bits is not None:
            xb = wb = cfg.first_layer_bits  # the network's first conv (macro.first_layer_bits)
        adc = cfg.analog.with_stream(index) if mode == "pac" and cfg.analog is not None \
            else None
        operand = max(xb, wb) if mode == "exact" or adc is not None else cfg.operand
        x = np.asarray(x, dtype=np.float64)
        if layer.kind == "conv2d":
            if x.ndim != 4 or x.shape[1] != layer.weight.shape[1]:
                raise PacimError(f"{self.name}: node {layer.name} (Conv): input of shape "
                                 f"{x.shape} does not fit weight {layer.weight.shape}")
            pads = layer.conv_pads(x.shape[2], x.shape[3])
            if mode == "float":
                return float_conv2d(x, layer.weight, layer.bias, stride=layer.stride, pads=pads)
            return macro_conv2d(
                x, layer.prepared(wb), layer.weight.shape[2:], layer.bias,
                stride=layer.stride, pads=pads, xbit=xb, operand=operand,
                approx=cfg.approx, dynamic=cfg.dynamic if mode == "pac" and adc is None else None,
                analog=adc, image0=image0)
        if x.ndim < 2 or x.shape[-1] != layer.weight.shape[1]:
            raise PacimError(f"{self.name}: node {layer.name}: input of shape {x.shape} does "
                             f"not fit weight (K, N) = {layer.weight.shape}")
        if mode == "float":
            y = x @ layer.weight.T
            return y + layer.bias if layer.bias is not None else y
        return macro_linear(x, layer.prepared(wb), layer.bias, xbit=xb, operand=operand,
                            approx=cfg.approx, analog=adc, image0=image0)

    # -- the workload IR ------------------------------------------------------------------------
    def synthetic_input(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        """A deterministic standard-normal batch of the model's input shape."""
        shape = list(self.input_shape)
        if not shape:
            raise PacimError(f"{self.name}: the model's input has no shape")
        shape[0] = batch if shape[0] is None else shape[0]
        if any(d is None for d in shape[1:]):
            raise PacimError(f"{self.name}: the input shape {self.input_shape} has symbolic "
                             "dimensions; pass input data to build the workload")
        return np.random.default_rng(seed).standard_normal(shape)

    def workload(self, x: np.ndarray, *, data: bool = True, name: str | None = None,
                 meta: dict[str, Any] | None = None) -> Workload:
        """The IR of the graph on input x: one Layer per macro layer with its real float input."""
        rec: dict[str, np.ndarray] = {}
        self.run(x, "float", record=rec)
        layers: list[Layer] = []
        for la in self.macro_layers:
            xin = rec[la.name]
            kw: dict[str, Any] = {}
            if la.kind == "conv2d":
                pads = la.conv_pads(xin.shape[2], xin.shape[3])
                pad = pads[0]
                if len(set(pads)) != 1:  # the IR pads symmetrically: pre-pad with zeros
                    xin = np.pad(xin, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
                    pad = 0
                if data:
                    kw = dict(weight=la.weight, bias=la.bias, x=np.ascontiguousarray(xin))
                b, c, h, w = xin.shape
                layers.append(conv_layer(la.name, (b, c, h, w), la.weight.shape[0],
                                         la.weight.shape[2:], stride=la.stride, padding=pad,
                                         **kw))
            else:
                x2 = xin.reshape(-1, xin.shape[-1])
                if data:
                    kw = dict(weight=la.weight, bias=la.bias, x=np.ascontiguousarray(x2))
                layers.append(linear_layer(la.name, x2.shape[0], la.weight.shape[1],
                                           la.weight.shape[0], **kw))
        m: dict[str, Any] = {"source": "onnx", "path": self.source, "batch": int(x.shape[0]),
                             "input_shape": "x".join(str(d) for d in np.shape(x))}
        m.update(meta or {})
        return Workload(name or self.name, tuple(layers), m)


# --- the loader entry point -----------------------------------------------------------------


def from_onnx(
    path: str | Path,
    *,
    input_data: np.ndarray | None = None,
    data: bool = True,
    seed: int = 0,
    batch: int = 1,
    name: str | None = None,
) -> Workload:
    """Read an ONNX CNN into pacim's workload IR.

    Each Conv/Gemm/MatMul becomes a layer. With data, each layer carries its weight, bias and
    the float input it really receives from a float forward pass of `input_data`, or of a
    deterministic standard-normal batch (`batch` images, `seed`) of the model's input shape.
    """
    net = OnnxNet.load(path)
    if input_data is None:
        x = net.synthetic_input(batch, seed)
        how = "synthetic"
    else:
        x = net.check_input(input_data)
        how = "given"
    return net.workload(x, data=data, name=name,
                        meta={"input": how, "seed": seed if input_data is None else None})
