"""Options and helpers shared by the commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

SET_HELP = "Override an arch field, e.g. --set macro.banks=32 (repeatable)."


def overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """--set KEY=VALUE items as a {dotted key: value} dict (values parsed as YAML)."""
    from ..arch import parse_assignment

    return dict(parse_assignment(i) for i in items)


def progress_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--progress/--no-progress (default: a bar when stderr is a terminal, else nothing)."""
    return click.option(
        "--progress/--no-progress", "progress", default=None,
        help="Report progress on stderr: a bar on a terminal, a line every few seconds in a "
             "log or pipe [default: only on a terminal].")(fn)


def seed_option(default: int | None, help_text: str) -> Callable[..., Any]:
    """--seed: a non-negative integer (the message names --seed)."""
    return click.option("--seed", type=click.IntRange(min=0), default=default,
                        show_default=default is not None, help=help_text)
