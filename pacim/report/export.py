"""Export helpers of a report: JSON-safe values, flat rows for CSV, and output files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import PacimError


def json_safe(v: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples become lists."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return json_safe(v.item())
        except (TypeError, ValueError):
            return v
    return v


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are JSON-encoded."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def write_text(path: str | Path, text: str) -> None:
    """Write a text file, turning OS errors into one-line PacimErrors."""
    p = Path(path)
    try:
        p.write_text(text)
    except OSError as e:
        raise PacimError(f"{p}: cannot write: {e.strerror or e}") from None


def check_writable(path: str | Path | None) -> None:
    """Fail early (before a long run) if an output path cannot be written."""
    if path is None:
        return
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise PacimError(f"{p}: is a directory, not a file")
    if not parent.is_dir():
        raise PacimError(f"{p}: cannot write: directory {parent} does not exist")
    # checked without creating the file, so a run that fails later leaves nothing behind
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise PacimError(f"{p}: cannot write: permission denied")
