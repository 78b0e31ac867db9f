"""Quantization sites of the numpy Llama: names, rotations, per-site activation statistics."""

from __future__ import annotations

import numpy as np

from pacim.llm.model import SITES, Hooks, LlamaModel
from pacim.llm.rotation import BlockHadamard, check_rotation

Site = tuple[int, str]


def site_name(layer: int, site: str) -> str:
    """Display name of a quantization site, e.g. ``blk.11.ffn_act``."""
    return f"blk.{layer}.{site}"


def all_sites(n_layers: int) -> list[Site]:
    """Every (layer, site) in forward order."""
    return [(la, s) for la in range(n_layers) for s in SITES]


def site_rotations(model: LlamaModel, rotation: str) -> dict[str, BlockHadamard]:
    """The input rotation of every site (empty for ``rotation="none"``)."""
    if check_rotation(rotation) == "none":
        return {}
    dims = {site: model.blocks[0].fused[site].shape[1] for site in SITES}
    rots = {site: BlockHadamard.for_dim(d) for site, d in dims.items()}
    return {site: r for site, r in rots.items() if not r.identity}


def head_rotation(model: LlamaModel, rotation: str) -> BlockHadamard | None:
    """The per-head rotation of Q, K and V before the KV cache (QuaRot's), or None."""
    if check_rotation(rotation) == "none":
        return None
    r = BlockHadamard.for_dim(model.config.head_dim)
    return None if r.identity else r


def token_max(x: np.ndarray) -> np.ndarray:
    """max |x| over channels, per row."""
    return np.abs(x).max(axis=1)


def max_median_ratio(m: np.ndarray) -> float:
    """max over tokens / median over tokens of the per-token max |activation|."""
    return float(m.max() / max(float(np.median(m)), 1e-30))


class SiteStats:
    """Per-site pooled per-token max |activation| (for max/median ratios)."""

    def __init__(self) -> None:
        self.m: dict[Site, list[np.ndarray]] = {}

    def add(self, key: Site, x: np.ndarray) -> None:
        """Record the per-token max of x."""
        self.m.setdefault(key, []).append(token_max(x))

    def ratios(self) -> dict[Site, float]:
        """max/median ratio of every site."""
        return {k: max_median_ratio(np.concatenate(v)) for k, v in self.m.items()}


class RecordHooks(Hooks):
    """FP hooks that only record per-site token maxima (the "before" ratios)."""

    def __init__(self) -> None:
        self.stats = SiteStats()

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """Record and pass through."""
        self.stats.add((layer, site), x)
        return x
