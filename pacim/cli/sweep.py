"""`pacim sweep` and `pacim plot`: thin click commands over pacim.sweeps and the plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..errors import PacimError
from .options import progress_option, seed_option


@click.command("sweep")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--workload", "workloads", required=True, multiple=True,
              help="Built-in workload name or workload file (repeatable).")
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="Values of one arch field, e.g. --grid pac.operand=2,3,4 (repeatable; the "
                   "sweep is their cartesian product; [..] values may hold commas).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Fixed override of the base arch, e.g. --set pac.dynamic=null (repeatable).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="JSON Lines file: one record per point, appended as points finish; an "
                   "existing file is resumed (its points are not run again).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Local worker processes [default: one per core; 0 runs in this process].")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="Run on a Dask distributed cluster (needs pacim[dask]).")
@click.option("--no-data", is_flag=True, help="Shapes only, default statistics (fast sweeps).")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default=None,
              help="LLM inference phase of every point (needs --no-data; a --grid phase=... "
                   "overrides it); the grid may then hold context= and tokens= too.")
@click.option("--context", type=click.IntRange(min=0), default=None,
              help="With a phase: tokens already in the KV cache [0] (or --grid context=...).")
@click.option("--tokens", type=click.IntRange(min=1), default=None,
              help="With a phase: prompt / generated tokens (or --grid tokens=...).")
@seed_option(0, "Seed of the built-in workloads (>= 0).")
@click.option("--fresh", is_flag=True, help="Start --out afresh instead of resuming it.")
@progress_option
def sweep_command(arch_path: str, workloads: tuple[str, ...], grids: tuple[str, ...],
                  sets: tuple[str, ...], out: str, workers: int | None, scheduler: str | None,
                  no_data: bool, phase: str | None, context: int | None, tokens: int | None,
                  seed: int, fresh: bool, progress: bool | None) -> None:
    """Run a parameter sweep: every --grid combination x every --workload.

    \b
    Examples:
      pacim sweep --arch arch_configs/pacim_65nm.yaml --workload resnet18 --no-data \\
          --set pac.dynamic=null --grid pac.operand=2,3,4,5,6 --grid macro.banks=4,8,16,32 \\
          --out sweep.jsonl
      pacim plot sweep.jsonl --x latency_s --y energy_pj --color pac.operand --pareto -o pareto.png
      pacim sweep --arch pacim_65nm --workload resnet18 --no-data --grid macro.banks=8,16,32 \\
          --grid area.full_adder.value=14.8,25.8 --out area.jsonl   # area entries grid too
      pacim plot area.jsonl --x area_mm2 --y energy_pj --pareto -o area.png
      pacim sweep ... --scheduler tcp://10.0.0.5:8786     # on a Dask cluster
      pacim sweep --arch pacim_65nm --set attention.mapping=cim --workload smollm2-135m \
          --no-data --phase decode --tokens 64 --grid context=128,512,2048,8192 --out ctx.jsonl
      pacim plot ctx.jsonl --context -o context.png   # energy/token, tokens/s, KV vs weights
    """
    from ..arch import load_arch, parse_assignment
    from ..progress import Progress
    from ..sweeps import (
        PARETO_FIELD,
        check_store_path,
        dask_client,
        expand_grid,
        mark_pareto,
        parse_grid_option,
        shutdown_executor,
        sweep,
    )

    if workers is not None and scheduler is not None:
        raise PacimError("--workers and --scheduler exclude each other")
    arch = load_arch(arch_path, dict(parse_assignment(s) for s in sets))
    grid: dict[str, list[Any]] = {}
    for item in grids:
        key, values = parse_grid_option(item)
        if key in grid:
            raise PacimError(f"--grid {key} given twice")
        grid[key] = values
    run = {k: v for k, v in (("phase", phase), ("context", context), ("tokens", tokens))
           if v is not None}
    n_points = len(expand_grid(grid)) * len(set(workloads))
    check_store_path(out, "--out")

    executor: Any = None
    client = None
    if scheduler is not None:
        executor = client = dask_client(scheduler)
    elif workers is not None:
        from ..sweeps import local_executor

        executor = local_executor(min(workers, n_points))
    prog = Progress("sweep", force=progress)

    def on_progress(done: int, failed: int, total: int) -> None:
        prog.extra = f"failed {failed} left {total - done} "
        prog(done, total)

    t0 = time.perf_counter()
    clean = False
    try:
        records = sweep(arch, grid, list(workloads), data=not no_data, executor=executor,
                        out=out, resume=not fresh, seed=seed, progress=on_progress,
                        run=run)
        clean = True
    finally:
        prog.close()
        if client is not None:
            client.close()
        elif executor is not None:
            shutdown_executor(executor, clean)
    dt = time.perf_counter() - t0
    failed = [r for r in records if r.get("status") != "ok"]
    click.echo(f"{len(records)} points ({len(records) - len(failed)} ok, {len(failed)} failed) "
               f"in {dt:.1f} s -> {out}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in failed:  # one line per distinct reason, not one per point
        groups.setdefault(str(r.get("error")), []).append(r)
    if records and len(failed) == len(records):
        why = "; ".join(f"{err} ({len(rs)} point{'s' * (len(rs) > 1)})"
                        for err, rs in list(groups.items())[:3])
        more = f"; and {len(groups) - 3} other reasons" if len(groups) > 3 else ""
        raise PacimError(f"no point succeeded: {why}{more}")
    front = [r for r in mark_pareto(records) if r.get(PARETO_FIELD)]
    if front:
        click.echo(f"{len(front)} on the energy / latency / area Pareto front: "
                   + "; ".join(f"{r.get('workload')} {r.get('overrides')}" for r in front[:5])
                   + (" ..." if len(front) > 5 else ""))
    for err, rs in list(groups.items())[:3]:
        first = rs[0]
        where = f"{first.get('workload')} {first.get('overrides')}"
        others = f" and {len(rs) - 1} more point(s)" if len(rs) > 1 else ""
        click.echo(f"  failed {where}{others}: {err}")
    if len(groups) > 3:
        click.echo(f"  ... and {len(groups) - 3} more reasons (status 'error' in {out})")


@click.command("plot")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Output image (PNG, or any matplotlib format by extension).")
@click.option("--x", "x", default="latency_s", show_default=True, help="Sweep field on x.")
@click.option("--y", "y", default="energy_pj", show_default=True, help="Sweep field on y.")
@click.option("--color", default=None, help="Field (or arch key) that colours the points.")
@click.option("--pareto", is_flag=True, help="Highlight the Pareto front.")
@click.option("--max-x", is_flag=True, help="Larger x is better (Pareto), e.g. tops_per_w.")
@click.option("--max-y", is_flag=True, help="Larger y is better (Pareto), e.g. sqnr_db.")
@click.option("--logx", is_flag=True, help="Log-scale x axis.")
@click.option("--logy", is_flag=True, help="Log-scale y axis.")
@click.option("--front3", is_flag=True,
              help="Outline the points on the energy / latency / area Pareto front.")
@click.option("--context", "context", is_flag=True,
              help="A phase sweep over --grid context=...: energy per token and tokens/s, and "
                   "weight vs KV-cache reads per token, against context (--x/--y ignored).")
def plot_command(path: str, out: str, x: str, y: str, color: str | None, pareto: bool,
                 max_x: bool, max_y: bool, logx: bool, logy: bool, front3: bool,
                 context: bool) -> None:
    """Plot a sweep (JSONL: scatter + Pareto front) or a simulate JSON report (per layer).

    \b
    Examples:
      pacim plot sweep.jsonl --x latency_s --y energy_pj --color pac.operand --pareto -o f.png
      pacim plot sweep.jsonl --x tops_per_w --max-x --y sqnr_db --max-y --pareto -o acc.png
      pacim plot sweep.jsonl --x area_mm2 --y energy_pj --pareto --front3 -o area.png
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18 --json r.json
      pacim plot r.json -o layers.png
      pacim plot ctx.jsonl --context -o context.png   # a --phase sweep over context
    """
    from ..report import check_writable
    from ..report.plots import plot_report_layers
    from ..sweeps.plots import load_plot_input, plot_sweep

    check_writable(out, "-o", image=True)
    kind, content = load_plot_input(path)
    if context:
        if kind == "report":
            raise PacimError(f"--context plots a sweep (JSONL), not a report: {path}")
        from ..sweeps.context_plot import plot_context

        info = plot_context(content, out, option="-o")
        cross = "; ".join(f"{k}: KV reads overtake weight reads at context ~{v:,.0f}"
                          if v is not None else f"{k}: KV reads stay below weight reads"
                          for k, v in info["crossover"].items())
        click.echo(f"{info['points']} points in {info['series']} series -> {out} ({cross})")
        return
    if kind == "report":
        plot_report_layers(content, out, option="-o")
        click.echo(f"per-layer cycles and energy of {Path(path).name} -> {out}")
    else:
        info = plot_sweep(content, out, x=x, y=y, color=color, pareto=pareto,
                          maximize=(max_x, max_y), log=(logx, logy), front3=front3,
                          option="-o")
        front = f", {info['front']} on the Pareto front" if pareto else ""
        if front3:
            front += f", {info['front3']} on the energy / latency / area front"
        left = f" ({info['dropped']})" if info["dropped"] else ""
        click.echo(f"{info['points']} points{front} -> {out}{left}")
