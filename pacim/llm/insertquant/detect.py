"""Sink-token detection and the three phases of a massive activation (birth, persistence, end).

A token is a *sink* where ``||x_t||_inf > alpha * median_t ||x_t||_inf`` (INSERTQUANT). pacim
tests this on the input of the MLP down-projection (site ``ffn_act``), where the spike is born
and first visible, before it is quantized:

- *Birth layer* b (from calibration): the first layer whose ``ffn_act`` has a token above
  ``alpha_0`` that the layer then leaves with a massive residual (ratio above ``alpha_0`` too;
  without this second test a large but harmless MLP value would count). The most frequent birth
  over calibration windows wins.
- *Detection* (calibration and inference): tokens above ``alpha_0`` at layer b's ``ffn_act``,
  union tokens above ``alpha_1`` at layer b+1's ``ffn_act``, union position 0 (BOS).
- *Persistence*: layers b+1 .. c, where the sink's residual carries the spike.
- *Disappearance* c: the first layer after which the sinks' mean residual no longer points along
  the spike (cosine with the residual just after birth < 0.5). The direction is used, not the
  ratio, because the median token max grows along the depth while the spike is still there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pacim.llm.sites import token_max

DEFAULT_ALPHA = 64.0
CANCEL_COS = 0.5
CLAMPED_SITES = ("attn_out", "ffn_in", "ffn_act")  # W_O and MLP inputs; W_Q via its output


def spike_ratio(x: np.ndarray) -> np.ndarray:
    """Per-row ``||x_t||_inf / median_t ||x_t||_inf``."""
    m = token_max(x)
    return m / max(float(np.median(m)), 1e-30)


def window_birth(
    act_ratio: Sequence[np.ndarray], res_ratio: Sequence[np.ndarray], alpha: float
) -> int | None:
    """Birth layer of one sequence: act_ratio[l] of ffn_act, res_ratio[l] entering layer l."""
    for la, r in enumerate(act_ratio):
        rows = np.flatnonzero(r > alpha)
        if rows.size and (res_ratio[la + 1][rows] > alpha).any():
            return la
    return None


def detect_sinks(
    act_ratio: Sequence[np.ndarray], birth: int, alpha0: float, alpha1: float
) -> np.ndarray:
    """Sink rows: above alpha_0 at the birth layer, alpha_1 one layer later, and position 0."""
    rows = {0, *np.flatnonzero(act_ratio[birth] > alpha0).tolist()}
    if birth + 1 < len(act_ratio):
        rows |= set(np.flatnonzero(act_ratio[birth + 1] > alpha1).tolist())
    return np.asarray(sorted(rows), dtype=np.int64)


def ratio_sinks(act_ratio: Sequence[np.ndarray], birth: int, alpha0: float, alpha1: float) -> set:
    """The ratio-detected sinks only (no forced position 0): what quantization can disturb."""
    rows = set(np.flatnonzero(act_ratio[birth] > alpha0).tolist())
    if birth + 1 < len(act_ratio):
        rows |= set(np.flatnonzero(act_ratio[birth + 1] > alpha1).tolist())
    return rows


def agreement(fp: set, q: set) -> float:
    """R_correct: |S_fp and S_q| / |S_fp or S_q| (1.0 when both are empty)."""
    union = fp | q
    return 1.0 if not union else len(fp & q) / len(union)


def find_cancel(mean_res: dict[int, np.ndarray], birth: int, n_layers: int) -> int:
    """Disappearance layer from the sinks' mean residual entering each layer (birth+1..L)."""
    d = mean_res[birth + 1]
    d = d / max(float(np.linalg.norm(d)), 1e-30)
    for la in range(birth + 1, n_layers):
        r = mean_res[la + 1]
        if float(r @ d) < CANCEL_COS * float(np.linalg.norm(r)):
            return la
    return n_layers - 1


@dataclass(frozen=True)
class SinkPhases:
    """Where the spike is born (b) and cancelled (c), and the detection thresholds."""

    birth: int
    cancel: int
    alpha0: float = DEFAULT_ALPHA
    alpha1: float = DEFAULT_ALPHA

    def persistent(self, layer: int) -> bool:
        """True in the persistence phase (b < layer <= c): templates at the BMM inputs."""
        return self.birth < layer <= self.cancel

    def clamped(self, layer: int, site: str) -> bool:
        """True where sink rows are zeroed before quantization."""
        if layer == self.birth:
            return site == "ffn_act"
        return self.persistent(layer) and site in CLAMPED_SITES

    def excluded(self, layer: int, site: str) -> bool:
        """True where sink rows are left out of the static range (semantic tokens only)."""
        if site in ("k", "v"):
            return self.persistent(layer)
        return self.persistent(layer) or (layer == self.birth and site == "ffn_act")
