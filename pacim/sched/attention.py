"""Attention's activation x activation products (matmul layers) and the digital periphery, as
closed-form counts (LayerCounts) the energy model costs like any mapped layer.

A matmul layer is count products (rows x n) @ (n x k) in count / group groups sharing one right
operand (K^T: dh x L for QK^T, V: L x dh for PV); its `cached` elements per right operand come
from the KV cache at attention.kv_home, the rest are produced this step (written to kv_home for
later steps). K / V are held at macro.wbit bits, the left operand (queries, probabilities)
streams at macro.xbit bits. With arch.attention.mapping:

cim: each right operand is tiled onto the banks like a weight (rows x channels per tile, tiles
    dealt `banks` per pass) and every tile is written into the cells (kv_cell_write_bits): a
    pass writes for ceil(full tile bits / write_bits_per_cycle) cycles (banks in parallel) and
    the cached bits cross the kv_home bus; then the pass's left rows stream through bit-serially,
    exact (all xbit x wbit pairs; PAC on attention is the numerics phase's). cycles =
    kv_load + compute + the global-buffer streaming that compute does not hide. With
    attention.kv_banks, the first `resident` positions sit in the reserved banks (only the new
    ones are written, in the busiest tile's rows) and run beside the overflow, which is tiled
    as above on the other banks (kv_resident.py).
digital: the near-memory digital unit does every MAC at digital_macs_per_cycle; its cycles are
    the longest of its MACs, the cached-KV reads on the kv_home bus and the streaming.
See docs/LLM.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..arch import Arch
from ..errors import PacimError
from ..workloads.ir import Layer
from .counts import LayerCounts, empty_traffic
from .kv_resident import channels_per_tile, kv_dims

KV_KIND = "kv_cache"  # data kind of K / V in the memory traffic
PERIPHERY_OPS = ("softmax", "rmsnorm", "rope", "swiglu")  # energy entries <op>_op


def cdiv(a: int, b: float) -> int:
    """Ceil division of non-negative integers (b may be a float rate)."""
    return -(-a // b) if isinstance(b, int) else int(-(-a // b))


def instances(layer: Layer) -> tuple[int, int]:
    """(distinct right operands, left rows streamed against each) of a matmul layer."""
    rows = layer.in_shape[0] if layer.in_shape else layer.vectors
    count = layer.vectors // rows
    return count // layer.group, rows * layer.group


def kv_bits(arch: Arch, layer: Layer) -> int:
    """Bits of the layer's right operands (the KV cache of one K or V, all its heads)."""
    inst, _ = instances(layer)
    return inst * layer.n * layer.k * arch.macro.wbit


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
    inst, v = instances(layer)
    n, k, xbit, wbit = layer.n, layer.k, m.xbit, m.wbit
    elems = n * k
    kv_rd = inst * layer.cached * wbit
    kv_wr = inst * (elems - layer.cached) * wbit
    out_bits = inst * v * k * xbit
    home = att.kv_home
    home_bus = getattr(mem, home).bus_bits
    reads, writes = empty_traffic(), empty_traffic()
    reads[home][KV_KIND] = kv_rd
    writes[home][KV_KIND] = kv_wr
    writes["global_buffer"]["outputs"] = out_bits
    common = dict(name=layer.name, passes=0, weight_reloads=0, pac_ops=0, encoder_bits=0,
                  weight_bits_written=0, exact=True, input_home="global_buffer",
                  output_home="global_buffer", events=0, simulated_events=0)
    if att.mapping == "digital":
        stream = inst * v * n * xbit
        reads["global_buffer"]["act_full"] = stream
        macs = inst * v * elems
        compute = cdiv(macs, att.digital_macs_per_cycle)
        cycles = max(compute, cdiv(kv_rd, home_bus), cdiv(stream + out_bits, mem.global_buffer.
                                                          bus_bits))
        return LayerCounts(
            cycles=cycles, compute_cycles=0, stall_cycles={"memory": cycles - compute},
            bank_utilization=0.0, vector_tiles=0, bit_serial_cycles_baseline=0,
            bit_serial_cycles=0, column_cycles=0, active_row_cycles=0, bpbs_conversions=0,
            psum_bits=0, reads_bits=reads, writes_bits=writes, digital_macs=macs,
            busy_cycles={"digital_unit": compute}, **common)
    rsd = resident if layer.kv_axis is not None else 0
    scratch = m.banks - att.kv_banks
    wbpc = att.write_bits_per_cycle or m.cols
    res: dict[str, int] | None = None
    w_res = 0
    if rsd:  # positions < resident stay in the reserved banks; the rest overflow (see module)
        L, d = kv_dims(layer)
        c = layer.cached // d
        r_all, r_c = min(L, rsd), min(c, rsd)
        r_new, o_all, o_c = r_all - r_c, L - min(L, rsd), c - r_c
        kv_rd, kv_wr = inst * o_c * d * wbit, inst * (o_all - o_c) * d * wbit
        cell_bits = inst * (r_new + o_all) * d * wbit
        axis_k = layer.kv_axis == "k"
        res = _part(arch, inst, v, *((d, r_all) if axis_k else (r_all, d)), att.kv_banks)
        over = _part(arch, inst, v, *((d, o_all) if axis_k else (o_all, d)), scratch)
        cpt = channels_per_tile(arch)
        if r_new:  # the new positions' rows (V) or columns (K^T) into the busiest tile
            w_res = (min(d, m.rows) * cdiv(min(r_new, cpt) * wbit, wbpc) if axis_k
                     else min(r_new, m.rows) * cdiv(min(d, cpt) * wbit, wbpc))
        occupancy = inst * r_all * d * wbit + min(inst * o_all * d * wbit,
                                                  scratch * over["tile_bits"])
        combine_psums = (not axis_k) and r_all > 0 and o_all > 0
    else:
        cell_bits = inst * elems * wbit
        over = _part(arch, inst, v, n, k, scratch)
        occupancy = min(cell_bits, scratch * over["tile_bits"])
        combine_psums = False
    parts = [p for p in (res, over) if p is not None and p["tiles"]]
    path_res = w_res + res["compute"] if res is not None and res["tiles"] else 0
    kv_load_o = (max(over["passes"] * cdiv(over["tile_bits"], wbpc), cdiv(kv_rd, home_bus))
                 if over["tiles"] else cdiv(kv_rd, home_bus))
    path_o = kv_load_o + over["compute"]
    compute = res["compute"] if res is not None and path_res > path_o else over["compute"]
    kv_load = max(path_res, path_o) - compute
    reads[home][KV_KIND] = kv_rd
    writes[home][KV_KIND] = kv_wr
    stream = sum(p["stream"] for p in parts)
    reads["global_buffer"]["act_full"] = stream
    writes["bank_buffer"]["act_full"] = stream
    reads["bank_buffer"]["act_full"] = stream
    io = cdiv(stream + out_bits, mem.global_buffer.bus_bits)
    mem_stall = max(0, io - compute)
    cycles = kv_load + compute + mem_stall
    bs = m.kind == "bit_serial"
    steps = xbit * wbit if bs else xbit
    vt = sum(p["tiles"] for p in parts) * v
    busy = vt * steps * m.cycles_per_step
    xmax, wmax = (1 << xbit) - 1, (1 << wbit) - 1
    width = (n * xmax * wmax).bit_length()
    psum = inst * v * width * (sum(p["k"] * (p["rt"] - 1) for p in parts) + k * combine_psums)
    if rsd and layer.kv_axis == "n":  # resident and overflow positions stack as row tiles
        row_tiles, col_tiles = sum(p["rt"] for p in parts), parts[0]["ct"]
    elif rsd:  # K^T: they stack as column tiles
        row_tiles, col_tiles = parts[0]["rt"], sum(p["ct"] for p in parts)
    else:
        row_tiles, col_tiles = over["rt"], over["ct"]
    common.update(passes=sum(p["passes"] for p in parts))
    return LayerCounts(
        cycles=cycles, compute_cycles=compute,
        stall_cycles={"kv_load": kv_load, "memory": mem_stall},
        bank_utilization=busy / (m.banks * cycles) if cycles else 0.0, vector_tiles=vt,
        bit_serial_cycles_baseline=vt * xbit * wbit, bit_serial_cycles=vt * steps,
        column_cycles=sum(p["col"] for p in parts) if bs else 0,
        active_row_cycles=inst * elems * v * steps if bs else 0,
        bpbs_conversions=0 if bs else sum(p["conv"] for p in parts),
        psum_bits=psum, reads_bits=reads, writes_bits=writes,
        row_tiles=row_tiles, col_tiles=col_tiles,
        digital_cycles_mean=float(steps), busy_cycles={"banks": busy},
        kv_cell_write_bits=cell_bits, kv_occupancy_bits=occupancy, **common)


def _part(arch: Arch, inst: int, v: int, n: int, k: int, banks: int) -> dict[str, int]:
    """One part of a right operand (n x k per instance) tiled onto `banks` banks: its tiles,
    passes, exact compute cycles, streamed bits and per-part energy counts."""
    m = arch.macro
    if n <= 0 or k <= 0:
        return dict(tiles=0, passes=0, compute=0, tile_bits=0, stream=0, col=0, conv=0,
                    rt=0, ct=0, k=0)
    bs = m.kind == "bit_serial"
    cpt = channels_per_tile(arch)
    rt, ct = cdiv(n, m.rows), cdiv(k, cpt)
    tiles = inst * rt * ct
    passes = cdiv(tiles, banks)
    steps = m.xbit * m.wbit if bs else m.xbit  # exact: every bit pair / input bit (bp_bs)
    return dict(tiles=tiles, passes=passes, compute=passes * v * steps * m.cycles_per_step,
                tile_bits=min(n, m.rows) * min(k, cpt) * m.wbit,
                stream=inst * v * n * ct * m.xbit,  # every tile gets its rows of every left row
                col=inst * k * rt * v * steps, conv=inst * k * m.wbit * rt * v * m.xbit,
                rt=rt, ct=ct, k=k)


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
