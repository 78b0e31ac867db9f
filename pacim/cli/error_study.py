"""`pacim error-study`: MAC error of PAC vs truncation vs expected value, per operand."""

from __future__ import annotations

import click

from ..errors import PacimError
from .options import progress_option, seed_option


@click.command("error-study")
@click.option("--workload", "workloads", multiple=True, default=("resnet18", "llm-layer"),
              show_default=True, help="Workload name or file (repeatable).")
@click.option("--operands", default="2,3,4,5,6", show_default=True,
              help="Comma-separated operands to study.")
@click.option("--tokens", type=click.IntRange(min=1), default=32, show_default=True,
              help="Token count of LLM workloads.")
@seed_option(0, "Seed of the built-in workloads (>= 0).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write all figures.")
@progress_option
def error_study_command(workloads: tuple[str, ...], operands: str, tokens: int, seed: int,
                        json_path: str | None, progress: bool | None) -> None:
    """MAC error of PAC vs truncation vs expected-value, per operand, on every PAC layer.

    \b
    Examples:
      pacim error-study
      pacim error-study --workload resnet18-cifar --operands 3,4 --json study.json
    """
    import json

    from ..error_study import error_study, format_study
    from ..progress import Progress
    from ..report import check_writable, json_safe, write_text
    from ..workloads import load_workload

    check_writable(json_path, "--json")
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
    with Progress("error-study", force=progress) as prog:
        res = error_study(wls, ops, progress=prog)
    click.echo(format_study(res))
    if json_path:
        write_text(json_path, json.dumps(json_safe(res), indent=2) + "\n", "--json")
