"""The `pacim` command line: thin — parse, call the API, print. User errors exit 2, one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .errors import PacimError

EXIT_USAGE = 2


# commands living in their own modules, imported only when used or listed
LAZY_COMMANDS = {
    "llm": "pacim.llm.cli:llm_group",
    "sweep": "pacim.sweep_cli:sweep_command",
    "plot": "pacim.sweep_cli:plot_command",
    "accuracy": "pacim.accuracy:accuracy_command",
    "data": "pacim.accuracy.cli:data_group",
    "train": "pacim.accuracy.train.cli:train_command",
    "calibrate-thresholds": "pacim.accuracy.thresholds:calibrate_command",
}


class _Group(click.Group):
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


def _overrides(items: tuple[str, ...]) -> dict[str, Any]:
    from .arch import parse_assignment

    return dict(parse_assignment(i) for i in items)


SET_HELP = "Override an arch field, e.g. --set macro.banks=32 (repeatable)."


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pacim")
def main() -> None:
    """pacim: cycle-level compute-in-memory simulator.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/dcim_65nm.yaml --workload resnet18 --no-data
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """


@main.command()
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--workload", required=True,
              help="Built-in name (resnet18, resnet18-cifar, llm-layer, smollm2-135m) or a "
                   "workload YAML / ONNX file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON report.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write per-layer CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a PNG: per-layer energy breakdown and a total pie.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="Write every scheduler event as CSV.")
@click.option("--no-data", is_flag=True, help="Shapes only, default statistics (fast).")
@click.option("--seed", type=int, default=None,
              help="Seed of the built-in workloads (default: the workload file's, else 0).")
@click.option("--tokens", type=int, default=None, help="Token count of LLM workloads.")
@click.option("--quiet", "-q", is_flag=True, help="Print the summary only, no per-layer table.")
def simulate(arch_path: str, workload: str, sets: tuple[str, ...], json_path: str | None,
             csv_path: str | None, plot_path: str | None, trace_path: str | None,
             no_data: bool, seed: int, tokens: int | None, quiet: bool) -> None:
    """Simulate a workload on a CiM chip: per-layer table and summary.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18-cifar \\
          --set pac.operand=3 --set pac.dynamic=null --json out.json --csv layers.csv
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload workloads/tiny_cnn.yaml
    """
    from .arch import load_arch
    from .pipeline import simulate as run
    from .progress import Progress
    from .report import check_writable

    arch = load_arch(arch_path, _overrides(sets))
    for p in (json_path, csv_path, plot_path, trace_path):
        check_writable(p)
    opts: dict[str, Any] = {}
    if tokens is not None:
        opts["tokens"] = tokens
    prog = Progress("simulate")
    try:
        report = run(arch, workload, data=not no_data, seed=seed, progress=prog,
                     trace_path=trace_path, **opts)
    finally:
        prog.close()
    if quiet:
        from .report import summary_text

        click.echo(summary_text(report.to_dict()))
    else:
        click.echo(report.table())
    if json_path:
        report.to_json(json_path)
    if csv_path:
        report.to_csv(csv_path)
    if plot_path:
        from .plots import plot_report

        plot_report(report.to_dict(), plot_path)


@main.command()
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def energy(arch_path: str, sets: tuple[str, ...]) -> None:
    """Print the energy table at the operating point, with each value's source.

    \b
    Examples:
      pacim energy --arch arch_configs/pacim_65nm.yaml
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """
    from .arch import load_arch
    from .energy import energy_command_text

    click.echo(energy_command_text(load_arch(arch_path, _overrides(sets))))


@main.command("error-study")
@click.option("--workload", "workloads", multiple=True, default=("resnet18", "llm-layer"),
              show_default=True, help="Workload name or file (repeatable).")
@click.option("--operands", default="2,3,4,5,6", show_default=True,
              help="Comma-separated operands to study.")
@click.option("--tokens", default=32, show_default=True, help="Token count of LLM workloads.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write all figures.")
def error_study_cmd(workloads: tuple[str, ...], operands: str, tokens: int, seed: int,
                    json_path: str | None) -> None:
    """MAC error of PAC vs truncation vs expected-value, per operand, on every PAC layer.

    \b
    Examples:
      pacim error-study
      pacim error-study --workload resnet18-cifar --operands 3,4 --json study.json
    """
    import json

    from .error_study import error_study, format_study
    from .progress import Progress
    from .report import check_writable, json_safe, write_text
    from .workloads import load_workload

    check_writable(json_path)
    try:
        ops = tuple(int(v) for v in operands.split(","))
    except ValueError:
        raise PacimError(f"--operands must be comma-separated integers, got {operands!r}") from None
    if not all(1 <= o <= 8 for o in ops):
        raise PacimError(f"--operands must be in 1..8, got {operands}")
    wls = []
    for name in workloads:
        opts = {"tokens": tokens} if name in ("llm-layer", "smollm2-135m") else {}
        wls.append(load_workload(name, seed=seed, **opts))
    prog = Progress("error-study")
    try:
        res = error_study(wls, ops, progress=prog)
    finally:
        prog.close()
    click.echo(format_study(res))
    if json_path:
        write_text(json_path, json.dumps(json_safe(res), indent=2) + "\n")


def run() -> None:  # pragma: no cover - console entry convenience
    """Entry point that never shows a traceback for user errors."""
    main(prog_name=Path(sys.argv[0]).name or "pacim")
