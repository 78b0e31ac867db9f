"""Digital bit-serial cycles per input vector (from the functional stats, or --no-data
defaults), and the PAC-engine count products per output they imply.

The scheduler never touches tensors: with data it reads the dynamic-level histogram the
functional macro measured (MacroStats.cycle_hist); without, it uses DEFAULT_NO_DATA.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

from ..arch import Arch
from ..macro.core import pac_products_by_cycles
from ..macro.stats import MacroStats
from ..workloads.ir import Layer

# --no-data defaults. The dynamic-level mix (digital cycles -> fraction of output positions) was
# measured on the built-in `resnet18` workload with data (pacim.workloads.resnet.build_resnet18,
# 224x224, batch 1, seed 0: He-normal weights, batch norm folded, a real forward pass) by running
# pacim.functional.conv2d(..., dynamic=(7000, 10000, 13000), return_stats=True) on each of the 19
# non-first convs, weighted by MACs (mean 12.93 digital cycles; the data run's per-vector-tile
# mean is 12.96). Applied to conv layers under pac.dynamic; the thresholds are not re-scaled.
DEFAULT_NO_DATA: dict[str, object] = {
    "dynamic_mix": {16: 0.1559, 15: 0.1809, 13: 0.3635, 10: 0.2997},
    "dynamic_mix_source": "built-in resnet18 with data (224x224, seed 0), pacim_65nm thresholds "
                          "(7000, 10000, 13000), MAC-weighted over convs 2..20",
}


def _counts_from_fractions(frac: dict[int, float], total: int) -> dict[int, int]:
    """Largest-remainder split of `total` vectors by fractions (exact integer total)."""
    keys = sorted(frac)
    s = sum(frac[c] for c in keys)
    raw = [frac[c] / s * total for c in keys]
    base = [int(r) for r in raw]
    left = total - sum(base)
    order = sorted(range(len(keys)), key=lambda i: (base[i] - raw[i], -keys[i]))
    for i in order[:left]:
        base[i] += 1
    return {c: b for c, b in zip(keys, base, strict=True) if b}


def spread(counts: dict[int, int]) -> np.ndarray:
    """Per-vector values with the given multiplicities, interleaved deterministically.

    A stride permutation (golden-ratio step, coprime to V) spreads each level across the layer
    so every event batch sees about the layer's mix; the multiset is exact.
    """
    mix = CycleMix(tuple(sorted((int(c), int(n)) for c, n in counts.items() if n)))
    return mix.values(0, mix.vectors)


@dataclass(frozen=True)
class CycleMix:
    """Digital cycles of a layer's input vectors: (cycles, vectors) pairs, sorted by cycles,
    spread over the layer by `spread`'s stride permutation. Values of any vector range are
    computed on demand, so a layer of 10^9 vectors costs no per-vector memory."""

    levels: tuple[tuple[int, int], ...]

    @property
    def vectors(self) -> int:
        """V: the vectors the mix covers."""
        return sum(n for _, n in self.levels)

    @property
    def uniform(self) -> bool:
        """True when every vector has the same cycles."""
        return len(self.levels) <= 1

    def total(self, lut: np.ndarray | None = None) -> int:
        """Sum over vectors of the cycles, or of lut[cycles]."""
        return sum(n * (c if lut is None else int(lut[c])) for c, n in self.levels)

    def _stride(self) -> int:
        v = self.vectors
        step = max(1, int(v * 0.6180339887))
        while gcd(step, v) != 1:
            step += 1
        return step

    def values(self, start: int, stop: int) -> np.ndarray:
        """Cycles of vectors [start, stop) (int64)."""
        v, n = self.vectors, stop - start
        cyc = np.array([c for c, _ in self.levels], dtype=np.int64)
        if self.uniform:
            return np.full(n, cyc[0] if len(cyc) else 0, dtype=np.int64)
        ends = np.cumsum([m for _, m in self.levels])
        if v <= 2:  # too short to permute
            idx = np.arange(start, stop, dtype=np.int64)
        else:
            step = self._stride()
            idx = np.empty(n, dtype=np.int64)
            block = max(1, (1 << 62) // v)  # keep (base + i * step) below 2^63
            for b0 in range(0, n, block):
                b1 = min(n, b0 + block)
                base = ((start + b0) * step) % v
                idx[b0:b1] = (base + np.arange(b1 - b0, dtype=np.int64) * step) % v
        return cyc[np.searchsorted(ends, idx, side="right")]


def cycle_mix(arch: Arch, layer: Layer, stats: MacroStats | None, exact: bool) -> CycleMix:
    """The digital cycles of each input vector, as a mix (see `digital_cycles`)."""
    m, v = arch.macro, layer.vectors
    if m.kind == "bp_bs":
        return CycleMix(((m.xbit, v),))
    if exact or not arch.pac.enabled:
        return CycleMix(((m.xbit * m.wbit, v),))
    static = min(arch.pac.operand, m.xbit) * min(arch.pac.operand, m.wbit)
    if stats is not None and stats.cycle_hist:
        per = stats.outputs // max(1, stats.positions)  # outputs per vector (K)
        if stats.positions == v and per and all(n % per == 0 for n in stats.cycle_hist.values()):
            counts = {int(c): n // per for c, n in stats.cycle_hist.items() if n}
        else:
            frac = {int(c): float(n) for c, n in stats.cycle_hist.items() if n}
            counts = _counts_from_fractions(frac, v)
        return CycleMix(tuple(sorted((c, n) for c, n in counts.items() if n)))
    if arch.pac.dynamic is not None and layer.kind == "conv2d":
        mix = DEFAULT_NO_DATA["dynamic_mix"]
        assert isinstance(mix, dict)
        return CycleMix(tuple(sorted(_counts_from_fractions(mix, v).items())))
    return CycleMix(((static, v),))


def digital_cycles(
    arch: Arch, layer: Layer, stats: MacroStats | None, exact: bool
) -> np.ndarray:
    """Bit-serial cycles of each input vector (same for all its output channels).

    bit_serial: xbit*wbit when exact; the stats' histogram under PAC (scaled to the layer's
    vectors); without stats |D(operand)| (16 at operand 4), or DEFAULT_NO_DATA's mix for conv
    layers under dynamic configuration. bp_bs: xbit activation steps. (O(V) memory: the
    scheduler reads ranges of `cycle_mix` instead.)
    """
    return cycle_mix(arch, layer, stats, exact).values(0, layer.vectors)


def pac_lut(arch: Arch) -> np.ndarray:
    """PAC-engine count products per output, indexed by digital cycles (see pac_products)."""
    m = arch.macro
    lut = np.zeros(m.xbit * m.wbit + 1, dtype=np.int64)
    for c, prod in pac_products_by_cycles(m.xbit, m.wbit, arch.pac.operand).items():
        lut[c] = prod
    return lut


def pac_products(arch: Arch, cycles: np.ndarray) -> np.ndarray:
    """PAC-engine count products per output of each vector, from its digital cycles.

    The count is a property of the vector's digital set (pacim.macro.core.pac_products): 2 at
    static operand 4 (8b/8b), 3 / 4 / 5 at the 15 / 13 / 10-cycle dynamic levels; 0 for cycle
    counts with nothing approximated.
    """
    return pac_lut(arch)[cycles]


def pac_products_at(arch: Arch, digital_cycles: float) -> float:
    """PAC-engine count products per output at a (mean) digital cycle count.

    Exact at the configuration's levels (pacim.macro.core.pac_products_by_cycles), linear in
    between for a mean over a dynamic mix.
    """
    m = arch.macro
    table = pac_products_by_cycles(m.xbit, m.wbit, arch.pac.operand)
    xs = sorted(table)
    return float(np.interp(digital_cycles, xs, [table[x] for x in xs]))
