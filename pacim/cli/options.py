"""Options and helpers shared by the commands."""

from __future__ import annotations

from typing import Any

SET_HELP = "Override an arch field, e.g. --set macro.banks=32 (repeatable)."


def overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """--set KEY=VALUE items as a {dotted key: value} dict (values parsed as YAML)."""
    from ..arch import parse_assignment

    return dict(parse_assignment(i) for i in items)
