"""Per input vector: what the fetch brings in (sliding-window reuse) and the digital cycles, summed
per event batch on demand, so no per-vector array ever spans a whole layer.

A layer's V input vectors are cut into batches of `batch` (the last one shorter); the scheduler
reads the per-batch sums of a range of batches at a time (`VectorSums.batches`), and the layer
totals in closed form (`VectorSums.totals`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..workloads.ir import Layer
from .timing import CycleMix


@dataclass(frozen=True)
class Reuse:
    """Per input vector: the input pixels the fetch brings in (sliding-window reuse)."""

    new_pixels: np.ndarray  # (V,) valid input pixels newly needed at the banks
    row_start: np.ndarray  # (V,) True for the first vector of an output row (full window)
    main_pixels: np.ndarray  # (V,) input pixels streamed from main memory into the line buffer
    in_pixels: int  # pixels of the input map (B*H*W, or rows for linear)


@dataclass(frozen=True)
class _Geometry:
    """A conv's per-output-row and per-output-column fetch counts (O(Ho + Wo))."""

    ho: int
    wo: int
    w: int
    rows_win: np.ndarray  # (Ho,) valid input rows of the window
    rows_new: np.ndarray  # (Ho,) valid input rows first needed by this output row
    cols: np.ndarray  # (Wo,) valid input columns fetched (full window at ox = 0)


def _geometry(layer: Layer) -> _Geometry | None:
    if layer.kind != "conv2d" or layer.in_shape is None:
        return None
    _, _, h, w = layer.in_shape
    kh, kw = layer.kernel
    s, p = layer.stride, layer.padding
    ho, wo = layer.out_hw or (1, 1)

    def valid(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
        """Length of [lo, hi) (padded coordinates) inside the real [p, p+size)."""
        return np.maximum(0, np.minimum(hi, p + size) - np.maximum(lo, p))

    ox = np.arange(wo, dtype=np.int64)
    lo_c = np.where(ox == 0, 0, np.maximum(ox * s, (ox - 1) * s + kw))
    new_c = valid(lo_c, ox * s + kw, w)
    full_c = valid(ox * s, ox * s + kw, w)
    oy = np.arange(ho, dtype=np.int64)
    rows_win = valid(oy * s, oy * s + kh, h)
    lo_r = np.where(oy == 0, 0, np.maximum(oy * s, (oy - 1) * s + kh))
    rows_new = valid(lo_r, oy * s + kh, h)
    cols = np.where(ox == 0, full_c, new_c)
    return _Geometry(ho, wo, w, rows_win.astype(np.int64), rows_new.astype(np.int64),
                     cols.astype(np.int64))


def window_reuse(layer: Layer, start: int = 0, stop: int | None = None) -> Reuse:
    """Which input pixels vectors [start, stop) fetch, padding excluded (pad codes are generated).

    Within an output row the bank input buffer keeps the window and only the columns the
    stride uncovers are fetched; a main-memory-resident map streams whole input rows into a
    line buffer in the global buffer the first time an output row needs them.
    """
    return _reuse(layer, _geometry(layer), start, layer.vectors if stop is None else stop)


def in_pixels(layer: Layer) -> int:
    """Pixels of the layer's input map (B*H*W for conv, rows otherwise)."""
    if layer.kind != "conv2d" or layer.in_shape is None:
        return layer.vectors
    b, _, h, w = layer.in_shape
    return b * h * w


def _reuse(layer: Layer, g: _Geometry | None, start: int, stop: int) -> Reuse:
    v = layer.vectors
    n = stop - start
    if g is None:
        ones = np.ones(n, dtype=np.int64)
        return Reuse(ones, np.ones(n, dtype=bool), ones.copy(), v)
    b, _, h, w = layer.in_shape  # type: ignore[misc]
    pos = np.arange(start, stop, dtype=np.int64) % (g.ho * g.wo)
    oy, ox = pos // g.wo, pos % g.wo
    first = ox == 0
    return Reuse(g.rows_win[oy] * g.cols[ox], first, np.where(first, g.rows_new[oy] * w, 0),
                 b * h * w)


@dataclass(frozen=True)
class Totals:
    """Layer totals over its vectors (Python ints: exact at any size)."""

    vectors: int
    new_pixels: int
    row_starts: int
    main_pixels: int
    cycles: int
    pac_products: int


class VectorSums:
    """Per-batch sums of a layer's per-vector quantities, for any range of batches.

    `uniform` when every full batch is alike (a linear layer with one cycle level): the
    scheduler may then extrapolate inside a pass.
    """

    def __init__(self, layer: Layer, mix: CycleMix, lut: np.ndarray | None, batch: int) -> None:
        self.layer, self.mix, self.lut, self.batch = layer, mix, lut, batch
        self.vectors = layer.vectors
        self.batches = -(-self.vectors // batch)
        self.full_batches = self.vectors // batch
        self._geo = _geometry(layer)
        self.uniform = self._geo is None and mix.uniform

    def totals(self) -> Totals:
        """Sums over the whole layer, in closed form."""
        v, g = self.vectors, self._geo
        if g is None:
            npx = rs = mp = v
        else:
            b = self.layer.in_shape[0]  # type: ignore[index]
            npx = b * int(g.rows_win.sum()) * int(g.cols.sum())
            rs = b * g.ho
            mp = b * g.w * int(g.rows_new.sum())
        pairs = self.mix.total(self.lut) if self.lut is not None else 0
        return Totals(v, npx, rs, mp, self.mix.total(), pairs)

    def sums(self, b0: int, b1: int) -> dict[str, np.ndarray]:
        """Per-batch sums of batches [b0, b1): nv, cycles, pairs, new_pixels, row_starts,
        main_pixels (int64 arrays)."""
        bt = self.batch
        v0, v1 = b0 * bt, min(b1 * bt, self.vectors)
        starts = np.arange(v0, v1, bt, dtype=np.int64)
        nv = np.minimum(starts + bt, v1) - starts
        if self.mix.uniform:
            c = self.mix.levels[0][0]
            cyc = nv * c
            pairs = nv * int(self.lut[c]) if self.lut is not None else 0 * nv
        else:
            vals = self.mix.values(v0, v1)
            idx = starts - v0
            cyc = np.add.reduceat(vals, idx)
            pairs = np.add.reduceat(self.lut[vals], idx) if self.lut is not None else 0 * nv
        if self._geo is None:
            npx = rs = mp = nv
        else:
            r = _reuse(self.layer, self._geo, v0, v1)
            idx = starts - v0
            npx = np.add.reduceat(r.new_pixels, idx)
            rs = np.add.reduceat(r.row_start.astype(np.int64), idx)
            mp = np.add.reduceat(r.main_pixels, idx)
        return {"nv": nv, "cycles": cyc, "pairs": pairs, "new_pixels": npx, "row_starts": rs,
                "main_pixels": mp}
