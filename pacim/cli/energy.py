"""`pacim energy`: the energy table at the operating point, with each value's source."""

from __future__ import annotations

import click

from .options import SET_HELP, overrides


@click.command("energy")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def energy_command(arch_path: str, sets: tuple[str, ...]) -> None:
    """Print the energy table at the operating point, with each value's source.

    \b
    Examples:
      pacim energy --arch arch_configs/pacim_65nm.yaml
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """
    from ..arch import load_arch
    from ..energy import energy_command_text

    click.echo(energy_command_text(load_arch(arch_path, overrides(sets))))
