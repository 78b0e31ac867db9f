"""Pixel normalization: per-channel (x - mean) / std after scaling uint8 pixels to [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PacimError

NORM_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0,), (1.0,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class Normalization:
    """Per-channel (x - mean) / std, after scaling uint8 pixels to [0, 1]."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            raise PacimError("normalization: mean and std must not be empty")
        if any(s == 0 for s in self.std):
            raise PacimError(f"normalization: std must be nonzero, got {list(self.std)}")

    @classmethod
    def parse(cls, mean: str | Sequence[float] | None = None,
              std: str | Sequence[float] | None = None, norm: str | None = None,
              ) -> Normalization:
        """From CLI text ('0.49,0.48,0.45'), numbers, a preset name or a YAML file (norm).

        The YAML file holds ``mean: [...]`` and ``std: [...]`` (optionally under a
        ``normalization:`` key). Explicit mean/std override the preset or file.
        """
        base = cls()
        if norm:
            base = cls.from_yaml(norm) if norm.lower() not in NORM_PRESETS else cls(
                *NORM_PRESETS[norm.lower()])
        m = _floats(mean, "mean") if mean is not None else base.mean
        s = _floats(std, "std") if std is not None else base.std
        return cls(m, s)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Normalization:
        """Read mean/std from a YAML file."""
        from ..arch import read_yaml

        p = Path(path)
        if not p.is_file():
            raise PacimError(f"normalization {path!r}: not a preset "
                             f"({', '.join(NORM_PRESETS)}) nor an existing YAML file")
        d = read_yaml(p)
        if isinstance(d, dict) and isinstance(d.get("normalization"), dict):
            d = d["normalization"]
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise PacimError(f"{p}: expected keys mean and std (lists of numbers)")
        return cls(_floats(d["mean"], f"{p}: mean"), _floats(d["std"], f"{p}: std"))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize float images (B, C, ...) or features (B, F)."""
        m = np.asarray(self.mean, dtype=np.float64)
        s = np.asarray(self.std, dtype=np.float64)
        if m.size == 1 and s.size == 1:
            return (x - m[0]) / s[0]
        c = x.shape[1] if x.ndim >= 2 else 1
        for v, what in ((m, "mean"), (s, "std")):
            if v.size not in (1, c):
                raise PacimError(f"normalization: {what} has {v.size} values but the images "
                                 f"have {c} channels")
        shape = (1, c) + (1,) * (x.ndim - 2)
        return (x - np.broadcast_to(m, (c,)).reshape(shape)) / np.broadcast_to(
            s, (c,)).reshape(shape)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly dict."""
        return {"mean": list(self.mean), "std": list(self.std)}


def _floats(v: str | Sequence[float] | Any, what: str) -> tuple[float, ...]:
    try:
        if isinstance(v, str):
            out = tuple(float(t) for t in v.replace(" ", "").split(",") if t)
        elif isinstance(v, (int, float)):
            out = (float(v),)
        else:
            out = tuple(float(t) for t in v)
    except (TypeError, ValueError):
        raise PacimError(f"{what}: expected comma-separated numbers, got {v!r}") from None
    if not out:
        raise PacimError(f"{what}: no values given")
    return out
