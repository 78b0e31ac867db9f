"""Reading a YAML config and applying dotted-key overrides (`--set a.b=1`), shared by the arch
(pacim.arch re-exports these) and the sweeps' grids."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, PacimError


def parse_value(text: str) -> Any:
    """Parse an override value as YAML ('3' -> 3, 'null' -> None, '[1,2]' -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def split_assignment(item: str, what: str = "override", form: str = "key.path=value"
                     ) -> tuple[str, str]:
    """'a.b.c=text' -> ('a.b.c', 'text'), or a ConfigError naming `what` and the form."""
    if "=" not in item:
        raise ConfigError(f"{what} {item!r} must look like {form}")
    key, _, val = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"{what} {item!r} has an empty key")
    return key, val.strip()


def parse_assignment(item: str) -> tuple[str, Any]:
    """'a.b.c=value' -> ('a.b.c', parsed value)."""
    key, val = split_assignment(item)
    return key, parse_value(val)


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copy); creating intermediate mappings as needed."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning I/O and syntax problems into one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise PacimError(f"{p}: not a regular file" if p.exists() else f"{p}: no such file")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
    except OSError as e:
        raise PacimError(f"{p}: cannot read: {e.strerror}") from None
