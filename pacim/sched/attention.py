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
    kv_load + compute + the global-buffer streaming that compute does not hide.
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


def attention_counts(arch: Arch, layer: Layer) -> LayerCounts:
    """Counts of one matmul layer under arch.attention.mapping (cim or digital)."""
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
    bs = m.kind == "bit_serial"
    cpt = m.cols if bs else m.cols // wbit
    rt, ct = cdiv(n, m.rows), cdiv(k, cpt)
    tiles = inst * rt * ct
    passes = cdiv(tiles, m.banks)
    steps = xbit * wbit if bs else xbit  # exact: every bit pair (bit_serial) / input bit (bp_bs)
    compute = passes * v * steps * m.cycles_per_step
    tile_bits = min(n, m.rows) * min(k, cpt) * wbit
    write = passes * cdiv(tile_bits, att.write_bits_per_cycle or m.cols)
    kv_load = max(write, cdiv(kv_rd, home_bus))
    stream = inst * v * n * ct * xbit  # every tile receives its rows of every left row
    reads["global_buffer"]["act_full"] = stream
    writes["bank_buffer"]["act_full"] = stream
    reads["bank_buffer"]["act_full"] = stream
    io = cdiv(stream + out_bits, mem.global_buffer.bus_bits)
    mem_stall = max(0, io - compute)
    cycles = kv_load + compute + mem_stall
    vt = tiles * v
    busy = vt * steps * m.cycles_per_step
    xmax, wmax = (1 << xbit) - 1, (1 << wbit) - 1
    cap = m.banks * tile_bits
    common.update(passes=passes)
    return LayerCounts(
        cycles=cycles, compute_cycles=compute,
        stall_cycles={"kv_load": kv_load, "memory": mem_stall},
        bank_utilization=busy / (m.banks * cycles) if cycles else 0.0, vector_tiles=vt,
        bit_serial_cycles_baseline=vt * xbit * wbit, bit_serial_cycles=vt * steps,
        column_cycles=inst * k * rt * v * steps if bs else 0,
        active_row_cycles=inst * elems * v * steps if bs else 0,
        bpbs_conversions=0 if bs else inst * k * wbit * rt * v * xbit,
        psum_bits=inst * v * k * (rt - 1) * (n * xmax * wmax).bit_length(),
        reads_bits=reads, writes_bits=writes, row_tiles=rt, col_tiles=ct,
        digital_cycles_mean=float(steps), busy_cycles={"banks": busy},
        kv_cell_write_bits=inst * elems * wbit, kv_occupancy_bits=min(inst * elems * wbit, cap),
        **common)


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
