"""The `pacim` command line: thin: parse, call the API, print. User errors exit 2, one line.

Every command lives in its own module and is imported only when it runs or is listed, so
`pacim simulate` pays for nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import PacimError

EXIT_USAGE = 2

# command name -> "module:attribute", imported when used or listed
LAZY_COMMANDS = {
    "simulate": "pacim.cli.simulate:simulate_command",
    "energy": "pacim.cli.energy:energy_command",
    "area": "pacim.cli.energy:area_command",
    "error-study": "pacim.cli.error_study:error_study_command",
    "sweep": "pacim.cli.sweep:sweep_command",
    "plot": "pacim.cli.sweep:plot_command",
    "llm": "pacim.llm.cli:llm_group",
    "accuracy": "pacim.accuracy:accuracy_command",
}


class PacimGroup(click.Group):
    """A click group whose commands turn user errors into one line on stderr and exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            mod, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(mod), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PacimError, ValueError, FileNotFoundError, IsADirectoryError,
                PermissionError) as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=PacimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pacim")
def main() -> None:
    """pacim: cycle-level compute-in-memory simulator.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/dcim_65nm.yaml --workload resnet18 --no-data
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """


def run() -> None:  # pragma: no cover - console entry convenience
    """Entry point that never shows a traceback for user errors."""
    main(prog_name=Path(sys.argv[0]).name or "pacim")
