"""Validation of workload options and YAML fields: pydantic errors -> one-line ConfigError."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def describe_errors(
    exc: ValidationError, model: type[BaseModel], prefix: tuple = (), noun: str = "key"
) -> str:
    """'key.path: reason' for each error, joined by '; '. Unknown keys list the valid ones."""
    parts = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            valid = ", ".join(model.model_fields)
            parts.append(f"{_loc(loc)}: unknown {noun} (valid {noun}s: {valid})")
        elif err["type"] == "missing":
            parts.append(f"{_loc(loc)}: required {noun} is missing")
        elif err["type"] == "value_error":  # our own cross-field checks: the message says it all
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            parts.append(f"{_loc(loc)}: {msg}" if loc else msg)
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            parts.append(f"{_loc(loc)}: {err['msg']} (got {shown})")
    return "; ".join(parts)


def validate_options(
    model: type[M], options: dict[str, Any], where: str, noun: str = "option"
) -> M:
    """Build `model` from `options`; a ConfigError names `where`, the key and the reason."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_errors(exc, model, noun=noun)}") from None
