"""A KV cache resident in the macro banks across layers and steps (attention.kv_banks).

With attention.mapping cim and kv_banks = R > 0, R banks are reserved for the KV cache and the
linear layers are scheduled on the other banks (linear_arch). Each reserved bank holds one KV
tile (macro.rows x one bank's channels of one K^T or V) for good. The cache is allocated by
position: the first P positions of every attention layer's K^T and V are resident, P the
largest count whose tiles, over every matmul layer of the model, fit in R banks
(resident_positions). A resident position is written into the cells once, when it is
produced, and never read from kv_home; a position at or beyond P (the overflow) lives at
kv_home and is reloaded into the scratch banks (the linear layers' banks, rewritten by every
layer anyway) each time its layer runs, as without a resident cache. See docs/LLM.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..arch import Arch
from ..workloads.ir import Layer


def channels_per_tile(arch: Arch) -> int:
    """Right-operand columns one bank holds (bit_serial: cols; bp_bs: cols / the K / V bits)."""
    m = arch.macro
    return m.cols if m.kind == "bit_serial" else m.cols // (arch.attention.kv_bits or m.wbit)


def kv_dims(layer: Layer) -> tuple[int, int]:
    """(KV positions, elements per position) of a matmul layer's right operand."""
    if layer.kv_axis == "k":
        return layer.k, layer.n
    if layer.kv_axis == "n":
        return layer.n, layer.k
    raise ValueError(f"layer {layer.name} has no KV axis")


def tiles_for(arch: Arch, layer: Layer, positions: int) -> int:
    """Tiles the first `positions` positions of one layer's right operands take (all its
    KV heads)."""
    from .attention import cdiv, instances

    if positions <= 0:
        return 0
    m, cpt = arch.macro, channels_per_tile(arch)
    inst, _ = instances(layer)
    _, d = kv_dims(layer)
    if layer.kv_axis == "k":  # K^T: head_dim rows x positions columns
        return inst * cdiv(d, m.rows) * cdiv(positions, cpt)
    return inst * cdiv(positions, m.rows) * cdiv(d, cpt)  # V: positions rows x head_dim


def resident_positions(arch: Arch, layers: Iterable[Layer]) -> int:
    """P: positions of every KV layer that the reserved banks hold (0 without kv_banks)."""
    banks = arch.attention.kv_banks
    kv = [la for la in layers if la.kind == "matmul" and la.kv_axis is not None]
    if not banks or not kv or arch.attention.mapping != "cim":
        return 0
    m = arch.macro
    lo, hi = 0, banks * max(m.rows, channels_per_tile(arch))  # a tile holds <= that many
    while lo < hi:  # the largest P with tiles(P) <= banks (tiles are monotone in P)
        mid = (lo + hi + 1) // 2
        if sum(tiles_for(arch, la, mid) for la in kv) <= banks:
            lo = mid
        else:
            hi = mid - 1
    return lo


def linear_arch(arch: Arch) -> Arch:
    """The arch the linear layers are scheduled on: the banks not reserved for the KV cache."""
    r = arch.attention.kv_banks
    if not r:
        return arch
    return arch.with_overrides({"macro.banks": arch.macro.banks - r, "attention.kv_banks": 0})
