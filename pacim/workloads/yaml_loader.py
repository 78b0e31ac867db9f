"""Workload YAML files: a built-in with options, or an explicit list of layers (docs/WORKLOADS.md).

    builtin: llm-layer          # or resnet18 / resnet18-cifar
    hidden: 4096                # the built-in's options, validated by the built-in

    name: tiny-cnn              # or: an explicit layer list
    seed: 0
    data: random                # random | none
    layers:
      - {kind: conv2d, in_shape: [1, 3, 32, 32], out_channels: 16, kernel: 3, padding: 1}
      - {kind: linear, rows: 1, in_features: 256, out_features: 10}
      - {kind: matmul, rows: 128, n: 64, k: 128, count: 8}

Every key is checked: an unknown key, a wrong type or an impossible shape is a ConfigError naming
the file, the key path (e.g. ``layers.2.kernel``) and the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, PacimError
from .ir import Layer, Workload, conv_layer, linear_layer, matmul_layer
from .options import describe_errors

PosInt = Annotated[int, Field(ge=1)]
Builder = Callable[..., Workload]  # builtin builder: (name, data=, seed=, **options)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ConvSpec(_Strict):
    """A conv2d layer: input (B, C, H, W), K output channels, square or (kh, kw) kernel."""

    kind: Literal["conv2d"]
    name: str | None = None
    in_shape: Annotated[list[PosInt], Field(min_length=4, max_length=4)]
    out_channels: PosInt
    kernel: PosInt | Annotated[list[PosInt], Field(min_length=2, max_length=2)]
    stride: PosInt = 1
    padding: Annotated[int, Field(ge=0)] = 0
    exact: bool = False

    def layer(self, name: str) -> Layer:
        """The IR layer (shapes only)."""
        b, c, h, w = self.in_shape
        k = self.kernel if isinstance(self.kernel, int) else (self.kernel[0], self.kernel[1])
        return conv_layer(name, (b, c, h, w), self.out_channels, k, self.stride, self.padding,
                          exact=self.exact)


class LinearSpec(_Strict):
    """A linear layer: `rows` input vectors of in_features -> out_features."""

    kind: Literal["linear"]
    name: str | None = None
    rows: PosInt
    in_features: PosInt
    out_features: PosInt
    exact: bool = False

    def layer(self, name: str) -> Layer:
        """The IR layer (shapes only)."""
        return linear_layer(name, self.rows, self.in_features, self.out_features, exact=self.exact)


class MatmulSpec(_Strict):
    """An activation x activation product: count x (rows x n) @ (n x k); counted, not mapped."""

    kind: Literal["matmul"]
    name: str | None = None
    rows: PosInt
    n: PosInt
    k: PosInt
    count: PosInt = 1

    def layer(self, name: str) -> Layer:
        """The IR layer."""
        return matmul_layer(name, self.rows, self.n, self.k, self.count)


SPECS: dict[str, type[_Strict]] = {"conv2d": ConvSpec, "linear": LinearSpec, "matmul": MatmulSpec}


class LayerListFile(_Strict):
    """Top level of an explicit layer-list workload file."""

    name: str | None = None
    description: str | None = None
    seed: int | None = Field(None, ge=0)
    data: Literal["random", "none"] = "random"
    layers: Annotated[list[Any], Field(min_length=1)]


_BUILTIN_FILE_KEYS = ("builtin", "name", "description", "seed")


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; PacimError/ConfigError on missing file or bad YAML."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise PacimError(f"workload file {what}: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PacimError(f"cannot read workload file {path}: {exc}") from None
    if not isinstance(doc, dict):
        got = "an empty file" if doc is None else f"a {type(doc).__name__}"
        raise ConfigError(f"{path}: a workload file must be a mapping of keys, got {got}")
    return doc


def _seed(value: Any, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{path}: seed: must be a non-negative integer (got {value!r})")
    return value


def _layer(i: int, entry: Any, path: Path) -> tuple[Layer, ConvSpec | LinearSpec | MatmulSpec]:
    loc = f"layers.{i}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {loc}: must be a mapping (got {entry!r})")
    kind = entry.get("kind")
    if kind not in SPECS:
        raise ConfigError(f"{path}: {loc}.kind: must be one of {', '.join(SPECS)} (got {kind!r})")
    model = SPECS[kind]
    try:
        spec = model.model_validate(entry)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc, model, ('layers', i))}") from None
    name = spec.name or f"{kind}{i}"
    try:
        return spec.layer(name), spec  # type: ignore[attr-defined]
    except ValueError as exc:
        raise ConfigError(f"{path}: {loc}: {exc}") from None


def random_data(layer: Layer, seed: int, index: int) -> Layer:
    """The layer with He-normal weights and a ReLU'd N(0, 1) input from stream (seed, index)."""
    from .rand import normal  # numba: only when data is built

    if not layer.mapped:
        return layer
    tag = f"yaml/{index}/{layer.name}"
    if layer.kind == "conv2d":
        kh, kw = layer.kernel
        wshape: tuple[int, ...] = (layer.k, layer.in_channels, kh, kw)
    else:
        wshape = (layer.k, layer.n)
    w = normal(wshape, seed, f"{tag}/weight", float(np.sqrt(2.0 / layer.n)))
    x = np.maximum(normal(tuple(layer.in_shape or ()), seed, f"{tag}/input"), 0.0)
    return replace(layer, weight=w, x=x)


def load_yaml_workload(
    path: str | Path,
    builtins: dict[str, Builder],
    *,
    data: bool = True,
    seed: int | None = None,
    **options: Any,
) -> Workload:
    """Load a workload YAML file. `seed` (if given) and `options` override the file's."""
    path = Path(path)
    doc = read_yaml(path)
    if "builtin" in doc:
        name = doc["builtin"]
        if not isinstance(name, str) or name not in builtins:
            raise ConfigError(
                f"{path}: builtin: unknown built-in {name!r} (available: {', '.join(builtins)})"
            )
        file_seed = _seed(doc["seed"], path) if "seed" in doc else 0
        opts = {k: v for k, v in doc.items() if k not in _BUILTIN_FILE_KEYS}
        opts.update(options)
        use_seed = file_seed if seed is None else seed
        try:
            wl = builtins[name](name, data=data, seed=use_seed, **opts)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        meta = {**wl.meta, "file": str(path)}
        if "description" in doc:
            meta["description"] = doc["description"]
        return Workload(doc.get("name") or wl.name, wl.layers, meta)

    if options:
        raise PacimError(
            f"{path}: options {', '.join(sorted(options))} apply only to built-in workloads"
        )
    try:
        spec = LayerListFile.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc, LayerListFile)}") from None
    layers = [_layer(i, e, path)[0] for i, e in enumerate(spec.layers)]
    names = [la.name for la in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: layers: duplicate layer name(s) {', '.join(dup)}")
    use_seed = (spec.seed if spec.seed is not None else 0) if seed is None else seed
    with_data = data and spec.data == "random"
    if with_data:
        layers = [random_data(la, use_seed, i) for i, la in enumerate(layers)]
    meta: dict[str, Any] = {
        "source": "yaml",
        "file": str(path),
        "seed": use_seed,
        "batch": next((la.in_shape[0] for la in layers if la.kind == "conv2d" and la.in_shape),
                      None),
        "data": with_data,
        "input": ("per-layer random: He-normal weights, ReLU'd N(0,1) inputs" if with_data
                  else "shapes only"),
    }
    if spec.description:
        meta["description"] = spec.description
    return Workload(spec.name or path.stem, tuple(layers), meta)
