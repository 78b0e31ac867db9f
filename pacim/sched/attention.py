"""Attention's activation x activation products (matmul layers) and the digital periphery, as
closed-form counts (LayerCounts) the energy model costs like any mapped layer.

A matmul layer is count products (rows x n) @ (n x k) in count / group groups sharing one right
operand (K^T: dh x L for QK^T, V: L x dh for PV); its `cached` elements per right operand come
from the KV cache at attention.kv_home, the rest are produced this step (written to kv_home for
later steps). K / V are held at attention.kv_bits (default macro.wbit), the left operand
(queries, probabilities) streams at attention.input_bits (default macro.xbit). With
arch.attention.mapping:

cim: each right operand is tiled onto the banks like a weight (rows x channels per tile, tiles
    dealt `banks` per pass) and every tile is written into the cells (kv_cell_write_bits): a
    pass writes for ceil(full tile bits / write_bits_per_cycle) cycles (banks in parallel) and
    the cached bits cross the kv_home bus; then the pass's left rows stream through bit-serially,
    exact (all input x KV bit pairs), or with attention.pac at the static digital set of
    pac.operand: only the K / V planes it computes digitally are kept (cells and KV cache),
    with the count words of the approximated planes (per column and row tile, as PAC uses
    them), made by the sparsity encoder once, when a K / V is produced; the encoder also counts
    each streamed row's approximated planes, and the PAC engine does the count products
    (pacim.macro.core.pac_products). cycles = kv_load + compute + the streaming and the PAC
    engine / encoder work that compute does not hide. With
    attention.kv_banks, the first `resident` positions sit in the reserved banks (only the new
    ones are written, in the busiest tile's rows) and run beside the overflow, which is tiled
    as above on the other banks (kv_resident.py).
digital: the near-memory digital unit does every MAC at digital_macs_per_cycle; its cycles are
    the longest of its MACs, the cached-KV reads on the kv_home bus and the streaming.
See docs/LLM.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..arch import Arch
from ..errors import PacimError
from ..macro.core import counted_planes, digital_set, pac_products
from ..workloads.ir import Layer
from .counts import LayerCounts, empty_traffic
from .kv_resident import channels_per_tile, kv_dims

KV_KIND = "kv_cache"  # data kind of K / V in the memory traffic
KV_COUNTS = "kv_counts"  # PAC's count words of K / V planes (at kv_home and the bank buffer)
PERIPHERY_OPS = ("softmax", "rmsnorm", "rope", "swiglu")  # energy entries <op>_op


def cdiv(a: int, b: float) -> int:
    """Ceil division of non-negative integers (b may be a float rate)."""
    return -(-a // b) if isinstance(b, int) else int(-(-a // b))


@dataclass(frozen=True)
class AttnPrecision:
    """How QK^T / PV run: operand widths and, under PAC, the planes and counts it uses."""

    in_bits: int  # left operand (queries, probabilities)
    kv_bits: int  # right operand (K / V) in the KV cache
    steps: int  # array steps per vector tile: digital bit pairs (bit_serial) or in_bits (bp_bs)
    cell_planes: int  # K / V planes held in the cells
    x_planes: int  # input planes streamed
    x_cnt: int = 0  # input planes whose counts PAC uses (per row and tile)
    w_cnt: int = 0  # K / V planes whose counts PAC uses (per column and tile)
    products: int = 0  # PAC-engine count products per output

    @property
    def baseline_steps(self) -> int:
        """Steps of the exact bit-serial product (in_bits x kv_bits)."""
        return self.in_bits * self.kv_bits


def attention_precision(arch: Arch) -> AttnPrecision:
    """The operand widths of attention on this arch and, with attention.pac, PAC's planes."""
    m, att, p = arch.macro, arch.attention, arch.pac
    ib, kb = att.input_bits or m.xbit, att.kv_bits or m.wbit
    if m.kind != "bit_serial":
        return AttnPrecision(ib, kb, ib, kb, ib)
    if not att.pac:
        return AttnPrecision(ib, kb, ib * kb, kb, ib)
    op = min(p.operand, max(ib, kb))
    d = digital_set(ib, kb, op)  # (kv_bits, in_bits)
    counted = p.approx == "pac"
    x_cnt, w_cnt = counted_planes(d) if counted else (0, 0)
    return AttnPrecision(ib, kb, int(d.sum()), min(op, kb), min(op, ib), x_cnt=x_cnt,
                         w_cnt=w_cnt, products=pac_products(d) if counted else 0)


def count_width(rows: int) -> int:
    """Bits of one plane count over `rows` rows (0..rows)."""
    return max(1, rows).bit_length()


def instances(layer: Layer) -> tuple[int, int]:
    """(distinct right operands, left rows streamed against each) of a matmul layer."""
    rows = layer.in_shape[0] if layer.in_shape else layer.vectors
    count = layer.vectors // rows
    return count // layer.group, rows * layer.group


class KvTraffic(NamedTuple):
    """Bits read and written at kv_home (totals), and the PAC count words among them."""

    rd: int
    wr: int
    rd_counts: int = 0
    wr_counts: int = 0


def kv_traffic(arch: Arch, pr: AttnPrecision, layer: Layer, positions: int | None = None,
               cached: int | None = None) -> KvTraffic:
    """Bits read and written at kv_home of a right operand's `positions` (default: all) of
    which `cached` (default: layer.cached's) are in the cache: the kept planes of each element
    and, under PAC, the count words of the approximated planes (K^T: per position and row
    tile; V: per column of every row tile a position lands in)."""
    inst, _ = instances(layer)
    rows = arch.macro.rows
    if layer.kv_axis is None:  # every element produced this step (no KV positions)
        cw = count_width(min(layer.n, rows))
        cnt = inst * layer.k * cdiv(layer.n, rows) * pr.w_cnt * cw
        return KvTraffic(inst * layer.cached * pr.cell_planes,
                         inst * (layer.n * layer.k - layer.cached) * pr.cell_planes + cnt, 0,
                         cnt)  # fmt: skip
    L, d = kv_dims(layer)
    L = L if positions is None else positions
    c = layer.cached // d if cached is None else cached
    rd, wr = inst * c * d * pr.cell_planes, inst * (L - c) * d * pr.cell_planes
    rc = wc = 0
    if pr.w_cnt and L:
        if layer.kv_axis == "k":  # K^T: a position is a column
            per = cdiv(d, rows) * pr.w_cnt * count_width(min(d, rows))
            rc, wc = inst * c * per, inst * (L - c) * per
        else:  # V: a position is a row; its row tile's column counts change
            per = d * pr.w_cnt * count_width(min(L, rows))
            rc, wc = inst * cdiv(c, rows) * per, inst * (cdiv(L, rows) - c // rows) * per
    return KvTraffic(rd + rc, wr + wc, rc, wc)


def _home_traffic(reads: dict, writes: dict, home: str, t: KvTraffic) -> None:
    """K / V planes (kv_cache) and their count words (kv_counts) at kv_home."""
    reads[home][KV_KIND], writes[home][KV_KIND] = t.rd - t.rd_counts, t.wr - t.wr_counts
    if t.rd_counts or t.wr_counts:
        reads[home][KV_COUNTS], writes[home][KV_COUNTS] = t.rd_counts, t.wr_counts


def kv_bits(arch: Arch, layer: Layer) -> int:
    """Bits of the layer's right operands in the KV cache (one K or V, all its heads)."""
    pr = attention_precision(arch)
    if layer.kv_axis is None:
        t = kv_traffic(arch, pr, layer)
        return t.rd + t.wr
    return kv_traffic(arch, pr, layer, cached=0).wr


def check_kv_home(arch: Arch, layers: Iterable[Layer], what: str) -> int:
    """The KV footprint in bits; PacimError when kv_home is the global buffer and it overflows."""
    total = sum(kv_bits(arch, la) for la in layers if la.kind == "matmul")
    home = arch.attention.kv_home
    cap = int(getattr(arch.memory, home).size_kib * 8192)
    if total > cap:
        raise PacimError(f"{what}: the KV cache ({total / 8192:,.0f} KiB) does not fit in "
                         f"attention.kv_home {home} ({cap / 8192:,.0f} KiB); set "
                         "attention.kv_home=main")
    return total


def attention_counts(arch: Arch, layer: Layer, resident: int = 0) -> LayerCounts:
    """Counts of one matmul layer under arch.attention.mapping (cim or digital); `resident`:
    KV positions held in the reserved banks (kv_resident.resident_positions; cim only)."""
    att, m, mem = arch.attention, arch.macro, arch.memory
    if layer.kind != "matmul" or att.mapping is None:
        raise ValueError(f"layer {layer.name}: attention counts need a matmul layer and "
                         "attention.mapping set")
    pr = attention_precision(arch)
    inst, v = instances(layer)
    n, k, kb = layer.n, layer.k, pr.kv_bits
    elems = n * k
    if att.mapping == "digital":  # the digital unit takes whole codes
        kvt = KvTraffic(inst * layer.cached * kb, inst * (elems - layer.cached) * kb)
    else:
        kvt = kv_traffic(arch, pr, layer)
    kv_rd = kvt.rd
    out_bits = inst * v * k * m.xbit
    home = att.kv_home
    home_bus = getattr(mem, home).bus_bits
    reads, writes = empty_traffic(), empty_traffic()
    _home_traffic(reads, writes, home, kvt)
    writes["global_buffer"]["outputs"] = out_bits
    common = dict(name=layer.name, passes=0, weight_reloads=0, weight_bits_written=0,
                  input_home="global_buffer", output_home="global_buffer", events=0,
                  simulated_events=0)
    if att.mapping == "digital":
        stream = inst * v * n * pr.in_bits
        reads["global_buffer"]["act_full"] = stream
        macs = inst * v * elems
        compute = cdiv(macs, att.digital_macs_per_cycle)
        cycles = max(compute, cdiv(kv_rd, home_bus), cdiv(stream + out_bits, mem.global_buffer.
                                                          bus_bits))
        return LayerCounts(
            cycles=cycles, compute_cycles=0, stall_cycles={"memory": cycles - compute},
            bank_utilization=0.0, vector_tiles=0, bit_serial_cycles_baseline=0,
            bit_serial_cycles=0, column_cycles=0, active_row_cycles=0, bpbs_conversions=0,
            pac_ops=0, encoder_bits=0, psum_bits=0, reads_bits=reads, writes_bits=writes,
            digital_macs=macs, exact=True, busy_cycles={"digital_unit": compute}, **common)
    rsd = resident if layer.kv_axis is not None else 0
    scratch = m.banks - att.kv_banks
    wbpc = att.write_bits_per_cycle or m.cols
    cp = pr.cell_planes
    res: dict[str, int] | None = None
    w_res = 0
    if rsd:  # positions < resident stay in the reserved banks; the rest overflow (see module)
        L, d = kv_dims(layer)
        c = layer.cached // d
        r_all, r_c = min(L, rsd), min(c, rsd)
        r_new, o_all, o_c = r_all - r_c, L - min(L, rsd), c - r_c
        kvt = kv_traffic(arch, pr, layer, o_all, o_c)
        kv_rd = kvt.rd
        written = inst * (r_new + o_all) * d  # K / V elements written into the cells
        axis_k = layer.kv_axis == "k"
        res = _part(arch, pr, inst, v, *((d, r_all) if axis_k else (r_all, d)), att.kv_banks)
        over = _part(arch, pr, inst, v, *((d, o_all) if axis_k else (o_all, d)), scratch)
        cpt = channels_per_tile(arch)
        if r_new:  # the new positions' rows (V) or columns (K^T) into the busiest tile
            w_res = (min(d, m.rows) * cdiv(min(r_new, cpt) * cp, wbpc) if axis_k
                     else min(r_new, m.rows) * cdiv(min(d, cpt) * cp, wbpc))
        # count words the new resident positions change: their own columns (K^T), or every
        # column of the row tiles they land in (V)
        cw = count_width(min(d if axis_k else r_all, m.rows))
        touched = (inst * r_new * cdiv(d, m.rows) if axis_k
                   else inst * d * (cdiv(r_all, m.rows) - r_c // m.rows) if r_new else 0)
        wcnt = touched * pr.w_cnt * cw + over["wcnt"]
        occupancy = inst * r_all * d * cp + min(inst * o_all * d * cp,
                                                scratch * over["tile_bits"])
        combine_psums = (not axis_k) and r_all > 0 and o_all > 0
    else:
        written = inst * elems
        over = _part(arch, pr, inst, v, n, k, scratch)
        wcnt = over["wcnt"]
        occupancy = min(written * cp, scratch * over["tile_bits"])
        combine_psums = False
    cell_bits = written * cp
    parts = [p for p in (res, over) if p is not None and p["tiles"]]
    path_res = w_res + res["compute"] if res is not None and res["tiles"] else 0
    kv_load_o = (max(over["passes"] * cdiv(over["tile_bits"], wbpc), cdiv(kv_rd, home_bus))
                 if over["tiles"] else cdiv(kv_rd, home_bus))
    path_o = kv_load_o + over["compute"]
    compute = res["compute"] if res is not None and path_res > path_o else over["compute"]
    kv_load = max(path_res, path_o) - compute
    _home_traffic(reads, writes, home, kvt)
    stream = sum(p["stream"] for p in parts)
    # under PAC the banks get the MSB planes; the encoder reads the counted low planes once
    low = inst * v * n * (pr.in_bits - pr.x_planes) if pr.x_cnt else 0
    reads["global_buffer"]["act_full"] = stream + low
    writes["bank_buffer"]["act_full"] = stream
    reads["bank_buffer"]["act_full"] = stream
    xcnt = sum(p["xcnt"] for p in parts)
    writes["bank_buffer"]["sparsity_counts"] = reads["bank_buffer"]["sparsity_counts"] = xcnt
    if wcnt:  # K / V count words in the bank buffer (their own kind: not weights)
        writes["bank_buffer"][KV_COUNTS] = wcnt
        reads["bank_buffer"][KV_COUNTS] = sum(p["wcnt"] for p in parts) * v  # per left row
    io = cdiv(stream + low + out_bits, mem.global_buffer.bus_bits)
    mem_stall = max(0, io - compute)
    pac_ops = sum(p["pac"] for p in parts)
    enc_bits = (elems - layer.cached) * inst * pr.w_cnt + inst * v * n * pr.x_cnt  # new K / V
    eng = {"pac_engine": cdiv(pac_ops, arch.pac.engine_ops_per_cycle) if pac_ops else 0,
           "encoder": cdiv(enc_bits, arch.pac.encoder_bits_per_cycle) if enc_bits else 0}
    slow = max(eng, key=lambda e: eng[e])
    eng_stall = max(0, eng[slow] - compute - mem_stall)
    cycles = kv_load + compute + mem_stall + eng_stall
    bs = m.kind == "bit_serial"
    vt = sum(p["tiles"] for p in parts) * v
    busy = vt * pr.steps * m.cycles_per_step
    xmax, wmax = (1 << pr.in_bits) - 1, (1 << kb) - 1
    width = (n * xmax * wmax).bit_length()
    psum = inst * v * width * (sum(p["k"] * (p["rt"] - 1) for p in parts) + k * combine_psums)
    if rsd and layer.kv_axis == "n":  # resident and overflow positions stack as row tiles
        row_tiles, col_tiles = sum(p["rt"] for p in parts), parts[0]["ct"]
    elif rsd:  # K^T: they stack as column tiles
        row_tiles, col_tiles = parts[0]["rt"], sum(p["ct"] for p in parts)
    else:
        row_tiles, col_tiles = over["rt"], over["ct"]
    common.update(passes=sum(p["passes"] for p in parts))
    stalls = {"kv_load": kv_load, "memory": mem_stall}
    if att.pac:
        stalls[slow] = eng_stall
    return LayerCounts(
        cycles=cycles, compute_cycles=compute, stall_cycles=stalls,
        bank_utilization=busy / (m.banks * cycles) if cycles else 0.0, vector_tiles=vt,
        bit_serial_cycles_baseline=vt * pr.baseline_steps, bit_serial_cycles=vt * pr.steps,
        column_cycles=sum(p["col"] for p in parts) if bs else 0,
        active_row_cycles=inst * elems * v * pr.steps if bs else 0,
        bpbs_conversions=0 if bs else sum(p["conv"] for p in parts),
        pac_ops=pac_ops, encoder_bits=enc_bits, psum_bits=psum, reads_bits=reads,
        writes_bits=writes, row_tiles=row_tiles, col_tiles=col_tiles, exact=not att.pac,
        digital_cycles_mean=float(pr.steps),
        busy_cycles={"banks": busy, "pac_engine": eng["pac_engine"], "encoder": eng["encoder"]},
        kv_cell_write_bits=cell_bits, kv_occupancy_bits=occupancy, **common)


def _part(arch: Arch, pr: AttnPrecision, inst: int, v: int, n: int, k: int, banks: int
          ) -> dict[str, int]:
    """One part of a right operand (n x k per instance) tiled onto `banks` banks: its tiles,
    passes, compute cycles, streamed bits, count words and per-part energy counts."""
    m = arch.macro
    if n <= 0 or k <= 0:
        return dict(tiles=0, passes=0, compute=0, tile_bits=0, stream=0, col=0, conv=0,
                    rt=0, ct=0, k=0, xcnt=0, wcnt=0, pac=0)
    cpt = channels_per_tile(arch)
    rt, ct = cdiv(n, m.rows), cdiv(k, cpt)
    tiles = inst * rt * ct
    passes = cdiv(tiles, banks)
    cw = count_width(min(n, m.rows))
    return dict(tiles=tiles, passes=passes, compute=passes * v * pr.steps * m.cycles_per_step,
                tile_bits=min(n, m.rows) * min(k, cpt) * pr.cell_planes,
                stream=inst * v * n * ct * pr.x_planes,  # every tile gets its rows of each row
                col=inst * k * rt * v * pr.steps,
                conv=inst * k * pr.kv_bits * rt * v * pr.in_bits,
                rt=rt, ct=ct, k=k,
                xcnt=inst * v * rt * ct * pr.x_cnt * cw,  # each left row's segment, per tile
                wcnt=inst * k * rt * pr.w_cnt * cw,  # each column's counts, per row tile
                pac=inst * v * k * rt * pr.products)


def periphery_counts(arch: Arch, name: str, ops: Mapping[str, int]) -> LayerCounts:
    """Counts of the digital periphery's element operations (keys of PERIPHERY_OPS)."""
    bad = sorted(set(ops) - set(PERIPHERY_OPS))
    if bad:
        raise ValueError(f"unknown periphery operations {bad}; known: {list(PERIPHERY_OPS)}")
    total = sum(ops.values())
    cycles = cdiv(total, arch.attention.periphery_ops_per_cycle)
    return LayerCounts(
        name=name, cycles=cycles, compute_cycles=0, stall_cycles={"periphery": cycles},
        bank_utilization=0.0, passes=0, weight_reloads=0, vector_tiles=0,
        bit_serial_cycles_baseline=0, bit_serial_cycles=0, column_cycles=0, active_row_cycles=0,
        bpbs_conversions=0, pac_ops=0, encoder_bits=0, weight_bits_written=0, psum_bits=0,
        busy_cycles={"periphery": cycles}, periphery_ops={o: int(ops.get(o, 0))
                                                          for o in PERIPHERY_OPS})
