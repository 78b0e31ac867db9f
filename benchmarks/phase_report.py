"""The phase benchmark (bench_phase) in the docs: its table and context sweep for RESULTS.md,
the generated block of docs/LLM.md, and the context-sweep figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLM_BEGIN = "<!-- generated: bench_phase table (python -m benchmarks --only phase --report) -->"
LLM_END = "<!-- end of generated bench_phase table -->"


def _n(v: float) -> str:
    return f"{v:.4g}"


def section(fig: dict[str, Any]) -> list[str]:
    """Markdown lines: the prefill / decode table and the context sweep."""
    table, setup = fig.get("table"), fig.get("table_setup", {})
    if not table:
        return []
    out = [f"Prefill of {setup.get('prefill_tokens')} tokens; decode of "
           f"{setup.get('decode_tokens')} tokens after a context of "
           f"{setup.get('decode_context')} (`--no-data`: shapes, default statistics; "
           "attention exact on the macro). Weight-load share: cycles the banks wait for "
           "weights.", "",
           "| workload @ chip / attention | phase | tokens/s | energy/token uJ | TOPS/W | "
           "weight reloads/step | weight-load share | weight Mbit/token | KV read Mbit/token |",
           "|---|---|---|---|---|---|---|---|---|"]
    for key, row in table.items():
        for ph in ("prefill", "decode"):
            r = row[ph]
            out.append(f"| {key} | {ph} | {_n(r['tokens_per_s'])} | "
                       f"{_n(r['energy_per_token_uj'])} | {_n(r['tops_per_w'])} | "
                       f"{_n(r['weight_reloads_per_step'])} | "
                       f"{100 * r['weight_load_share']:.1f}% | "
                       f"{_n(r['weight_read_mbit_per_token'])} | "
                       f"{_n(r['kv_read_mbit_per_token'])} |")
    sw = fig.get("sweep")
    if sw:
        out += ["", f"Decode of {sw['tokens']} tokens on {sw['workload']} @ {sw['arch']} against "
                "the context length:", "",
                "| context | tokens/s | energy/token uJ | weight Mbit/token | "
                "KV read Mbit/token |", "|---|---|---|---|---|"]
        for c, r in sw["points"].items():
            out.append(f"| {c} | {_n(r['tokens_per_s'])} | {_n(r['energy_per_token_uj'])} | "
                       f"{_n(r['weight_read_mbit_per_token'])} | "
                       f"{_n(r['kv_read_mbit_per_token'])} |")
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
    """Energy per token and traffic per token against context (the sweep); None without it."""
    sw = fig.get("sweep")
    if not sw:
        return None
    import matplotlib.pyplot as plt

    ctx = [int(c) for c in sw["points"]]
    pts = [sw["points"][str(c)] for c in ctx]
    f, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.semilogx(ctx, [p["energy_per_token_uj"] for p in pts], "o-", label="energy / token")
    a.set_xlabel("context (tokens in the KV cache)")
    a.set_ylabel("energy per token (uJ)")
    a2 = a.twinx()
    a2.semilogx(ctx, [p["tokens_per_s"] for p in pts], "s--", color="C1", label="tokens/s")
    a2.set_ylabel("tokens/s")
    a.set_title(f"decode, {sw['workload']} @ {sw['arch']}")
    a.grid(True, alpha=0.3)
    b.loglog(ctx, [p["weight_read_mbit_per_token"] for p in pts], "o-", label="weight reads")
    b.loglog(ctx, [p["kv_read_mbit_per_token"] for p in pts], "s-", label="KV cache reads")
    b.set_xlabel("context (tokens in the KV cache)")
    b.set_ylabel("Mbit per token")
    b.set_title("memory reads per generated token")
    b.grid(True, which="both", alpha=0.3)
    b.legend()
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path
