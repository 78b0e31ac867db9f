"""The phase benchmark (bench_phase) in the docs: its table and context sweep for RESULTS.md,
the generated block of docs/LLM.md, and the context-sweep figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLM_BEGIN = "<!-- generated: bench_phase table (python -m benchmarks --only phase --report) -->"
LLM_END = "<!-- end of generated bench_phase table -->"


def _n(v: float) -> str:
    return f"{v:.4g}"


def _chip_bits(table: dict[str, Any]) -> str:
    """'chip W8A8KV8, ...' from the table's keys (workload@chip/mapping) and bits."""
    chips = {k.split("@", 1)[1].split("/", 1)[0]: r.get("bits", "-") for k, r in table.items()}
    return ", ".join(f"{c} {b}" for c, b in chips.items())


def section(fig: dict[str, Any]) -> list[str]:
    """Markdown lines: the prefill / decode table and the context sweep."""
    table, setup = fig.get("table"), fig.get("table_setup", {})
    if not table:
        return []
    out = [f"Prefill of {setup.get('prefill_tokens')} tokens; decode of "
           f"{setup.get('decode_tokens')} tokens after a context of "
           f"{setup.get('decode_context')} (`--no-data`: shapes, default statistics; "
           "attention exact on the macro). Each chip runs at its own shipped precision "
           f"(bits: weights, activations, K / V; {_chip_bits(table)}). Weight-load share: "
           "cycles the banks wait for weights.", "",
           "| workload @ chip / attention | bits | phase | tokens/s | energy/token uJ | TOPS/W | "
           "weight reloads/step | weight-load share | weight Mbit/token | KV read Mbit/token |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in table.items():
        for ph in ("prefill", "decode"):
            r = row[ph]
            out.append(f"| {key} | {row.get('bits', '-')} | {ph} | {_n(r['tokens_per_s'])} | "
                       f"{_n(r['energy_per_token_uj'])} | {_n(r['tops_per_w'])} | "
                       f"{_n(r['weight_reloads_per_step'])} | "
                       f"{100 * r['weight_load_share']:.1f}% | "
                       f"{_n(r['weight_read_mbit_per_token'])} | "
                       f"{_n(r['kv_read_mbit_per_token'])} |")
    out += pac_section(fig.get("attention_pac"))
    sw = fig.get("sweep")
    if sw:
        out += ["", f"Decode of {sw['tokens']} tokens on {sw['workload']} @ {sw['arch']} against "
                "the context length (`pacim sweep --phase decode --grid context=...`):", "",
                "| context | tokens/s | energy/token uJ | weight Mbit/token | "
                "KV read Mbit/token |", "|---|---|---|---|---|"]
        for c, r in sw["points"].items():
            out.append(f"| {c} | {_n(r['tokens_per_s'])} | {_n(r['energy_per_token_uj'])} | "
                       f"{_n(r['weight_read_mbit_per_token'])} | "
                       f"{_n(r['kv_read_mbit_per_token'])} |")
        cross = sw.get("kv_over_weights_context")
        out += ["", (f"KV-cache reads per token overtake the weight reads at a context of "
                     f"~{cross:,.0f} tokens (interpolated between the sweep's points)."
                     if cross is not None else "KV-cache reads per token stay below the "
                     "weight reads over the whole sweep.")]
    return out


def pac_section(pac: dict[str, Any] | None) -> list[str]:
    """Markdown lines: decode with attention exact and on PAC, KV at 8 and 4 bits."""
    if not pac:
        return []
    ops = sorted({r["operand"] for r in pac["rows"].values() if r.get("operand")})
    out = ["", f"Attention on the PAC macro (`attention.pac`, pac.operand "
           f"{', '.join(map(str, ops)) or '-'}) against exact, "
           f"decode of {pac['tokens']} tokens after {pac['context']} on {pac['workload']} @ "
           "pacim_65nm/cim; KV4 is `--setting w4a4skv4`'s cache (linear layers at 8 bits):", "",
           "| attention | tokens/s | energy/token uJ | attention bit-serial cycles / exact | "
           "KV read Mbit/token | KV write Mbit/token |", "|---|---|---|---|---|---|"]
    for label, r in pac["rows"].items():
        share = r["attention_bit_serial_cycles"] / r["attention_bit_serial_baseline"]
        out.append(f"| {label} | {_n(r['tokens_per_s'])} | {_n(r['energy_per_token_uj'])} | "
                   f"{share:.3g} | {_n(r['kv_read_mbit_per_token'])} | "
                   f"{_n(r['kv_write_mbit_per_token'])} |")
    return out


def update_llm_doc(fig: dict[str, Any], doc: Path) -> bool:
    """Replace docs/LLM.md's generated block with the table; False when it has none."""
    body = section(fig)
    if not body or not doc.is_file():
        return False
    text = doc.read_text()
    if LLM_BEGIN not in text or LLM_END not in text:
        return False
    head, rest = text.split(LLM_BEGIN, 1)
    _, tail = rest.split(LLM_END, 1)
    doc.write_text(head + LLM_BEGIN + "\n" + "\n".join(body) + "\n" + LLM_END + tail)
    return True


def figure(fig: dict[str, Any], path: Path) -> Path | None:
    """The context sweep's figure (pacim plot --context on its points); None without it."""
    from pacim.sweeps.context_plot import plot_context

    sw = fig.get("sweep")
    if not sw:
        return None
    recs = [{"workload": sw["workload"], "arch": sw["arch"], "context": int(c),
             "energy_per_token_pj": p["energy_per_token_uj"] * 1e6,
             "tokens_per_s": p["tokens_per_s"],
             "weight_reads_bits_per_token": p["weight_read_mbit_per_token"] * 1e6,
             "kv_reads_bits_per_token": p["kv_read_mbit_per_token"] * 1e6}
            for c, p in sw["points"].items()]
    plot_context(recs, path)
    return path
