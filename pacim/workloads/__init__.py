"""Workloads: the layer IR, the built-in networks and the registry behind `load_workload`.

    load_workload("resnet18")                       # ImageNet ResNet-18 with real data flow
    load_workload("resnet18-cifar", data=False)     # shapes only
    load_workload("llm-layer", tokens=64)           # built-in options as keywords
    load_workload("workloads/tiny_cnn.yaml")        # a YAML file (docs/WORKLOADS.md)
    load_workload("model.onnx")                     # an ONNX graph (needs the onnx extra)
    load_workload("model.gguf", tokens=64)          # a Llama-family GGUF (needs the llm extra)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

from ..errors import PacimError
from .ir import Layer, Workload, conv_layer, linear_layer, matmul_layer

__all__ = [
    "Layer",
    "Workload",
    "available_workloads",
    "conv_layer",
    "linear_layer",
    "load_workload",
    "matmul_layer",
]

_SMOLLM_OPTIONS = ("tokens",)
_ONNX_FIXED = ("path", "data", "seed")  # from_onnx parameters that are not user options


def _resnet(name: str, *, data: bool, seed: int, **options: Any) -> Workload:
    from .resnet import build_resnet18

    return build_resnet18(name, data=data, seed=seed, **options)


def _llm_layer(name: str, *, data: bool, seed: int, **options: Any) -> Workload:
    from .llm_layer import build_llm_layer

    return build_llm_layer(data=data, seed=seed, **options)


def _call_external(
    fn: Any, args: tuple, kwargs: dict[str, Any], data: bool, seed: int | None = None
) -> Workload:
    """Call another module's builder, passing data / seed when it takes them.

    A builder without a `data` parameter builds with data; its tensors are dropped if unwanted.
    """
    params = inspect.signature(fn).parameters
    if seed is not None and "seed" in params:
        kwargs = {**kwargs, "seed": seed}
    if "data" in params:
        return fn(*args, data=data, **kwargs)
    wl = fn(*args, **kwargs)
    return wl if data else wl.without_data()


def _smollm2(name: str, *, data: bool, seed: int, **options: Any) -> Workload:
    unknown = sorted(set(options) - set(_SMOLLM_OPTIONS))
    if unknown:
        raise PacimError(
            f"workload {name}: unknown option(s) {', '.join(unknown)} "
            f"(valid options: {', '.join(_SMOLLM_OPTIONS)})"
        )
    try:
        from ..llm.workload import smollm2_workload
    except ImportError as exc:
        raise PacimError(f"workload {name} is not available: {exc}") from None
    return _call_external(
        smollm2_workload, (), {"tokens": options.get("tokens", 128), "seed": seed}, data
    )


def _fashion(name: str, *, data: bool, seed: int, **options: Any) -> Workload:
    from ..accuracy.shipped import fashion_workload  # the shipped trained model, real images

    return fashion_workload(name, data=data, seed=seed, **options)

_GGUF_FIXED = ("model", "seed", "include_head")  # smollm2_workload parameters set here


def _gguf(path: str, *, data: bool, seed: int, **options: Any) -> Workload:
    """Every linear layer of a Llama-family GGUF model (the smollm2-135m builder, given the
    file), with inputs captured from its INSERTQUANT-quantized forward pass (needs pacim[llm])."""
    if not Path(path).is_file():
        raise PacimError(f"workload file not found: {path}")
    try:
        from ..llm.workload import smollm2_workload
    except ImportError as exc:
        raise PacimError(f"GGUF workloads need the llm extra (pip install 'pacim[llm]'): "
                         f"{exc}") from None
    valid = [p for p in inspect.signature(smollm2_workload).parameters if p not in _GGUF_FIXED]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise PacimError(f"{path}: unknown option(s) {', '.join(unknown)} "
                         f"(valid options: {', '.join(valid)})")
    opts = {"tokens": 128, **options}
    wl = _call_external(smollm2_workload, (), {**opts, "model": path}, data, seed)
    # the builder names a workload after its model argument: here a path, so use the file name
    tokens = wl.meta.get("tokens", opts["tokens"])
    return dataclasses.replace(wl, name=f"{Path(path).stem}-{tokens}")


BUILTINS = {
    "resnet18": _resnet,
    "resnet18-cifar": _resnet,
    "llm-layer": _llm_layer,
    "smollm2-135m": _smollm2,
    "fashion-resnet18": _fashion,
}


def available_workloads() -> list[str]:
    """Names accepted by `load_workload` besides .yaml / .onnx paths."""
    return list(BUILTINS)


def _check_seed(seed: Any) -> int | None:
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        return seed
    raise PacimError(f"seed must be a non-negative integer, got {seed!r}")


def has_shapes_path(key: str) -> bool:
    """True when the workload can be built shapes-only without its data (smollm2 cannot: its
    shapes come from the model it captures inputs from)."""
    if key in BUILTINS:
        return key in _SHAPED
    suffix = Path(key).suffix.lower()
    if suffix in (".yaml", ".yml"):
        from .yaml_loader import read_yaml

        builtin = read_yaml(Path(key)).get("builtin")
        return builtin is None or builtin in _SHAPED
    return suffix == ".onnx"


_SHAPED = ("resnet18", "resnet18-cifar", "llm-layer")


def load_workload(
    name_or_path: str | os.PathLike[str],
    *,
    data: bool = True,
    seed: int | None = None,
    **options: Any,
) -> Workload:
    """A workload by built-in name, or from a .yaml / .onnx / .gguf file.

    data=False builds shapes only (fast, no tensors). seed defaults to the YAML file's seed, else
    0. `options` are the built-in's options (e.g. batch=4 for resnet18, tokens=64 for llm-layer);
    an unknown name or option raises PacimError. With data, the shapes are built first and a
    workload whose tensors and forward pass would not fit in memory is refused (PacimError,
    pacim.workloads.memory) before any tensor exists.
    """
    seed = _check_seed(seed)
    key = os.fspath(name_or_path)
    if data and has_shapes_path(key):
        from .memory import check, estimate

        shapes = _load(key, data=False, seed=seed, **options)
        check(estimate(shapes).building(), f"workload {shapes.name}")
    return _load(key, data=data, seed=seed, **options)


def _load(key: str, *, data: bool, seed: int | None, **options: Any) -> Workload:
    if key in BUILTINS:
        return BUILTINS[key](key, data=data, seed=0 if seed is None else seed, **options)
    suffix = Path(key).suffix.lower()
    if suffix in (".yaml", ".yml"):
        from .yaml_loader import load_yaml_workload

        return load_yaml_workload(key, BUILTINS, data=data, seed=seed, **options)
    if suffix == ".onnx":
        if not Path(key).is_file():
            raise PacimError(f"workload file not found: {key}")
        try:
            from .onnx import from_onnx
        except ImportError as exc:
            raise PacimError(f"ONNX workloads are not available: {exc}") from None
        valid = [p for p in inspect.signature(from_onnx).parameters if p not in _ONNX_FIXED]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise PacimError(f"{key}: unknown option(s) {', '.join(unknown)} "
                             f"(valid options: {', '.join(valid)})")
        return _call_external(from_onnx, (key,), options, data, seed)
    if suffix == ".gguf":
        return _gguf(key, data=data, seed=0 if seed is None else seed, **options)
    raise PacimError(
        f"unknown workload {key!r}: available: {', '.join(BUILTINS)}, "
        "or a path to a .yaml, .onnx or Llama-family .gguf file"
    )
