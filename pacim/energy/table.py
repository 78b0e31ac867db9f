"""The energy table: per-event energies of the arch (pJ at technology.vdd_nom, each with its
source) and the D-CiM column structure that turns gate-level events into a column-cycle.

D-CiM (macro.kind bit_serial) column-cycle energy is built from gate-level events, so it scales
with the column height `rows` and the accumulated width:

- one AND per active row (the 1b x 1b product in the bit-cell);
- an adder tree summing `rows` one-bit products: a balanced tree of ripple adders, level l of
  which has rows / 2^l adders of l bits, i.e. sum_l l * rows / 2^l = 2*rows - log2(rows) - 2
  full-adder operations (~2*rows), charged per active row;
- a shift-accumulator of ceil(log2(rows + 1)) + xbit + wbit bits per column-cycle.

BP/BS (macro.kind bp_bs, Jia et al.) charges array + drivers, ADC and near-memory datapath per
column conversion. See docs/ENERGY.md for the table's sources and the calibration.
"""

from __future__ import annotations

from functools import lru_cache

from ..arch import Arch, EnergyEntry
from ..errors import ConfigError

# breakdown components, by macro kind, then the ones every chip has
DCIM_COMPONENTS = ("dcim_and", "dcim_adder_tree", "dcim_accumulate")
BPBS_COMPONENTS = ("bpbs_array", "bpbs_adc", "bpbs_datapath")
COMMON_COMPONENTS = ("pac_engine", "encoder", "weight_write", "psum")
MEMORY_COMPONENTS = ("mem_main", "mem_global_buffer", "mem_bank_buffer")
# only on a chip with attention.mapping set (arch.attention): K^T / V cell writes, the
# near-memory digital unit, the digital periphery (softmax, RMSNorm, RoPE, SwiGLU)
ATTENTION_COMPONENTS = ("kv_write", "digital_unit", "periphery")
COMPUTE_COMPONENTS = DCIM_COMPONENTS + BPBS_COMPONENTS + ("pac_engine", "encoder")

# energy-table entry -> (unit, what one event is)
ENTRY_INFO: dict[str, tuple[str, str]] = {
    "and_gate": ("pJ/AND", "1b x 1b AND in a D-CiM bit-cell"),
    "full_adder": ("pJ/FA op", "one full-adder operation in a column adder tree"),
    "accumulator_bit": ("pJ/bit", "shift-accumulate, per accumulated bit per column-cycle"),
    "bpbs_array": ("pJ/conv", "BP/BS array + drivers, per column conversion"),
    "bpbs_adc": ("pJ/conv", "BP/BS ADC, per column conversion"),
    "bpbs_datapath": ("pJ/conv", "BP/BS near-memory datapath, per column conversion"),
    "pac_op": ("pJ/pair", "PAC engine, per approximated bit-pair term"),
    "encoder_bit": ("pJ/bit", "sparsity encoder, per activation bit counted"),
    "weight_write_bit": ("pJ/bit", "weight bit written into the bank arrays"),
    "psum_bit": ("pJ/bit", "partial-sum accumulation across row tiles, per bit"),
    "leakage_mw": ("mW", "static power"),
    "cell_write_bit": ("pJ/bit", "K^T / V bit written into the bank cells (attention cim)"),
    "digital_mac": ("pJ/MAC", "near-memory digital unit, per MAC (attention digital)"),
    "softmax_op": ("pJ/score", "softmax, per attention score"),
    "rmsnorm_op": ("pJ/elem", "RMSNorm, per element"),
    "rope_op": ("pJ/elem", "RoPE, per rotated element"),
    "swiglu_op": ("pJ/elem", "SwiGLU, per output element"),
}


# --- structure of the D-CiM column --------------------------------------------------------
@lru_cache(maxsize=256)
def adder_tree_full_adders(rows: int) -> int:
    """Full-adder operations of a balanced ripple-adder tree summing `rows` one-bit inputs.

    The root adds two halves of ceil(rows/2) and floor(rows/2) inputs, whose sums need
    bit_length(ceil(rows/2)) bits: that many full adders. For rows = 2^L this is
    2*rows - L - 2 (502 for 256 rows).
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if rows == 1:
        return 0
    hi = (rows + 1) // 2
    return adder_tree_full_adders(hi) + adder_tree_full_adders(rows - hi) + hi.bit_length()


def accumulator_bits(rows: int, xbit: int, wbit: int) -> int:
    """Shift-accumulator width: ceil(log2(rows + 1)) + xbit + wbit."""
    return rows.bit_length() + xbit + wbit


# --- table access ---------------------------------------------------------------------------
def table_value(arch: Arch, name: str, used_by: str) -> float:
    """The table's value of `name` (pJ per event at vdd_nom); one ConfigError when missing."""
    e: EnergyEntry | None = getattr(arch.energy, name, None)
    if e is None:
        raise ConfigError(
            f"{arch.name}: energy.{name} is missing from the energy table, but {used_by} needs it;"
            f" add `{name}: {{value: <{ENTRY_INFO[name][0]}>, source: \"...\"}}` under `energy:`"
            " in the arch YAML"
        )
    return float(e.value)


def cost(arch: Arch, name: str, count: float, what: str) -> float:
    """count x table value (pJ at vdd_nom); a missing entry only matters when count > 0."""
    if count <= 0:
        return 0.0
    return count * table_value(arch, name, what)


def dcim_column_cycle_pj(arch: Arch) -> dict[str, float]:
    """D-CiM energy of one fully active column-cycle at vdd_nom, by component (pJ)."""
    m = arch.macro
    what = f"a D-CiM column-cycle ({m.rows} rows)"
    return {
        "dcim_and": m.rows * table_value(arch, "and_gate", what),
        "dcim_adder_tree": adder_tree_full_adders(m.rows) * table_value(arch, "full_adder", what),
        "dcim_accumulate": accumulator_bits(m.rows, m.xbit, m.wbit)
        * table_value(arch, "accumulator_bit", what),
    }


def bpbs_conversion_pj(arch: Arch) -> dict[str, float]:
    """BP/BS energy of one column conversion at vdd_nom, by component (pJ)."""
    what = "a BP/BS column conversion"
    return {c: table_value(arch, c, what) for c in BPBS_COMPONENTS}


def components(arch: Arch) -> tuple[str, ...]:
    """Breakdown keys for this chip, in report order."""
    macro = DCIM_COMPONENTS if arch.macro.kind == "bit_serial" else BPBS_COMPONENTS
    att = ATTENTION_COMPONENTS if arch.attention.mapping is not None else ()
    return macro + COMMON_COMPONENTS + att + MEMORY_COMPONENTS + ("leakage",)
