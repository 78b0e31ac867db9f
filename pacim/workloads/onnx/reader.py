"""Reading ONNX: a ModelProto into plain nodes (attributes decoded), constants (initializers and
Constant nodes) and the graph's one data input and first output. Needs the onnx extra."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import PacimError

INSTALL_HINT = "pip install 'pacim[onnx]'"


@dataclass
class Node:
    """One ONNX node, attributes decoded to Python values."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]


@dataclass
class Graph:
    """An ONNX graph as read: its nodes in order, its constants and its input and output."""

    name: str
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int | None, ...]
    output_name: str
    source: str = ""


def require_onnx() -> Any:
    """The onnx module, or one PacimError naming the extra to install."""
    try:
        import onnx
    except ImportError:
        raise PacimError(f"reading ONNX models needs the onnx extra: {INSTALL_HINT}") from None
    return onnx


def attr_value(a: Any) -> Any:
    """An ONNX AttributeProto as a Python value (numbers, strings, lists, numpy tensors)."""
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


def load_model(path: str | Path) -> Any:
    """Read an .onnx file into an onnx.ModelProto; one PacimError when it is missing or not
    a readable model."""
    onnx = require_onnx()
    p = Path(path)
    if not p.is_file():
        raise PacimError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise PacimError(f"{p}: not a valid ONNX model: the file is empty")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf raises several types on garbage input
        why = (str(e).strip().splitlines() or [""])[0]
        raise PacimError(
            f"{p}: not a readable ONNX model ({type(e).__name__}: {why})") from None
    # protobuf parses many byte strings (a truncated file too) into a message with no graph
    if not model.HasField("graph") or not model.graph.node:
        raise PacimError(f"{p}: not a valid or complete ONNX model: it has no graph nodes "
                         "(an empty, truncated or non-ONNX file?)")
    return model


def read_graph(model: Any, name: str = "onnx", source: str = "") -> Graph:
    """The Graph of an in-memory onnx.ModelProto; custom operator domains and graphs without
    exactly one data input are refused."""
    require_onnx()
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
        attrs = {a.name: attr_value(a) for a in nd.attribute}
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
    return Graph(name, nodes, consts, inputs[0].name, shape, g.output[0].name, source)
