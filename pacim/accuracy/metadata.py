"""What a model file says about itself: ONNX ``metadata_props`` written by ``pacim train``.

Keys (values are strings; JSON where structured):

- ``pacim.normalization``: ``{"mean": [...], "std": [...]}``, the input normalization the
  network was trained with (after uint8 pixels / 255). `pacim accuracy` applies it by default.
- ``pacim.dataset``, ``pacim.classes``, ``pacim.holdout``: what it was trained on, and the
  training images it never saw (``train[58000:60000]``) for calibration.
- ``pacim.training``: stage, width, seed and the command line.

Shipped models (``fashion-resnet18``) are package data; `resolve_model` maps a name to its file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import PacimError
from .norm import Normalization

MODELS_DIR = Path(__file__).resolve().parent / "models"
SHIPPED_MODELS: dict[str, str] = {"fashion-resnet18": "fashion-resnet18.onnx"}
NORM_KEY = "pacim.normalization"


def resolve_model(model: str | Path) -> Path:
    """A shipped model's file by name, or the path as given."""
    key = str(model)
    if key in SHIPPED_MODELS:
        p = MODELS_DIR / SHIPPED_MODELS[key]
        if not p.is_file():
            raise PacimError(f"shipped model {key} is missing from this installation ({p})")
        return p
    other = MODELS_DIR / f"{key}.onnx"  # the other shipped files: fashion-resnet18-w4a4, ...
    if "/" not in key and not key.endswith(".onnx") and other.is_file():
        return other
    return Path(model)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict ({} without the onnx extra or props)."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable files are reported by the reader that needs them
        return {}
    return {p.key: p.value for p in m.metadata_props}


def model_normalization(path: str | Path) -> Normalization | None:
    """The input normalization recorded in a model's metadata, or None."""
    raw = read_metadata(path).get(NORM_KEY)
    if raw is None:
        return None
    try:
        d = json.loads(raw)
        return Normalization(tuple(map(float, d["mean"])), tuple(map(float, d["std"])))
    except (ValueError, KeyError, TypeError) as e:
        raise PacimError(f"{path}: metadata {NORM_KEY} is not {{mean, std}} ({e})") from None


def set_metadata(model: Any, props: dict[str, Any]) -> None:
    """Write props into an onnx.ModelProto's metadata_props (non-strings as JSON)."""
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v if isinstance(v, str) else json.dumps(v))
