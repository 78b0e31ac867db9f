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
    from pacim.llm.insertquant import ABLATION_MODES, MODES  # noqa: PLC0415

    modes: list[str] = []
    for m in (m.strip() for m in value.split(",")):
        if m == "ablation":  # shorthand: quarot-rtn and every INSERTQUANT level
            modes += [a for a in ABLATION_MODES if a not in modes]
        elif m and m not in modes:
            modes.append(m)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise click.BadParameter(f"unknown mode(s) {', '.join(bad) or '(none)'}; "
                                 f"choose from {','.join(MODES)} or ablation")  # fmt: skip
    return tuple(modes)


@click.group("llm")
def llm_group() -> None:
    """LLM front end: GGUF Llama models in numpy, INSERTQUANT, perplexity."""


@llm_group.command("eval")
@click.option("--model", default="smollm2-135m", show_default=True,
              help="smollm2-135m (downloaded once) or a path to a Llama-family .gguf")
@click.option("--modes", "modes_s", default="fp,rtn,quarot-rtn,prefixquant,insertquant",
              show_default=True,
              help="comma-separated: fp, rtn, quarot-rtn, prefixquant, insertquant, "
                   "insertquant:{detect,clamp,insert,restore}, insertquant-fp, prefixquant-fp, "
                   "insertquant-norm, naive (= rtn), any quantized mode + '+pac', or 'ablation'")
@click.option("--setting", default="w8a8", show_default=True,
              help="quantization setting: w4a4skv4, w4a8skv8, w8a8skv8, w8a8, or "
                   "w<B>a<B>[skv<B>|gkv<B>][:wc|wt,sym|asym,rot|norot,g<N>] (docs/LLM.md)")
@click.option("--bits", default=None, type=click.IntRange(1, 16),
              help="activation bits [default: the setting's]")
@click.option("--wbits", default=None, type=click.IntRange(1, 16),
              help="weight bits [default: the setting's]")
@click.option("--operand", default=4, show_default=True, type=click.IntRange(1, 16),
              help="PAC operand (digital MSB planes) for insertquant+pac")
@click.option("--text", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="evaluation text file, or debian-handbook (The Debian Administrator's "
                   "Handbook, GPL-2.0+ or CC-BY-SA-3.0, fetched once from Debian's package) "
                   "[default: shipped eval.txt]")
@click.option("--calib", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="calibration text file [default: shipped calib.txt]")
@click.option("--tokens", default=1024, show_default=True, type=click.IntRange(0),
              help="evaluation tokens (0 = whole text)")
@click.option("--ctx", default=512, show_default=True, type=click.IntRange(2),
              help="context window (tokens)")
@click.option("--calib-tokens", default=1024, show_default=True, type=click.IntRange(2))
@click.option("--eta", "--alpha", "eta", default=64.0, show_default=True, type=float,
              help="sink threshold alpha_0: token max / median token max at the birth layer")
@click.option("--alpha1", default=None, type=float,
              help="sink threshold one layer after the birth [default: --alpha]")
@click.option("--rotation", default=None, type=click.Choice(list(ROTATIONS)),
              help="the block-Hadamard rotation of every rotating method (all but rtn) "
                   f"[default: the setting's, {DEFAULT_ROTATION}]")
@click.option("--attention-pac", is_flag=True,
              help="+pac modes: QK^T and PV on the PAC macro too, from the static KV cache's codes")
@click.option("--attention-bits", default=8, show_default=True, type=click.IntRange(1, 16),
              help="bits of the queries and probabilities streamed into the macro")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="write the full result as JSON")
@click.option("--quiet", is_flag=True, help="no progress bar, no per-layer table")
def eval_cmd(
    model: str, modes_s: str, setting: str, bits: int | None, wbits: int | None, operand: int,
    text: Path | None, calib: Path | None, tokens: int, ctx: int, calib_tokens: int,
    eta: float, alpha1: float | None, rotation: str | None, attention_pac: bool,
    attention_bits: int, json_out: Path | None, quiet: bool,
) -> None:  # fmt: skip
    """Perplexity per quantization mode and per-layer max/median activation ratios.

    \b
    pacim llm eval --setting w4a4skv4            # fp, rtn, quarot-rtn, prefixquant, insertquant
    pacim llm eval --setting w8a8skv8 --modes fp,ablation
    pacim llm eval --setting w8a8 --modes fp,insertquant,insertquant+pac --operand 7
    pacim llm eval --setting w8a8skv8 --modes fp,insertquant+pac --operand 7 --attention-pac
    """
    try:
        from pacim.llm.eval import EvalConfig, evaluate, format_report  # noqa: PLC0415

        cfg = EvalConfig(
            model=model, modes=_modes(modes_s), setting=setting, bits=bits, wbits=wbits,
            operand=operand, text=str(text) if text else None,
            calib=str(calib) if calib else None, tokens=tokens, ctx=ctx,
            calib_tokens=calib_tokens, eta=eta, alpha1=alpha1, rotation=rotation,
            attention_pac=attention_pac, attention_bits=attention_bits,
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
