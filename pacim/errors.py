"""Errors a user can cause: the CLI prints them on one line and exits with status 2."""

from __future__ import annotations


class PacimError(Exception):
    """A user-facing error (bad config, missing file, unknown workload, ...)."""


class ConfigError(PacimError, ValueError):
    """An invalid architecture or workload description."""
