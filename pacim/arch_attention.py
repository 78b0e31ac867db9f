"""The arch's `attention:` section: where the activation x activation products of attention run.

QK^T and PV have no stationary weight: K^T and V are produced at run time. `mapping`:
- null (absent): today's behaviour: the products are counted (`unmapped_macs`), never costed;
- cim: K^T / V are written into the macro's banks as they are produced, the queries and the
  softmax probabilities stream through as inputs; the KV cache lives at `kv_home` between
  uses and is reloaded into the cells each time its layer runs, unless `kv_banks` reserves banks
  that keep it resident across layers and steps (pacim/sched/kv_resident.py);
- digital: a near-memory digital unit computes them (energy.digital_mac, digital_macs_per_cycle).
With either mapping, softmax, RMSNorm, RoPE and SwiGLU are digital-periphery operations costed
with the energy table (softmax_op, rmsnorm_op, rope_op, swiglu_op).
`kv_bits` / `input_bits` are the widths of K / V (cells and KV cache) and of the streamed
queries and probabilities (null: macro.wbit / macro.xbit; `pacim simulate --setting w4a4skv4`
sets kv_bits from an INSERTQUANT KV setting). `pac: true` runs QK^T and PV on the PAC macro at
pac.operand (mapping cim, a bit_serial macro with pac enabled). See docs/LLM.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .arch_base import MAX_RATE, MIN_RATE, EnergyTable, Strict

AttentionMapping = Literal["cim", "digital"]
KvHome = Literal["global_buffer", "main"]

# energy-table entries each mapping needs (checked when the arch is loaded)
NEEDED_ENTRIES: dict[str, tuple[str, ...]] = {
    "cim": ("cell_write_bit", "softmax_op", "rmsnorm_op", "rope_op", "swiglu_op"),
    "digital": ("digital_mac", "softmax_op", "rmsnorm_op", "rope_op", "swiglu_op"),
}


class Attention(Strict):
    """Attention's activation x activation products (QK^T, PV) and the KV cache."""

    mapping: AttentionMapping | None = Field(
        None, description="cim: K^T / V written into the banks; digital: a near-memory digital "
        "unit; null: counted, not mapped (unmapped_macs)")
    kv_home: KvHome = Field(
        "main", description="memory level the KV cache lives in between uses (spill level): "
        "cached K / V are read from it, new ones written to it")
    write_bits_per_cycle: int | None = Field(
        None, ge=1, le=1 << 20,
        description="bits one bank writes into its cells per cycle; null: macro.cols (one row "
        "of the bank per cycle)")
    kv_banks: int = Field(
        0, ge=0, le=1 << 20,
        description="mapping cim: banks reserved for a KV cache resident across layers and "
        "steps (one KV tile each; the linear layers get the other banks); the positions that "
        "do not fit are reloaded from kv_home each step. 0: no resident cache")
    kv_bits: int | None = Field(
        None, ge=1, le=16, description="bits of a K / V element in the cells and the KV cache; "
        "null: macro.wbit")
    input_bits: int | None = Field(
        None, ge=1, le=16, description="bits of the streamed left operands (queries, softmax "
        "probabilities); null: macro.xbit")
    pac: bool = Field(
        False, description="mapping cim: QK^T and PV on PAC at pac.operand (the static digital "
        "set; counts of the approximated K / V planes made by the sparsity encoder as K / V are "
        "written); false: exact, every bit pair")
    digital_macs_per_cycle: float = Field(
        64, ge=MIN_RATE, le=MAX_RATE, description="near-memory digital unit: MACs per cycle")
    periphery_ops_per_cycle: float = Field(
        16, ge=MIN_RATE, le=MAX_RATE,
        description="digital periphery (softmax, RMSNorm, RoPE, SwiGLU): element ops per cycle")


def check_attention(att: Attention, energy: EnergyTable, macro: Any, pac_enabled: bool) -> None:
    """ValueError naming the missing energy entries a mapping needs, a bad kv_banks, K / V wider
    than a bp_bs bank, or a PAC attention the macro cannot run."""
    banks, kind = macro.banks, macro.kind
    if att.pac and (att.mapping != "cim" or kind != "bit_serial" or not pac_enabled):
        raise ValueError("attention.pac needs attention.mapping cim on a bit_serial macro with "
                         f"pac.enabled (got mapping {att.mapping}, macro.kind {kind}, "
                         f"pac.enabled {pac_enabled})")
    if kind == "bp_bs" and att.kv_bits is not None and att.kv_bits > macro.cols:
        raise ValueError(f"attention.kv_bits ({att.kv_bits}) exceeds macro.cols ({macro.cols}):"
                         " a bp_bs bank holds a K / V element's bits in its columns")
    if att.kv_banks and att.mapping != "cim":
        raise ValueError(f"attention.kv_banks ({att.kv_banks}) needs attention.mapping cim")
    if att.kv_banks >= banks:
        raise ValueError(f"attention.kv_banks ({att.kv_banks}) must leave the linear layers "
                         f"at least one of the macro.banks ({banks})")
    if att.mapping is None:
        return
    missing = [n for n in NEEDED_ENTRIES[att.mapping] if getattr(energy, n) is None]
    if missing:
        raise ValueError(f"attention.mapping {att.mapping} needs energy."
                         + ", energy.".join(missing) + " in the energy table")
