"""`pacim energy` and `pacim area`: the energy and area tables of a chip, with their sources."""

from __future__ import annotations

import click

from .options import SET_HELP, overrides


@click.command("energy")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def energy_command(arch_path: str, sets: tuple[str, ...]) -> None:
    """Print the energy table at the operating point and the area table, with sources.

    \b
    Examples:
      pacim energy --arch arch_configs/pacim_65nm.yaml
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """
    from ..arch import load_arch
    from ..energy import area_command_text, energy_command_text

    arch = load_arch(arch_path, overrides(sets))
    click.echo(energy_command_text(arch))
    click.echo("")
    click.echo(area_command_text(arch))


@click.command("area")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def area_command(arch_path: str, sets: tuple[str, ...]) -> None:
    """Print the area table (um^2 per unit, sources, counts, mm^2) and TOPS/mm^2.

    \b
    Examples:
      pacim area --arch arch_configs/pacim_65nm.yaml
      pacim area --arch arch_configs/pacim_65nm.yaml --set macro.banks=32
      pacim area --arch arch_configs/dcim_65nm.yaml --set area.full_adder.value=25.8
    """
    from ..arch import load_arch
    from ..energy import area_command_text

    click.echo(area_command_text(load_arch(arch_path, overrides(sets))))
