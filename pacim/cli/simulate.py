"""`pacim simulate`: one workload on one chip: per-layer table, summary, JSON/CSV/plot/trace."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import click

from ..errors import PacimError
from .options import SET_HELP, overrides, progress_option, seed_option


@click.command("simulate")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--workload", required=True,
              help="Built-in name (resnet18, resnet18-cifar, llm-layer, smollm2-135m), a "
                   "workload YAML, an ONNX file or a Llama-family .gguf (needs pacim[llm]).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON report.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write per-layer CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a figure (format by extension: png, pdf, svg, ...): per-layer energy "
                   "breakdown and a total pie.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="Write every scheduler event as CSV.")
@click.option("--no-data", is_flag=True, help="Shapes only, default statistics (fast).")
@seed_option(None, "Seed of the built-in workloads, >= 0 (default: the workload file's, else 0).")
@click.option("--tokens", type=click.IntRange(min=1), default=None,
              help="Token count of LLM workloads (with --phase: prompt tokens of a prefill, "
                   "generated tokens of a decode).")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default=None,
              help="LLM inference phase (needs --no-data and --tokens): prefill runs T tokens "
                   "at once, decode T steps of one token against a growing KV cache.")
@click.option("--context", type=click.IntRange(min=0), default=None,
              help="With --phase: tokens already in the KV cache before the phase [0].")
@click.option("--setting", default=None, metavar="SPEC",
              help="INSERTQUANT quantization setting whose static KV cache attention holds "
                   "(w4a4skv4: K/V at 4 bits): sets attention.kv_bits from its KV part.")
@click.option("--quiet", "-q", is_flag=True, help="Print the summary only, no per-layer table.")
@progress_option
def simulate_command(arch_path: str, workload: str, sets: tuple[str, ...],
                     json_path: str | None, csv_path: str | None, plot_path: str | None,
                     trace_path: str | None, no_data: bool, seed: int | None,
                     tokens: int | None, phase: str | None, context: int | None,
                     setting: str | None, quiet: bool, progress: bool | None) -> None:
    """Simulate a workload on a CiM chip: per-layer table and summary.

    Every output option is checked (directory, permission, figure format) before the run, and
    every write is checked after it: a failure is one line, exit status 2, no partial file.

    \b
    Table columns: MACs; dig.cyc = mean digital bit-serial cycles per vector-tile (wbit x xbit
    when exact); SQNR dB vs the exact macro; cycles; stalls = cycles the banks wait (weight
    load, memory, PAC engine, encoder, drain); rd/wr Mbit over all memory levels; energy uJ.
    The summary adds the clock at VDD, latency (ms), memory traffic (Mbit), energy (uJ), TOPS/W.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18-cifar \\
          --set pac.operand=3 --set pac.dynamic=null --json out.json --csv layers.csv
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload workloads/tiny_cnn.yaml
      pacim simulate --arch pacim_65nm --workload resnet18 --no-data --no-progress > log.txt
      pacim simulate --arch pacim_65nm --workload llm-layer --set attention.mapping=cim \\
          --phase decode --context 2048 --tokens 4096 --no-data
      pacim simulate --arch pacim_65nm --workload smollm2-135m --set attention.mapping=cim \\
          --set attention.pac=true --setting w8a8skv8 --phase decode --context 512 \\
          --tokens 64 --no-data
    """
    from ..arch import load_arch
    from ..pipeline import simulate as run
    from ..progress import Progress
    from ..report import check_outputs
    from ..sched.trace import TraceWriteError

    outputs = {"--json": json_path, "--csv": csv_path, "--plot": plot_path,
               "--trace": trace_path}
    if phase is None and context is not None:
        raise PacimError("--context needs --phase prefill or --phase decode")
    if phase is not None:
        if not no_data:
            raise PacimError("--phase needs --no-data: the phases are a cost model of shapes "
                             "(no numerics of the decode steps yet)")
        if tokens is None:
            raise PacimError("--phase needs --tokens T (prompt tokens of a prefill, generated "
                             "tokens of a decode)")
        if trace_path is not None:
            raise PacimError("--trace cannot be combined with --phase")
    check_outputs(outputs, images=("--plot",))
    over = overrides(sets)
    if setting is not None:
        from ..phase import kv_setting_overrides

        if "attention.kv_bits" in over:
            raise PacimError("--setting and --set attention.kv_bits both set the KV bits; "
                             "give one")
        over = {**over, **kv_setting_overrides(setting)}
    arch = load_arch(arch_path, over)
    if setting is not None and arch.attention.mapping is None:
        raise PacimError("--setting sets the bits of the KV cache attention holds: it needs "
                         "attention.mapping cim or digital (--set attention.mapping=cim)")
    opts: dict[str, Any] = {}
    if tokens is not None:
        opts["tokens"] = tokens
    trace_existed = trace_path is not None and os.path.lexists(trace_path)
    try:
        with Progress("simulate", force=progress) as prog:
            if phase is not None:
                from ..phase import simulate_phase

                report = simulate_phase(arch, workload, phase, context=context or 0,
                                        tokens=tokens or 1, seed=seed, progress=prog)
            else:
                report = run(arch, workload, data=not no_data, seed=seed, progress=prog,
                             trace_path=trace_path, **opts)
    except BaseException as e:
        if trace_path is not None and not trace_existed and Path(trace_path).is_file():
            with contextlib.suppress(OSError):  # no partial trace of a failed run
                os.unlink(trace_path)
        if isinstance(e, TraceWriteError):
            raise PacimError(f"--trace {trace_path}: cannot write: {e.reason}") from None
        if (isinstance(e, OSError) and trace_path is not None
                and e.filename in (None, trace_path)):  # the run writes only the trace
            raise PacimError(f"--trace {trace_path}: cannot write: {e.strerror or e}") from None
        raise
    if quiet:
        from ..report import summary_text

        click.echo(summary_text(report.to_dict()))
    else:
        click.echo(report.table())
    if json_path:
        report.to_json(json_path, option="--json")
    if csv_path:
        report.to_csv(csv_path, option="--csv")
    if plot_path:
        from ..report.plots import plot_report

        plot_report(report.to_dict(), plot_path, option="--plot")
