"""The strict base of every arch section, the numeric bounds, and the energy table.

Split out of pacim/arch.py (which re-exports every name here): the energy table grew the
attention entries (issue 19) and arch.py stays under the 400-line limit.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base of every arch section: unknown keys rejected, frozen, every float finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Upper bounds far beyond any real chip: they keep products of the counts finite (a value that
# overflows float64 would turn into inf energy and a silent TOPS/W of 0).
# Lower bounds keep divisions finite (a rate of 1e-300 per cycle would overflow the cycle count).
MAX_PJ = 1e6  # per event or per bit, pJ (DRAM is ~10 pJ/bit); also leakage, mW
MIN_PJ = 1e-9  # pJ: below kT ln 2 at 300 K (2.9e-9 pJ), the least any bit operation costs
MIN_FREQ_MHZ, MAX_FREQ_MHZ = 1e-3, 1e6  # 1 kHz .. 1 THz (also the clock at the operating vdd)
MIN_VDD = 0.05  # V
MIN_KIB, MAX_KIB = 1 / 1024, float(1 << 40)  # 1 byte .. 1 PiB
MIN_RATE, MAX_RATE = 1e-3, 1e9  # PAC engine / encoder throughput per cycle
MIN_NODE_NM, MAX_NODE_NM = 0.1, 1e4  # process node (area scales with its square)
MIN_UM2, MAX_UM2 = 1e-6, 1e12  # area per unit: a 1 nm x 1 nm square .. 1 m^2
MAX_FACTOR = 1e3  # area factors (periphery overhead, bank scale)


class EnergyEntry(Strict):
    """One energy-table value (pJ per event at vdd_nom, or mW for leakage) with its source."""

    value: float = Field(ge=MIN_PJ, le=MAX_PJ, description="> 0: an event always costs energy; "
                         "a component the chip lacks is left out of the table (null)")
    source: str = ""
    calibrated: bool = False


class EnergyTable(Strict):
    """Per-event energies (pJ at technology.vdd_nom). See pacim/energy/ for their use."""

    and_gate: EnergyEntry | None = None  # D-CiM: one 1b x 1b AND in a bit-cell
    full_adder: EnergyEntry | None = None  # one full-adder operation in the column adder tree
    accumulator_bit: EnergyEntry | None = None  # shift-accumulate, per accumulated bit
    bpbs_array: EnergyEntry | None = None  # BP/BS: array + drivers, per column conversion
    bpbs_adc: EnergyEntry | None = None  # BP/BS: ADC, per column conversion
    bpbs_datapath: EnergyEntry | None = None  # BP/BS: near-memory datapath, per conversion
    pac_op: EnergyEntry | None = None  # PAC engine: count multiply + shift-add, per pair term
    encoder_bit: EnergyEntry | None = None  # sparsity encoder, per activation bit counted
    weight_write_bit: EnergyEntry | None = None  # writing one weight bit into the banks
    psum_bit: EnergyEntry | None = None  # partial-sum / accumulator traffic, per bit
    leakage_mw: EnergyEntry | None = None  # static power at vdd_nom, mW
    # attention (arch.attention, pacim/sched/attention.py): run-time operands and periphery
    cell_write_bit: EnergyEntry | None = None  # a K^T / V bit written into a bank's cells
    digital_mac: EnergyEntry | None = None  # one MAC of the near-memory digital unit
    softmax_op: EnergyEntry | None = None  # softmax, per score (exp, sum, normalize)
    rmsnorm_op: EnergyEntry | None = None  # RMSNorm, per element (square, sum, scale)
    rope_op: EnergyEntry | None = None  # RoPE, per rotated element (2 mult + 1 add)
    swiglu_op: EnergyEntry | None = None  # SwiGLU, per output element (SiLU + product)

