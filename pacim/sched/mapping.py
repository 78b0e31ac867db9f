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

from dataclasses import dataclass, replace

from ..arch import Arch
from ..macro.core import counted_planes, digital_set, dynamic_digital_sets
from ..workloads.ir import Layer
from .passes import PassKind, PassRun, compress


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


def layer_arch(arch: Arch, layer: Layer, first: bool = False) -> Arch:
    """The chip as it runs this layer: at macro.first_layer_bits for the network's first conv."""
    if first and layer.kind == "conv2d" and arch.macro.first_layer_bits is not None:
        return arch.first_layer_arch()
    return arch


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
    pac = p.approx == "pac"
    x_cnt, w_cnt = counted_planes(d) if pac else (0, 0)  # planes with approximated pairs
    if p.dynamic is not None:
        x_cnt = m.xbit  # the speculation E sums every plane of the window
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


def group_sizes(arch: Arch, channels: int, khw: int) -> tuple[int, int, int]:
    """count_groups in closed form: (number of groups, channels of each, of the last one)."""
    if arch.pac.scope == "bank" and khw <= arch.macro.rows:
        g = arch.macro.rows // khw
        count = -(-channels // g)
        return count, g, channels - (count - 1) * g
    return 1, channels, channels


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
    """A layer tiled onto the banks. Its passes are described by `runs` (periodic blocks of
    pass kinds), never listed, so a 10^9-row weight matrix costs O(columns) memory."""

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
    runs: tuple[PassRun, ...]
    groups: tuple[int, int, int]  # count groups: (number, channels of each, of the last)
    n: int = 0  # dot-product length N
    k: int = 0  # output channels K
    kw: int = 1  # kernel width (sliding-window reuse of tile rows)
    stride: int = 1
    conv: bool = False
    bank_scope: bool = False  # PAC terms and S_w per bank-row segment
    w_count_planes: int = 0
    wbit: int = 8

    @property
    def tiles(self) -> int:
        """Tiles in the layer."""
        return self.row_tiles * self.col_tiles

    @property
    def group_channels(self) -> tuple[int, ...]:
        """Input channels per count group (O(groups): for small layers and tests)."""
        count, size, last = self.groups
        return (size,) * (count - 1) + (last,)

    @property
    def pass_count(self) -> int:
        """Weight-stationary passes."""
        return -(-self.tiles // self.banks)

    @property
    def weight_reloads(self) -> int:
        """Weight loads beyond the first pass."""
        return self.pass_count - 1

    @property
    def passes(self) -> tuple[Pass, ...]:
        """Every pass with its tiles: O(passes) memory, for small layers and tests."""
        return tuple(self.pass_at(p) for p in range(self.pass_count))

    def pass_at(self, p: int) -> Pass:
        """Pass p with its tiles (O(banks))."""
        b, rt, rpt, cpt = self.banks, self.row_tiles, self.rows_per_tile, self.cols_per_tile
        tiles = []
        for i in range(p * b, min((p + 1) * b, self.tiles)):
            c, r = divmod(i, rt)
            cols = min(cpt, self.k - c * cpt)
            phys = cols if self.macro == "bit_serial" else cols * self.wbit
            r0 = r * rpt
            rows = min(rpt, self.n - r0)
            new = _new_rows(r0, rows, self.kw, self.stride) if self.conv else rows
            tiles.append(Tile(i, r, c, r0, rows, cols, phys, new))
        colw = {t.col: t.cols for t in tiles}
        done = spill = resume = 0
        for c, w in colw.items():
            first, last = c * rt // b, (c * rt + rt - 1) // b
            if last == p:
                done += w
            else:
                spill += w
            if first != p:
                resume += w
        wcp = self.w_count_planes
        if self.bank_scope:
            pac_cols = sum(t.cols for t in tiles)
            wcount = sum(t.cols * wcp * t.rows.bit_length() for t in tiles)
        else:
            pac_cols = done
            wcount = done * wcp * self.n.bit_length()
        if wcp == 0:  # exact, or truncate/expected: no count products
            pac_cols = wcount = 0
        groups = tuple(sorted({t.row for t in tiles}))
        return Pass(p, tuple(tiles), _channels(groups, rpt, self.n, self.khw), groups, done,
                    spill, resume, pac_cols, sum(t.rows * t.cols * self.w_planes for t in tiles),
                    wcount)

    def kind_of(self, p: int) -> PassKind:
        """The kind of pass p (what pass_at(p) says, without building its tiles)."""
        b, rt, rpt, cpt, n = self.banks, self.row_tiles, self.rows_per_tile, self.cols_per_tile, \
            self.n
        t0, t1 = p * b, min((p + 1) * b, self.tiles)
        rows_of: dict[int, tuple[int, int]] = {}  # row tile -> (rows, new rows)
        col_of: dict[int, int] = {}  # column tile -> channels held
        tiles: list[tuple[int, int]] = []  # (row tile, columns) per tile
        for i in range(t0, t1):
            c, r = divmod(i, rt)
            if r not in rows_of:
                r0 = r * rpt
                rows = min(rpt, n - r0)
                rows_of[r] = (rows, _new_rows(r0, rows, self.kw, self.stride) if self.conv
                              else rows)
            if c not in col_of:
                col_of[c] = min(cpt, self.k - c * cpt)
            tiles.append((r, col_of[c]))
        done = spill = resume = 0
        for c, w in col_of.items():
            if (c * rt + rt - 1) // b == p:
                done += w
            else:
                spill += w
            if c * rt // b != p:
                resume += w
        wcp = self.w_count_planes
        if self.bank_scope:
            pac_cols = sum(w for _, w in tiles)
            wcount = sum(w * wcp * rows_of[r][0].bit_length() for r, w in tiles)
        else:
            pac_cols, wcount = done, done * wcp * n.bit_length()
        if wcp == 0:  # exact, or truncate/expected: no count products
            pac_cols = wcount = 0
        groups = tuple(sorted(rows_of))
        return PassKind(
            len(tiles), _channels(groups, rpt, n, self.khw), len(groups), rt - 1 in rows_of,
            done, spill, resume, pac_cols, sum(rows_of[r][0] * w for r, w in tiles) * self.w_planes,
            wcount, sum(rows_of[r][0] for r, _ in tiles), sum(rows_of[r][1] for r, _ in tiles),
            tuple(sorted({rows_of[r] for r, _ in tiles})), p == self.pass_count - 1)

    def run_starts(self) -> list[int]:
        """First pass of each run."""
        out, p = [], 0
        for r in self.runs:
            out.append(p)
            p += r.passes
        return out


def map_layer(arch: Arch, layer: Layer, prec: Precision) -> Mapping:
    """Tile the layer and describe its passes (tiles column-major, `banks` per pass)."""
    m = arch.macro
    n, k = layer.n, layer.k
    khw = kernel_taps(layer)
    conv = layer.kind == "conv2d"
    channels = layer.in_channels if conv else n
    rpt = rows_per_tile(arch, layer)
    cpt = m.cols if m.kind == "bit_serial" else m.cols // m.wbit
    bank_scope = arch.pac.scope == "bank" and not prec.exact
    xmax, wmax = (1 << m.xbit) - 1, (1 << m.wbit) - 1
    mp = Mapping(
        macro=m.kind,
        banks=m.banks,
        khw=khw,
        channels=channels,
        rows_per_tile=rpt,
        cols_per_tile=cpt,
        row_tiles=-(-n // rpt),
        col_tiles=-(-k // cpt),
        w_planes=prec.w_planes if m.kind == "bit_serial" else m.wbit,
        psum_width=(n * xmax * wmax).bit_length(),
        runs=(),
        groups=group_sizes(arch, channels, khw) if bank_scope else (1, channels, channels),
        n=n,
        k=k,
        kw=layer.kernel[1] if conv else 1,
        stride=layer.stride if conv else 1,
        conv=conv,
        bank_scope=bank_scope,
        w_count_planes=prec.w_count_planes,
        wbit=m.wbit,
    )
    return replace(mp, runs=compress(mp, layer.name))
