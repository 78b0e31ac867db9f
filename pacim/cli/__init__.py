"""The `pacim` command line (entry point `pacim = "pacim.cli:main"`): main.py holds the group
and the lazy registry; each command group has its own module."""

from .main import LAZY_COMMANDS, PacimGroup, main, run

__all__ = ["LAZY_COMMANDS", "PacimGroup", "main", "run"]
