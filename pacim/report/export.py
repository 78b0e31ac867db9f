"""Export helpers of a report: JSON-safe values, flat rows for CSV, and output files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from collections.abc import Mapping
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


def _name(path: str | Path, option: str | None) -> str:
    """How a message names an output: '--plot o.xyz', or just the path."""
    return f"{option} {path}" if option else str(path)


def image_formats() -> dict[str, str]:
    """Figure formats matplotlib can write: extension -> description (imports matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return dict(FigureCanvasAgg.get_supported_filetypes())


def image_format(path: str | Path, option: str | None = None) -> str:
    """The figure format of an output path, from its extension (png without one); one
    PacimError naming the option and the path when matplotlib cannot write it."""
    ext = Path(path).suffix.lower().lstrip(".")
    if not ext:
        return "png"
    formats = image_formats()
    if ext not in formats:
        raise PacimError(f"{_name(path, option)}: unknown image format '.{ext}' "
                         f"(supported: {', '.join(sorted(formats))})")
    return ext


def check_writable(path: str | Path | None, option: str | None = None,
                   image: bool = False) -> None:
    """Fail early (before a long run) if an output path cannot be written; with image=True
    its extension must also be a figure format. Messages name `option` and the path."""
    if path is None:
        return
    p = Path(path)
    name = _name(p, option)
    if str(path) == "":
        raise PacimError(f"{option or 'output'}: empty path")
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise PacimError(f"{name}: is a directory, not a file")
    if not parent.is_dir():
        raise PacimError(f"{name}: cannot write: directory {parent} does not exist")
    # checked without creating the file, so a run that fails later leaves nothing behind
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise PacimError(f"{name}: cannot write: permission denied")
    if image:
        image_format(p, option)


def check_outputs(outputs: Mapping[str, str | Path | None], images: tuple[str, ...] = ()
                  ) -> None:
    """check_writable for every {option: path} given (options in `images` are figures), and
    refuse two options naming one file: all before the run."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        check_writable(path, option, image=option in images)
        real = os.path.realpath(path)
        device = Path(real).exists() and not Path(real).is_file()  # /dev/null twice is fine
        if real in seen and not device:
            raise PacimError(f"{option} {path}: the same file as {seen[real]}")
        seen[real] = f"{option} {path}"


def _is_device_path(p: Path) -> bool:
    """A path under /dev or /proc (e.g. /dev/stdout -> /proc/self/fd/1): never replaced."""
    parts = Path(os.path.abspath(p)).parts
    return len(parts) > 1 and parts[1] in ("dev", "proc")


def write_bytes(path: str | Path, data: bytes, option: str | None = None, what: str = ""
                ) -> Path:
    """Write a whole output and check that it arrived (flush, fsync, close: a full disk is an
    error, never a silent short file). A regular file is replaced atomically, so a failed write
    leaves the old file or nothing; a device or pipe (/dev/stdout) is written in place.
    Errors are one PacimError naming `option` and the path. Returns the path."""
    p = Path(path)
    name = _name(p, option)
    real = Path(os.path.realpath(p))
    # /dev/stdout, /dev/full, a FIFO: written in place (appending: /dev/stdout redirected to a
    # file must not cut off what was printed before it)
    in_place = _is_device_path(p) or (real.exists() and not real.is_file())
    tmp = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    try:
        if in_place:
            with open(p, "ab") as f:
                f.write(data)
                f.flush()
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if real.exists():
                    os.chmod(tmp, stat.S_IMODE(real.stat().st_mode))
                os.replace(tmp, real)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    except OSError as e:
        raise PacimError(f"{name}: cannot write{what}: {e.strerror or e}") from None
    return p


def write_text(path: str | Path, text: str, option: str | None = None) -> Path:
    """write_bytes of UTF-8 text; OS errors become one-line PacimErrors. Returns the path."""
    return write_bytes(path, text.encode("utf-8"), option)
