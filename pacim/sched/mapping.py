"""Weight-stationary mapping of a layer onto the banks, and what each pass moves.

A layer's N x K weight matrix is cut into tiles of rows x (output channels a bank holds):
- bit_serial: a column holds one output channel (its stored weight planes share the column);
- bp_bs: wbit adjacent columns hold one weight, so a bank holds cols // wbit channels.
Tiles are ordered column-major (all row tiles of column tile 0, then column tile 1, ...) and
dealt to the banks `banks` at a time: each group is a pass. Row tiles of one column in the same
pass meet in the digital accumulators; a column whose row tiles span passes spills partial sums
to the global buffer and reads them back.

With PAC only the `operand` MSB weight planes are stored in the banks; the per-column plane
counts S_w of every plane an approximated pair uses sit beside the PAC engine (`w_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arch import Arch
from ..macro.core import digital_set, dynamic_digital_sets
from ..workloads.ir import Layer


@dataclass(frozen=True)
class Precision:
    """Which bit-planes a layer needs where, on this chip."""

    exact: bool  # all xbit x wbit pairs run in the banks
    x_planes: int  # activation planes the banks consume (MSB planes under PAC)
    w_planes: int  # weight planes stored in the banks
    counts: bool  # PAC and/or the dynamic speculation need activation plane counts
    x_count_planes: int  # activation planes whose window counts are needed
    x_lsb_planes: int  # activation planes never sent as bits (xbit - x_planes)
    w_count_planes: int  # weight planes whose column counts S_w the PAC engine uses


def layer_is_exact(arch: Arch, layer: Layer, first: bool = False) -> bool:
    """Exact when PAC is off, the layer says so, or it is the network's first layer, a conv,
    and pac.first_layer_exact (PACiM keeps the first conv exact; LLM blocks have none)."""
    p = arch.pac
    first_conv = first and layer.kind == "conv2d" and p.first_layer_exact
    return (not p.enabled) or layer.exact or first_conv


def counts_stored(arch: Arch) -> bool:
    """True when the chip's PAC or speculation uses activation plane counts."""
    p = arch.pac
    return p.enabled and (p.approx == "pac" or p.dynamic is not None)


def precision(arch: Arch, exact: bool) -> Precision:
    """Plane usage of a layer: exact (all planes in the banks) or PAC at arch.operand."""
    m, p = arch.macro, arch.pac
    if exact or not p.enabled:
        return Precision(True, m.xbit, m.wbit, False, 0, 0, 0)
    ox, ow = min(p.operand, m.xbit), min(p.operand, m.wbit)
    d = digital_set(m.xbit, m.wbit, p.operand)
    if p.dynamic is not None:
        d = dynamic_digital_sets(m.xbit, m.wbit, p.operand)[-1]  # fewest digital pairs
    approx = ~d  # (wbit, xbit): pairs some output approximates
    pac = p.approx == "pac"
    x_cnt = int(approx.any(axis=0).sum()) if pac else 0
    if p.dynamic is not None:
        x_cnt = m.xbit  # the speculation E sums every plane of the window
    w_cnt = int(approx.any(axis=1).sum()) if pac else 0
    return Precision(False, ox, ow, counts_stored(arch), x_cnt, m.xbit - ox, w_cnt)


@dataclass(frozen=True)
class Tile:
    """One bank's share of the weight matrix."""

    index: int  # position in the column-major tile order
    row: int  # row-tile index
    col: int  # column-tile index
    r0: int  # first dot-product row (im2col index)
    rows: int  # active rows
    cols: int  # output channels held
    phys_cols: int  # physical columns used (bp_bs: cols * wbit)
    new_rows: int  # rows not reused from the previous vector of an output row (sliding window)


@dataclass(frozen=True)
class Pass:
    """A group of at most `banks` tiles resident together, and what the pass moves per vector."""

    index: int
    tiles: tuple[Tile, ...]
    channels: int  # input channels (elements per pixel) its row tiles need
    groups: tuple[int, ...]  # row tiles present (count groups under pac.scope bank)
    done_cols: int  # output channels finished in this pass
    spill_cols: int  # output channels whose partial sums go out to the global buffer
    resume_cols: int  # output channels whose partial sums come back
    pac_cols: int  # output columns whose PAC terms are computed here (per vector)
    weight_bits: int  # weight bits loaded into the banks
    wcount_bits: int  # S_w bits used per vector (and loaded once per pass)


@dataclass(frozen=True)
class Mapping:
    """A layer tiled onto the banks."""

    macro: str
    banks: int
    khw: int  # kernel taps per channel (1 for linear)
    channels: int  # input channels C (N for linear)
    rows_per_tile: int
    cols_per_tile: int  # output channels per tile
    row_tiles: int
    col_tiles: int
    w_planes: int
    psum_width: int  # bits of a partial sum (a full-length dot product)
    passes: tuple[Pass, ...]
    group_channels: tuple[int, ...]  # input channels per count group

    @property
    def tiles(self) -> int:
        """Tiles in the layer."""
        return self.row_tiles * self.col_tiles

    @property
    def weight_reloads(self) -> int:
        """Weight loads beyond the first pass."""
        return len(self.passes) - 1


def kernel_taps(layer: Layer) -> int:
    """kh * kw for conv, 1 otherwise."""
    return layer.kernel[0] * layer.kernel[1] if layer.kind == "conv2d" else 1


def rows_per_tile(arch: Arch, layer: Layer) -> int:
    """Dot-product rows per tile; pac.scope bank aligns segments to whole channels."""
    rows, khw = arch.macro.rows, kernel_taps(layer)
    if arch.pac.enabled and arch.pac.scope == "bank" and khw <= rows:
        return rows // khw * khw  # a segment = whole channels, so its counts are box sums
    return rows


def count_groups(arch: Arch, channels: int, khw: int) -> tuple[int, ...]:
    """Channels per activation-count group: one group (scope vector) or one per row segment."""
    if arch.pac.scope == "bank" and khw <= arch.macro.rows:
        g = arch.macro.rows // khw
        return tuple(min(g, channels - c) for c in range(0, channels, g))
    return (channels,)


def _new_rows(r0: int, rows: int, kw: int, stride: int) -> int:
    """Rows (c, dy, dx) of [r0, r0+rows) whose element is new when the window slides by stride.

    dx = r mod kw (kw divides kh*kw); the new ones are dx >= kw - min(stride, kw).
    """
    m = min(stride, kw)

    def upto(x: int) -> int:
        return (x // kw) * m + max(0, x % kw - (kw - m))

    return upto(r0 + rows) - upto(r0)


def _channels(groups: tuple[int, ...], rpt: int, n: int, khw: int) -> int:
    """Distinct input channels of the row tiles `groups` (sorted): merged channel intervals."""
    total, hi = 0, -1
    for r in groups:
        lo_c, hi_c = r * rpt // khw, (min(n, r * rpt + rpt) - 1) // khw
        lo_c = max(lo_c, hi + 1)
        if hi_c >= lo_c:
            total += hi_c - lo_c + 1
            hi = hi_c
    return total


def map_layer(arch: Arch, layer: Layer, prec: Precision) -> Mapping:
    """Tile the layer, group tiles into passes and total each pass's loads."""
    m = arch.macro
    n, k = layer.n, layer.k
    khw = kernel_taps(layer)
    kw = layer.kernel[1] if layer.kind == "conv2d" else 1
    stride = layer.stride if layer.kind == "conv2d" else 1
    channels = layer.in_channels if layer.kind == "conv2d" else n
    rpt = rows_per_tile(arch, layer)
    cpt = m.cols if m.kind == "bit_serial" else m.cols // m.wbit
    w_planes = prec.w_planes if m.kind == "bit_serial" else m.wbit
    rt, ct = -(-n // rpt), -(-k // cpt)
    bank_scope = arch.pac.scope == "bank" and not prec.exact

    tiles = []
    for c in range(ct):
        cols = min(cpt, k - c * cpt)
        phys = cols if m.kind == "bit_serial" else cols * m.wbit
        for r in range(rt):
            r0 = r * rpt
            rows = min(rpt, n - r0)
            new = rows if layer.kind != "conv2d" else _new_rows(r0, rows, kw, stride)
            tiles.append(Tile(len(tiles), r, c, r0, rows, cols, phys, new))

    first_pass: dict[int, int] = {}
    last_pass: dict[int, int] = {}
    chunks = [tiles[i: i + m.banks] for i in range(0, len(tiles), m.banks)]
    for p, chunk in enumerate(chunks):
        for t in chunk:
            first_pass.setdefault(t.col, p)
            last_pass[t.col] = p
    colw = {c: min(cpt, k - c * cpt) for c in range(ct)}
    wc_vec = prec.w_count_planes * n.bit_length()  # S_w bits per column, scope vector

    passes = []
    for p, chunk in enumerate(chunks):
        cols_here = sorted({t.col for t in chunk})
        groups = tuple(sorted({t.row for t in chunk}))
        done = sum(colw[c] for c in cols_here if last_pass[c] == p)
        spill = sum(colw[c] for c in cols_here if last_pass[c] != p)
        resume = sum(colw[c] for c in cols_here if first_pass[c] != p)
        if bank_scope:
            pac_cols = sum(t.cols for t in chunk)
            wcount = sum(t.cols * prec.w_count_planes * t.rows.bit_length() for t in chunk)
        else:
            pac_cols = done
            wcount = done * wc_vec
        if prec.w_count_planes == 0:  # exact, or truncate/expected: no count products
            pac_cols = wcount = 0
        passes.append(Pass(
            index=p,
            tiles=tuple(chunk),
            channels=_channels(groups, rpt, n, khw),
            groups=groups,
            done_cols=done,
            spill_cols=spill,
            resume_cols=resume,
            pac_cols=pac_cols,
            weight_bits=sum(t.rows * t.cols * w_planes for t in chunk),
            wcount_bits=wcount,
        ))
    xmax, wmax = (1 << m.xbit) - 1, (1 << m.wbit) - 1
    return Mapping(
        macro=m.kind,
        banks=m.banks,
        khw=khw,
        channels=channels,
        rows_per_tile=rpt,
        cols_per_tile=cpt,
        row_tiles=rt,
        col_tiles=ct,
        w_planes=w_planes,
        psum_width=(n * xmax * wmax).bit_length(),
        passes=tuple(passes),
        group_channels=count_groups(arch, channels, khw) if bank_scope else (channels,),
    )


@dataclass(frozen=True)
class Reuse:
    """Per input vector: the input pixels the fetch brings in (sliding-window reuse)."""

    new_pixels: np.ndarray  # (V,) valid input pixels newly needed at the banks
    row_start: np.ndarray  # (V,) True for the first vector of an output row (full window)
    main_pixels: np.ndarray  # (V,) input pixels streamed from main memory into the line buffer
    in_pixels: int  # pixels of the input map (B*H*W, or rows for linear)


def window_reuse(layer: Layer) -> Reuse:
    """Which input pixels each vector fetches, padding excluded (pad codes are generated).

    Within an output row the bank input buffer keeps the window and only the columns the
    stride uncovers are fetched; a main-memory-resident map streams whole input rows into a
    line buffer in the global buffer the first time an output row needs them.
    """
    v = layer.vectors
    if layer.kind != "conv2d" or layer.in_shape is None:
        ones = np.ones(v, dtype=np.int64)
        return Reuse(ones, np.ones(v, dtype=bool), ones.copy(), v)
    b, _, h, w = layer.in_shape
    kh, kw = layer.kernel
    s, p = layer.stride, layer.padding
    ho, wo = layer.out_hw or (1, 1)

    def valid(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
        """Length of [lo, hi) (padded coordinates) inside the real [p, p+size)."""
        return np.maximum(0, np.minimum(hi, p + size) - np.maximum(lo, p))

    ox = np.arange(wo)
    lo_c = np.where(ox == 0, 0, np.maximum(ox * s, (ox - 1) * s + kw))
    new_c = valid(lo_c, ox * s + kw, w)
    full_c = valid(ox * s, ox * s + kw, w)
    oy = np.arange(ho)
    rows_win = valid(oy * s, oy * s + kh, h)
    lo_r = np.where(oy == 0, 0, np.maximum(oy * s, (oy - 1) * s + kh))
    rows_new = valid(lo_r, oy * s + kh, h)
    cols = np.where(ox == 0, full_c, new_c)
    new_pix = np.tile((rows_win[:, None] * cols[None, :]).ravel(), b).astype(np.int64)
    main = np.zeros((ho, wo), dtype=np.int64)
    main[:, 0] = rows_new * w
    row_start = np.zeros((ho, wo), dtype=bool)
    row_start[:, 0] = True
    return Reuse(new_pix, np.tile(row_start.ravel(), b), np.tile(main.ravel(), b), b * h * w)
