"""ONNX import: a CNN graph -> pacim's workload IR, plus a numpy executor of the graph.

Every Conv (groups=1) and Gemm/MatMul with a constant weight is a *macro layer*; it runs in one
of three modes:

- ``float``: float64 im2col + GEMM (the reference network);
- ``exact``: through the bit-serial macro at operand = max(xbit, wbit): exact integer
  arithmetic on the quantized tensors, i.e. the fake-quantized float network;
- ``pac``:   through the macro as the arch configures it (operand, approx, dynamic); a first
  conv runs exact when ``pac.first_layer_exact`` (PACiM), or as configured.

Quantization follows pacim's functional layers (per-tensor asymmetric uint, conv padding with
the pad code) with one scale per *image*: activations of each image are quantized on their own,
as a chip running one image at a time does, so results never depend on the batch size. Weights
are quantized once per layer. Everything else (BatchNormalization is folded into the Conv
before it) runs in float64 numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import PacimError
from ..macro.layer import apply
from ..macro.operands import PreparedWeight, prepare_weight, quantize_activations
from .ir import Layer, Workload, conv_layer, linear_layer

Mode = Literal["float", "exact", "pac"]
MODES: tuple[str, ...] = ("float", "exact", "pac")
FIRST_LAYER_CHOICES: tuple[str, ...] = ("arch", "float", "exact", "pac")
INSTALL_HINT = "pip install 'pacim[onnx]'"
_CHUNK_ELEMS = 1 << 23  # im2col elements per chunk of images: bounds memory on big batches


# --- macro configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class MacroConfig:
    """What the macro layers need from the arch: precisions and the PAC configuration."""

    xbit: int = 8
    wbit: int = 8
    operand: int = 4
    approx: str = "pac"
    dynamic: tuple[float, float, float] | None = None
    pac_enabled: bool = True
    first_layer_exact: bool = True

    @classmethod
    def from_arch(cls, arch: Any) -> MacroConfig:
        """Read an `pacim.arch.Arch`."""
        return cls(
            xbit=arch.macro.xbit,
            wbit=arch.macro.wbit,
            operand=arch.operand,
            approx=arch.pac.approx,
            dynamic=arch.dynamic_thresholds,
            pac_enabled=arch.pac.enabled,
            first_layer_exact=arch.pac.first_layer_exact,
        )

    @property
    def full(self) -> int:
        """Operand of exact arithmetic: max(xbit, wbit)."""
        return max(self.xbit, self.wbit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "xbit": self.xbit, "wbit": self.wbit, "operand": self.operand,
            "approx": self.approx, "dynamic": list(self.dynamic) if self.dynamic else None,
            "pac_enabled": self.pac_enabled, "first_layer_exact": self.first_layer_exact,
        }


def _as_config(config: Any) -> MacroConfig:
    if config is None:
        return MacroConfig()
    if isinstance(config, MacroConfig):
        return config
    return MacroConfig.from_arch(config)


# --- the macro layers: the macro front end with one activation scale per image ------------


def macro_conv2d(
    x: np.ndarray, pw: PreparedWeight, kernel: tuple[int, int], bias: np.ndarray | None, *,
    stride: int, pads: tuple[int, int, int, int], xbit: int, operand: int, approx: str,
    dynamic: tuple[float, float, float] | None,
) -> np.ndarray:
    """Conv (B, C, H, W) -> (B, K, Ho, Wo) through the macro, each image quantized on its own.

    pads = (top, left, bottom, right), filled with each image's pad code. Images are run in
    chunks so that the unfolded operands stay bounded on big batches.
    """
    if tuple(kernel) != pw.kernel:
        raise ValueError(f"kernel {tuple(kernel)} does not match the weight's {pw.kernel}")
    b_, c_, h, w_ = x.shape
    per_img = ((h + pads[0] + pads[2]) * (w_ + pads[1] + pads[3])) * c_ * kernel[0] * kernel[1]
    chunk = max(1, _CHUNK_ELEMS // max(per_img, 1))
    outs = []
    for i0 in range(0, b_, chunk):
        act = quantize_activations(x[i0:i0 + chunk], xbit, per="sample", kernel=pw.kernel,
                                   stride=stride, pads=pads)
        outs.append(apply(act, pw, bias, operand=operand, approx=approx, dynamic=dynamic,
                          stats=False, layout="nchw")[0])
    return outs[0] if len(outs) == 1 else np.concatenate(outs)


def macro_linear(
    x: np.ndarray, pw: PreparedWeight, bias: np.ndarray | None, *, xbit: int, operand: int,
    approx: str,
) -> np.ndarray:
    """x (B, ..., N) @ w.T through the macro, each x[b] quantized on its own; (B, ..., K)."""
    n = x.shape[-1]
    rows_per = int(np.prod(x.shape[1:-1], dtype=np.int64))
    act = quantize_activations(x.reshape(-1, n), xbit, per="sample", sample_rows=rows_per)
    y = apply(act, pw, bias, operand=operand, approx=approx, stats=False)[0]
    return y.reshape(x.shape[:-1] + (pw.k,))


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
    chunk = max(1, _CHUNK_ELEMS // max(ho * wo * c_ * kh * kw, 1))
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


# --- the graph -----------------------------------------------------------------------------


@dataclass
class Node:
    """One ONNX node, attributes decoded to Python values."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]


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
        s = self.stride
        th = max((math.ceil(h / s) - 1) * s + kh - h, 0)
        tw = max((math.ceil(w / s) - 1) * s + kw - w, 0)
        if self.auto_pad == "SAME_UPPER":
            return (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        return (th - th // 2, tw - tw // 2, th // 2, tw // 2)


def _attr_value(a: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    t = onnx.AttributeProto
    if a.type == t.FLOAT:
        return float(a.f)
    if a.type == t.INT:
        return int(a.i)
    if a.type == t.STRING:
        return a.s.decode()
    if a.type == t.FLOATS:
        return [float(v) for v in a.floats]
    if a.type == t.INTS:
        return [int(v) for v in a.ints]
    if a.type == t.STRINGS:
        return [s.decode() for s in a.strings]
    if a.type == t.TENSOR:
        return numpy_helper.to_array(a.t)
    return None


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise PacimError(f"reading ONNX models needs the onnx extra: {INSTALL_HINT}") from None
    return onnx


SUPPORTED_OPS = (
    "Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Add", "Sub", "Mul", "Div", "Sum",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
    "Gemm", "MatMul", "Identity", "Dropout", "Softmax", "LogSoftmax", "Constant", "Shape",
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Transpose", "Cast", "ReduceMean",
)


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
        onnx = _require_onnx()
        p = Path(path)
        if not p.is_file():
            raise PacimError(f"{p}: no such file")
        try:
            model = onnx.load(str(p))
        except Exception as e:  # protobuf raises several types on garbage input
            why = (str(e).strip().splitlines() or [""])[0]
            raise PacimError(f"{p}: not a readable ONNX model ({type(e).__name__}: {why})"
                             ) from None
        return cls.from_model(model, name=p.stem, source=str(p))

    @classmethod
    def from_model(cls, model: Any, name: str = "onnx", source: str = "") -> OnnxNet:
        """Build from an in-memory onnx.ModelProto."""
        _require_onnx()
        from onnx import numpy_helper

        g = model.graph
        where = source or name
        consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i for i in g.input if i.name not in consts]
        if len(inputs) != 1:
            raise PacimError(f"{where}: the graph must have exactly one data input, found "
                             f"{len(inputs)} ({', '.join(i.name for i in inputs)})")
        if not g.output:
            raise PacimError(f"{where}: the graph has no output")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in dims)
        nodes: list[Node] = []
        seen: set[str] = set()
        for i, nd in enumerate(g.node):
            nm = nd.name or f"{nd.op_type}_{i}"
            while nm in seen:
                nm = f"{nm}_{i}"
            seen.add(nm)
            attrs = {a.name: _attr_value(a) for a in nd.attribute}
            if nd.domain not in ("", "ai.onnx"):
                raise PacimError(f"{where}: node {nm} ({nd.domain}::{nd.op_type}) is not "
                                 f"supported: custom operator domain")
            if nd.op_type == "Constant":
                val = attrs.get("value")
                if val is None:
                    for key in ("value_float", "value_int", "value_floats", "value_ints"):
                        if key in attrs:
                            val = np.asarray(attrs[key])
                if val is None:
                    raise PacimError(f"{where}: node {nm} (Constant) has no supported value")
                consts[nd.output[0]] = np.asarray(val)
                continue
            nodes.append(Node(nm, nd.op_type, list(nd.input), list(nd.output), attrs))
        return cls(name, nodes, consts, inputs[0].name, shape, g.output[0].name, source)

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
        inv = gamma / np.sqrt(var + float(nd.attrs.get("epsilon", 1e-5)))
        return inv, beta - mean * inv

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
        cfg = _as_config(config)
        base = "exact" if mode == "pac" and not cfg.pac_enabled else mode
        modes = {la.name: base for la in self.macro_layers}
        if mode != "float" and modes:
            first = next(iter(modes))
            if first_layer != "arch":
                modes[first] = first_layer
            elif base == "pac" and cfg.first_layer_exact and \
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
            ) -> np.ndarray:
        """Forward pass; returns the graph's first output (float64).

        mode: ``float`` | ``exact`` | ``pac`` for every macro layer; config: an Arch or a
        MacroConfig (default 8b/8b, operand 4, PAC). first_layer: ``arch`` (exact when
        pac.first_layer_exact in pac mode) or a mode forced on the first macro layer.
        record: filled with each macro layer's float input.
        """
        cfg = _as_config(config)
        modes = self.layer_modes(mode, first_layer, cfg)
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
                out = self._run_macro(layer, args[0], modes[layer.name], cfg)
                env[nd.outputs[0]] = out
                continue
            fn = _OPS[nd.op]
            try:
                outs = fn(self, nd, args)
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
                   cfg: MacroConfig) -> np.ndarray:
        operand = cfg.full if mode == "exact" else cfg.operand
        x = np.asarray(x, dtype=np.float64)
        if layer.kind == "conv2d":
            if x.ndim != 4 or x.shape[1] != layer.weight.shape[1]:
                raise PacimError(f"{self.name}: node {layer.name} (Conv): input of shape "
                                 f"{x.shape} does not fit weight {layer.weight.shape}")
            pads = layer.conv_pads(x.shape[2], x.shape[3])
            if mode == "float":
                return float_conv2d(x, layer.weight, layer.bias, stride=layer.stride, pads=pads)
            return macro_conv2d(
                x, layer.prepared(cfg.wbit), layer.weight.shape[2:], layer.bias,
                stride=layer.stride, pads=pads, xbit=cfg.xbit, operand=operand,
                approx=cfg.approx, dynamic=cfg.dynamic if mode == "pac" else None)
        if x.ndim < 2 or x.shape[-1] != layer.weight.shape[1]:
            raise PacimError(f"{self.name}: node {layer.name}: input of shape {x.shape} does "
                             f"not fit weight (K, N) = {layer.weight.shape}")
        if mode == "float":
            y = x @ layer.weight.T
            return y + layer.bias if layer.bias is not None else y
        return macro_linear(x, layer.prepared(cfg.wbit), layer.bias, xbit=cfg.xbit,
                            operand=operand, approx=cfg.approx)

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


# --- elementwise / shape operators --------------------------------------------------------


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
        th = max((math.ceil(h / s) - 1) * s + kh - h, 0)
        tw = max((math.ceil(w / s) - 1) * s + kw - w, 0)
        lo_h, lo_w = (th // 2, tw // 2) if auto == "SAME_UPPER" else (th - th // 2, tw - tw // 2)
        pads = (lo_h, lo_w, th - lo_h, tw - lo_w)
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


def _batchnorm(net: OnnxNet, nd: Node, args: list[Any]) -> np.ndarray:
    inv, shift = net._bn_params(nd)
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


OpFn = Callable[[OnnxNet, Node, list[Any]], Any]

_OPS: dict[str, OpFn] = {
    "Relu": lambda net, nd, a: np.maximum(a[0], 0.0),
    "LeakyRelu": lambda net, nd, a: np.where(a[0] >= 0, a[0],
                                             a[0] * float(nd.attrs.get("alpha", 0.01))),
    "Clip": lambda net, nd, a: _clip(nd, a),
    "Add": lambda net, nd, a: np.add(a[0], a[1]),
    "Sub": lambda net, nd, a: np.subtract(a[0], a[1]),
    "Mul": lambda net, nd, a: np.multiply(a[0], a[1]),
    "Div": lambda net, nd, a: _div(a[0], a[1]),
    "Sum": lambda net, nd, a: sum(a[1:], start=np.asarray(a[0])),
    "BatchNormalization": _batchnorm,
    "MaxPool": lambda net, nd, a: _pool(a[0], nd, "max"),
    "AveragePool": lambda net, nd, a: _pool(a[0], nd, "avg"),
    "GlobalAveragePool": lambda net, nd, a: a[0].mean(axis=tuple(range(2, a[0].ndim)),
                                                      keepdims=True),
    "GlobalMaxPool": lambda net, nd, a: a[0].max(axis=tuple(range(2, a[0].ndim)),
                                                 keepdims=True),
    "Flatten": lambda net, nd, a: _flatten(nd, a[0]),
    "Reshape": lambda net, nd, a: _reshape(nd, a),
    "Identity": lambda net, nd, a: a[0],
    "Dropout": lambda net, nd, a: a[0],
    "Softmax": lambda net, nd, a: _softmax(a[0], int(nd.attrs.get("axis", -1)), False),
    "LogSoftmax": lambda net, nd, a: _softmax(a[0], int(nd.attrs.get("axis", -1)), True),
    "Shape": lambda net, nd, a: _shape(nd, a[0]),
    "Gather": lambda net, nd, a: np.take(a[0], np.asarray(a[1], dtype=np.int64),
                                         axis=int(nd.attrs.get("axis", 0))),
    "Unsqueeze": lambda net, nd, a: _unsqueeze(nd, a),
    "Squeeze": lambda net, nd, a: _squeeze(nd, a),
    "Concat": lambda net, nd, a: np.concatenate([np.asarray(v) for v in a],
                                                axis=int(nd.attrs["axis"])),
    "Transpose": lambda net, nd, a: np.transpose(a[0], nd.attrs.get("perm")),
    "Cast": lambda net, nd, a: _cast(nd, a),
    "ReduceMean": lambda net, nd, a: _reduce_mean(nd, a),
}


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

