"""``pacim llm ...`` commands (registered by pacim.cli as the ``llm`` group)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pacim.errors import PacimError
from pacim.llm.rotation import DEFAULT_ROTATION, ROTATIONS


class LLMError(click.ClickException):
    """A user-facing error: one line on stderr, exit status 2."""

    exit_code = 2


def _modes(value: str) -> tuple[str, ...]:
    from pacim.llm.insertquant import MODES  # noqa: PLC0415

    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise click.BadParameter(f"unknown mode(s) {', '.join(bad) or '(none)'}; "
                                 f"choose from {','.join(MODES)}")  # fmt: skip
    return modes


@click.group("llm")
def llm_group() -> None:
    """LLM front end: GGUF Llama models in numpy, INSERTQUANT, perplexity."""


@llm_group.command("eval")
@click.option("--model", default="smollm2-135m", show_default=True,
              help="smollm2-135m (downloaded once) or a path to a Llama-family .gguf")
@click.option("--modes", "modes_s", default="fp,naive,insertquant,insertquant+pac",
              show_default=True, help="comma-separated: fp, naive, insertquant, insertquant+pac")
@click.option("--bits", default=8, show_default=True, type=click.IntRange(1, 16),
              help="activation bits")
@click.option("--wbits", default=8, show_default=True, type=click.IntRange(1, 16),
              help="weight bits")
@click.option("--operand", default=4, show_default=True, type=click.IntRange(1, 16),
              help="PAC operand (digital MSB planes) for insertquant+pac")
@click.option("--text", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="evaluation text file [default: shipped eval.txt]")
@click.option("--calib", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="calibration text file [default: shipped calib.txt]")
@click.option("--tokens", default=1024, show_default=True, type=click.IntRange(0),
              help="evaluation tokens (0 = whole text)")
@click.option("--ctx", default=512, show_default=True, type=click.IntRange(2),
              help="context window (tokens)")
@click.option("--calib-tokens", default=1024, show_default=True, type=click.IntRange(2))
@click.option("--eta", default=64.0, show_default=True, type=float,
              help="spike threshold: token max / median token max")
@click.option("--rotation", default=DEFAULT_ROTATION, show_default=True,
              type=click.Choice(list(ROTATIONS)),
              help="insertquant's online block-Hadamard rotation of the quantized inputs "
                   "(none: INSERTQUANT as in the paper)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="write the full result as JSON")
@click.option("--quiet", is_flag=True, help="no progress bar, no per-layer table")
def eval_cmd(
    model: str, modes_s: str, bits: int, wbits: int, operand: int, text: Path | None,
    calib: Path | None, tokens: int, ctx: int, calib_tokens: int, eta: float,
    rotation: str, json_out: Path | None, quiet: bool,
) -> None:  # fmt: skip
    """Perplexity per quantization mode and per-layer max/median activation ratios."""
    try:
        from pacim.llm.eval import EvalConfig, evaluate, format_report  # noqa: PLC0415

        cfg = EvalConfig(
            model=model, modes=_modes(modes_s), bits=bits, wbits=wbits, operand=operand,
            text=str(text) if text else None, calib=str(calib) if calib else None,
            tokens=tokens, ctx=ctx, calib_tokens=calib_tokens, eta=eta, rotation=rotation,
        )  # fmt: skip
        res = _run(cfg, evaluate, quiet)
        click.echo(format_report(res, per_layer=not quiet))
        if json_out is not None:
            json_out.write_text(json.dumps(res, indent=2))
            click.echo(f"wrote {json_out}", err=True)
    except PacimError as e:
        raise LLMError(str(e)) from e
    except click.BadParameter as e:
        raise LLMError(e.format_message()) from e


def _run(cfg: Any, evaluate: Any, quiet: bool) -> dict[str, Any]:
    """evaluate() under a progress bar on stderr."""
    if quiet:
        return evaluate(cfg)
    state: dict[str, Any] = {}

    def on_total(n: int) -> None:
        bar = click.progressbar(length=n, label="llm eval", file=sys.stderr, show_eta=True)
        state["bar"] = bar.__enter__()

    try:
        return evaluate(cfg, progress=lambda k: state["bar"].update(k), on_total=on_total)
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)
