"""Sink templates: what INSERTQUANT inserts for the sink tokens, built from FP calibration.

- :class:`SinkTemplates` (the paper's method): K templates per model (K = the most frequent number
  of sinks per calibration sequence). For every persistence layer, template k is the mean key and
  value of the k-th sink (in position order) over the calibration sequences with exactly K
  sinks. Keys are stored *without* RoPE (undone at the calibration position) and rotated to the
  sink's position when inserted, so a template is not tied to where its sink stood. Matching:
  in order when a sequence has K sinks, else each sink takes the template whose detection-phase
  state (its ``ffn_act`` input at the birth layer) is nearest in MSE. The residual template is the
  mean residual of the k-th sink leaving the disappearance layer.
- :class:`NormPlan` (pacim's first front end, mode ``insertquant-norm``): mean attention-norm and
  MLP-norm outputs of the sinks in the persistence layers, and the residual the clamp at birth
  removes (``delta``), added back after the disappearance layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SinkRecord:
    """One calibration sequence's sinks (FP): rows and their states along the depth."""

    birth: int
    rows: np.ndarray
    state: np.ndarray  # (S, d_ff): ffn_act input at the birth layer
    k: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> (S, Hkv, D), RoPE undone
    v: dict[int, np.ndarray] = field(default_factory=dict)
    res: dict[int, np.ndarray] = field(default_factory=dict)  # residual entering layer
    norms: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SinkTemplates:
    """K key/value templates per persistence layer, detection states, residual templates."""

    layers: tuple[int, ...]
    k: np.ndarray  # (K, P, Hkv, D) without RoPE
    v: np.ndarray  # (K, P, Hkv, D)
    state: np.ndarray  # (K, d_ff)
    residual: np.ndarray  # (K, d_model), leaving the disappearance layer

    @property
    def count(self) -> int:
        """K, the number of templates."""
        return int(self.k.shape[0])

    def match(self, states: np.ndarray) -> np.ndarray:
        """Template index of each sink: in order when there are K sinks, else nearest MSE."""
        n = states.shape[0]
        if n == self.count:
            return np.arange(n)
        d = ((states[:, None, :] - self.state[None, :, :]) ** 2).mean(axis=-1)
        return np.argmin(d, axis=1)

    def kv(self, layer: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k, v) templates (S, Hkv, D) of a persistence layer for matched indices (no RoPE)."""
        p = self.layers.index(layer)
        return self.k[idx, p], self.v[idx, p]

    def arrays(self) -> dict[str, np.ndarray]:
        """For the calibration cache."""
        return {"k": self.k, "v": self.v, "state": self.state, "residual": self.residual,
                "layers": np.asarray(self.layers)}  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> SinkTemplates:
        """Inverse of :meth:`arrays`."""
        return cls(tuple(int(x) for x in a["layers"]), a["k"], a["v"], a["state"], a["residual"])


def build_templates(
    records: list[SinkRecord], birth: int, cancel: int, n_layers: int
) -> SinkTemplates:
    """Templates from the calibration sequences whose birth is the model's."""
    use = [r for r in records if r.birth == birth]
    count = Counter(r.rows.size for r in use).most_common(1)[0][0]
    exact = [r for r in use if r.rows.size == count]
    layers = tuple(range(birth + 1, cancel + 1))
    k = np.stack([np.stack([r.k[la] for la in layers], axis=1) for r in exact]).mean(0)
    v = np.stack([np.stack([r.v[la] for la in layers], axis=1) for r in exact]).mean(0)
    state = np.stack([r.state for r in exact]).mean(0)
    res = np.stack([r.res[cancel + 1] for r in exact]).mean(0)
    f32 = np.float32
    return SinkTemplates(layers, k.astype(f32), v.astype(f32), state.astype(f32), res.astype(f32))


@dataclass(frozen=True)
class NormPlan:
    """pacim's first front end: norm-output templates and the clamp's residual ``delta``."""

    norms: dict[tuple[int, str], np.ndarray] = field(repr=False)  # (layer, "attn"/"ffn")
    delta: np.ndarray = field(repr=False)  # (d_model,)

    def arrays(self) -> dict[str, np.ndarray]:
        """For the calibration cache."""
        out = {f"norm.{la}.{w}": a for (la, w), a in self.norms.items()}
        return {**out, "delta": self.delta}

    @classmethod
    def from_arrays(cls, a: dict[str, Any]) -> NormPlan:
        """Inverse of :meth:`arrays`."""
        norms = {}
        for key, arr in a.items():
            if key.startswith("norm."):
                _, la, w = key.split(".")
                norms[(int(la), w)] = arr
        return cls(norms, a["delta"])


def build_norm_plan(
    records: list[SinkRecord], birth: int, cancel: int, removed_out: np.ndarray
) -> NormPlan:
    """Norm templates over every sink of the sequences born at ``birth``; ``removed_out`` is the
    mean down-projection output the clamp at birth removes (``delta``)."""
    use = [r for r in records if r.birth == birth]
    norms = {
        (la, w): np.concatenate([r.norms[(la, w)] for r in use]).mean(0).astype(np.float32)
        for la in range(birth + 1, cancel + 1)
        for w in ("attn", "ffn")
    }
    return NormPlan(norms, removed_out.astype(np.float32))
