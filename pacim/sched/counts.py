"""Counts: what the scheduler measured for a layer (the only input of the energy model), and
their totals for the report.

The scheduler never touches float tensors; the energy model only multiplies these counts by the
arch's energy table. All fields are plain integers (cycles, events, bits) so sums are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# data kinds crossing the memory levels
DATA_KINDS = ("weights", "act_msb", "act_full", "sparsity_counts", "outputs", "psums", "w_counts")
LEVELS = ("main", "global_buffer", "bank_buffer")


def empty_traffic() -> dict[str, dict[str, int]]:
    """{level: {kind: 0}} for every level and data kind."""
    return {lv: dict.fromkeys(DATA_KINDS, 0) for lv in LEVELS}


@dataclass(frozen=True)
class LayerCounts:
    """Cycle-level counts of one mapped layer on one chip."""

    name: str
    cycles: int  # clock cycles from the layer's first event to its last
    compute_cycles: int  # clock cycles the busiest bank computes
    stall_cycles: dict[str, int]  # cycles the banks wait, by cause (memory, pac_engine, ...)
    bank_utilization: float  # busy bank-cycles / (banks * cycles)
    passes: int  # weight-stationary passes (tile groups loaded onto the banks)
    weight_reloads: int  # times weights were (re)loaded into the banks beyond the first pass
    vector_tiles: int  # (input vector, tile) pairs computed
    bit_serial_cycles_baseline: int  # xbit*wbit bit-serial cycles per vector-tile, summed
    bit_serial_cycles: int  # digital bit-serial cycles actually used, summed over vector-tiles
    column_cycles: int  # active columns x bit-serial cycles (bit_serial macro)
    active_row_cycles: int  # active rows x active columns x bit-serial cycles (AND/adder work)
    bpbs_conversions: int  # column conversions (bp_bs macro): active columns x steps
    pac_ops: int  # approximated pair terms computed by the PAC engine
    encoder_bits: int  # activation bits counted by the sparsity encoder
    weight_bits_written: int  # weight bits written into the bank arrays (incl. reloads)
    psum_bits: int  # partial-sum bits accumulated across row tiles
    reads_bits: dict[str, dict[str, int]] = field(default_factory=empty_traffic)
    writes_bits: dict[str, dict[str, int]] = field(default_factory=empty_traffic)
    events: int = 0  # scheduler events processed
    # added by the scheduler (defaults keep older constructors working)
    exact: bool = False  # all xbit x wbit pairs ran in the banks
    row_tiles: int = 0  # tiles along the dot product (N / rows)
    col_tiles: int = 0  # tiles along the output channels
    input_home: str = ""  # memory level the input feature map was read from
    output_home: str = ""  # memory level the outputs were written to
    digital_cycles_mean: float = 0.0  # bit-serial cycles per vector-tile, mean
    busy_cycles: dict[str, int] = field(default_factory=dict)  # banks (summed), buses, engines
    simulated_events: int = 0  # events the engine processed; the rest were extrapolated
    # attention (pacim/sched/attention.py): run-time operands, the KV cache, the periphery
    kv_cell_write_bits: int = 0  # K^T / V bits written into the bank cells
    kv_occupancy_bits: int = 0  # K^T / V bits the banks hold at once (at most)
    digital_macs: int = 0  # MACs of the near-memory digital unit
    periphery_ops: dict[str, int] = field(default_factory=dict)  # softmax, rmsnorm, rope, swiglu

    @property
    def total_reads_bits(self) -> int:
        """All bits read, over every level and kind."""
        return sum(sum(v.values()) for v in self.reads_bits.values())

    @property
    def total_writes_bits(self) -> int:
        """All bits written, over every level and kind."""
        return sum(sum(v.values()) for v in self.writes_bits.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)


def _add_traffic(acc: dict[str, dict[str, int]], t: dict[str, dict[str, int]]) -> None:
    for lv, kinds in t.items():
        dst = acc.setdefault(lv, {})
        for kd, b in kinds.items():
            dst[kd] = dst.get(kd, 0) + b


def summarize(counts: Sequence[LayerCounts]) -> dict[str, Any]:
    """Totals for the report: cycles, stalls, bit-serial cycles, memory traffic by level."""
    reads: dict[str, dict[str, int]] = {}
    writes: dict[str, dict[str, int]] = {}
    stalls: dict[str, int] = {}
    for c in counts:
        _add_traffic(reads, c.reads_bits)
        _add_traffic(writes, c.writes_bits)
        for kd, s in c.stall_cycles.items():
            stalls[kd] = stalls.get(kd, 0) + s
    base = sum(c.bit_serial_cycles_baseline for c in counts)
    act = sum(c.bit_serial_cycles for c in counts)
    cycles = sum(c.cycles for c in counts)
    by_level = {
        lv: {
            "reads_bits": sum(reads.get(lv, {}).values()),
            "writes_bits": sum(writes.get(lv, {}).values()),
            "reads_by_kind": dict(reads.get(lv, {})),
            "writes_by_kind": dict(writes.get(lv, {})),
        }
        for lv in LEVELS
    }
    total_r = sum(d["reads_bits"] for d in by_level.values())
    total_w = sum(d["writes_bits"] for d in by_level.values())

    def tot(f: str) -> int:
        return sum(getattr(c, f) for c in counts)

    banks_busy = sum(c.bank_utilization * c.cycles for c in counts)
    return {
        "layers": len(counts),
        "cycles": cycles,
        "compute_cycles": tot("compute_cycles"),
        "stall_cycles": stalls,
        "bank_utilization": banks_busy / cycles if cycles else 0.0,
        "bit_serial_cycles": {
            "baseline": base,
            "actual": act,
            "reduction": 1.0 - act / base if base else 0.0,
        },
        "memory": {"reads_bits": total_r, "writes_bits": total_w, "by_level": by_level},
        "passes": tot("passes"),
        "weight_reloads": tot("weight_reloads"),
        "vector_tiles": tot("vector_tiles"),
        "pac_ops": tot("pac_ops"),
        "encoder_bits": tot("encoder_bits"),
        "weight_bits_written": tot("weight_bits_written"),
        "psum_bits": tot("psum_bits"),
        "events": tot("events"),
    }


def combine(counts: Sequence[LayerCounts], name: str | None = None,
            repeat: int = 1) -> LayerCounts:
    """`repeat` runs of the layers `counts` one after another, as one LayerCounts: integer
    counts and traffic summed (exact), bank_utilization weighted by cycles and
    digital_cycles_mean by vector-tiles; flags and homes from the first. Phases use it to sum
    decode steps (pacim.phase)."""
    if not counts or repeat < 1:
        raise ValueError("combine needs at least one LayerCounts and repeat >= 1")
    first = counts[0]
    out: dict[str, Any] = {}
    for f in fields(LayerCounts):
        vals = [getattr(c, f.name) for c in counts]
        v0 = vals[0]
        if isinstance(v0, bool) or isinstance(v0, str):
            out[f.name] = v0
        elif isinstance(v0, int):
            out[f.name] = repeat * sum(vals)
        elif isinstance(v0, dict):
            acc: dict[str, Any] = {}
            for d in vals:
                for k, x in d.items():
                    if isinstance(x, dict):
                        sub = acc.setdefault(k, {})
                        for kk, xx in x.items():
                            sub[kk] = sub.get(kk, 0) + repeat * xx
                    else:
                        acc[k] = acc.get(k, 0) + repeat * x
            out[f.name] = acc
    cyc, vt = sum(c.cycles for c in counts), sum(c.vector_tiles for c in counts)
    out["bank_utilization"] = (sum(c.bank_utilization * c.cycles for c in counts) / cyc
                               if cyc else 0.0)
    out["digital_cycles_mean"] = (sum(c.digital_cycles_mean * c.vector_tiles for c in counts)
                                  / vt if vt else first.digital_cycles_mean)
    out["kv_occupancy_bits"] = max(c.kv_occupancy_bits for c in counts)
    out["row_tiles"], out["col_tiles"] = first.row_tiles, first.col_tiles
    out["name"] = first.name if name is None else name
    return LayerCounts(**out)
