"""Counts: what the scheduler measured for a layer — the only input of the energy model.

The scheduler never touches float tensors; the energy model only multiplies these counts by the
arch's energy table. All fields are plain integers (cycles, events, bits) so sums are exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
