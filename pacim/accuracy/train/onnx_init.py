"""`pacim train --init MODEL.onnx`: start training from a ResNet-18 that `pacim train` exported.

The export (`export.py`) writes each BatchNorm as its inference affine, y = x * scale + shift,
so the batch statistics behind it are gone. Imported BatchNorms therefore carry that affine
exactly (weight = scale, bias = shift, running mean 0, running variance 1 - eps) and stay frozen
in evaluation mode while training: the imported network computes what the file computes, and
fine-tuning adapts the affines and the weights without re-estimating statistics (the usual way
to fine-tune a quantized network).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import PacimError
from .model import PacResNet18

_SUFFIX = re.compile(r"_\d+$")


def _initializers(model: Any) -> dict[str, np.ndarray]:
    """Initializers by export name without the exporter's counter suffix (conv1.weight, ...)."""
    from onnx import numpy_helper

    out: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        out[_SUFFIX.sub("", t.name)] = numpy_helper.to_array(t).astype(np.float64)
    return out


def _stem_stride(model: Any) -> int:
    for nd in model.graph.node:
        if nd.op_type == "Conv":
            for a in nd.attribute:
                if a.name == "strides":
                    return int(a.ints[0])
            return 1
    raise PacimError("the model has no Conv node")


def _torch_name(onnx_name: str) -> str:
    """layer2.1.down_bn.scale -> layers.3.down.1 (module path of a PacResNet18)."""
    m = re.match(r"layer(\d)\.(\d)\.(.+)$", onnx_name)
    if not m:
        return onnx_name
    i = (int(m.group(1)) - 1) * 2 + int(m.group(2))
    rest = {"down": "down.0", "down_bn": "down.1"}.get(m.group(3), m.group(3))
    return f"layers.{i}.{rest}"


def load_onnx_init(path: str | Path) -> tuple[PacResNet18, dict[str, Any]]:
    """A PacResNet18 equal to the exported model at `path`, BatchNorms frozen; and its facts."""
    try:
        import onnx
    except ImportError:
        raise PacimError("--init reads ONNX and needs the onnx extra") from None
    from ..metadata import resolve_model

    p = resolve_model(path)  # a path, or a shipped model by name (fashion-resnet18-pretrain)
    if not p.is_file():
        raise PacimError(f"--init: no such model file: {p}")
    try:
        m = onnx.load(str(p))
    except Exception as e:  # onnx raises several types for corrupt files
        raise PacimError(f"--init: cannot read {p} as ONNX ({type(e).__name__})") from None
    inits = _initializers(m)
    need = ("conv1.weight", "bn1.scale", "act1.alpha", "fc.weight", "fc.bias")
    if any(k not in inits for k in need):
        raise PacimError(f"--init: {p} is not a ResNet-18 written by pacim train (it lacks "
                         f"{', '.join(k for k in need if k not in inits)})")
    w1, fc = inits["conv1.weight"], inits["fc.weight"]
    width, in_ch, classes = int(w1.shape[0]), int(w1.shape[1]), int(fc.shape[0])
    net = PacResNet18(width, in_ch, classes, _stem_stride(m))
    net.freeze_batchnorm()
    state = net.state_dict()
    loaded: set[str] = set()

    def put(key: str, value: np.ndarray) -> None:
        if key not in state:
            raise PacimError(f"--init: {p} holds {key!r}, which a width-{width} PACiM "
                             "ResNet-18 does not have")
        v = torch.as_tensor(value, dtype=state[key].dtype).reshape(state[key].shape)
        state[key] = v
        loaded.add(key)

    for name, arr in inits.items():
        base, _, kind = name.rpartition(".")
        mod = _torch_name(base)
        if kind == "weight" or (kind == "bias" and base == "fc"):
            put(f"{mod}.{kind}", arr)
        elif kind == "scale":
            put(f"{mod}.weight", arr)
        elif kind == "shift":
            put(f"{mod}.bias", arr)
        elif kind == "alpha":
            put(f"{mod}.alpha", arr)
    missing = [k for k in state if k not in loaded and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))]
    if missing:
        raise PacimError(f"--init: {p} lacks {len(missing)} parameter(s) of a width-{width} "
                         f"ResNet-18, e.g. {missing[0]}")
    for k in state:
        if k.endswith("running_mean"):
            state[k] = torch.zeros_like(state[k])
        elif k.endswith("running_var"):
            bn_eps = 1e-5  # nn.BatchNorm2d's default: var + eps = 1 makes the affine exact
            state[k] = torch.full_like(state[k], 1.0 - bn_eps)
    net.load_state_dict(state)
    facts = {"width": width, "in_channels": in_ch, "classes": classes,
             "stem_stride": net.config["stem_stride"]}
    return net, facts
