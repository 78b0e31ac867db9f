"""`pacim simulate`: one workload on one chip: per-layer table, summary, JSON/CSV/plot/trace."""

from __future__ import annotations

from typing import Any

import click

from .options import SET_HELP, overrides


@click.command("simulate")
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
def simulate_command(arch_path: str, workload: str, sets: tuple[str, ...],
                     json_path: str | None, csv_path: str | None, plot_path: str | None,
                     trace_path: str | None, no_data: bool, seed: int, tokens: int | None,
                     quiet: bool) -> None:
    """Simulate a workload on a CiM chip: per-layer table and summary.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18-cifar \\
          --set pac.operand=3 --set pac.dynamic=null --json out.json --csv layers.csv
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload workloads/tiny_cnn.yaml
    """
    from ..arch import load_arch
    from ..pipeline import simulate as run
    from ..progress import Progress
    from ..report import check_writable

    arch = load_arch(arch_path, overrides(sets))
    for p in (json_path, csv_path, plot_path, trace_path):
        check_writable(p)
    opts: dict[str, Any] = {}
    if tokens is not None:
        opts["tokens"] = tokens
    with Progress("simulate") as prog:
        report = run(arch, workload, data=not no_data, seed=seed, progress=prog,
                     trace_path=trace_path, **opts)
    if quiet:
        from ..report import summary_text

        click.echo(summary_text(report.to_dict()))
    else:
        click.echo(report.table())
    if json_path:
        report.to_json(json_path)
    if csv_path:
        report.to_csv(csv_path)
    if plot_path:
        from ..report.plots import plot_report

        plot_report(report.to_dict(), plot_path)
