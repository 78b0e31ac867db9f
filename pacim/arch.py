"""The chip description: pydantic models, YAML loading, and dotted overrides.

Everything a simulation needs to know about the hardware lives here, validated at the border:
unknown keys, wrong types and out-of-range values are rejected with the file, the key path and
the reason. Energy numbers are data (with their source), never constants in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from .arch_attention import Attention, check_attention
from .arch_base import (
    MAX_FACTOR,
    MAX_FREQ_MHZ,
    MAX_KIB,
    MAX_NODE_NM,
    MAX_PJ,
    MAX_RATE,
    MAX_UM2,
    MIN_FREQ_MHZ,
    MIN_KIB,
    MIN_NODE_NM,
    MIN_PJ,
    MIN_RATE,
    MIN_UM2,
    MIN_VDD,
    EnergyTable,
    Strict,
)
from .arch_base import (
    EnergyEntry as EnergyEntry,
)
from .config_io import apply_overrides, read_yaml
from .config_io import parse_assignment as parse_assignment  # re-exported: arch's API
from .config_io import parse_value as parse_value
from .config_io import split_assignment as split_assignment
from .errors import ConfigError

_Strict = Strict  # the strict base every section uses (arch_base.Strict)


class Technology(_Strict):
    """Process and operating point. Frequency follows the alpha-power law f ~ (V - Vth)^a / V."""

    node_nm: float = Field(65, ge=MIN_NODE_NM, le=MAX_NODE_NM, description="process node in nm")
    vdd: float = Field(1.0, ge=MIN_VDD, le=5,
                       description="supply voltage in V (the operating point)")
    vdd_nom: float = Field(1.0, ge=MIN_VDD, le=5,
                           description="voltage of the energy table and freq")
    freq_mhz: float = Field(200.0, ge=MIN_FREQ_MHZ, le=MAX_FREQ_MHZ,
                            description="clock at vdd_nom, in MHz")
    vth: float = Field(0.4, ge=0, le=5, description="threshold voltage of the alpha-power law, V")
    alpha: float = Field(1.3, ge=1, le=2.5, description="velocity-saturation index of the law")

    @model_validator(mode="after")
    def _above_threshold(self) -> Technology:
        if self.vdd <= self.vth or self.vdd_nom <= self.vth:
            raise ValueError(f"vdd ({self.vdd}) and vdd_nom ({self.vdd_nom}) must exceed "
                             f"vth ({self.vth})")
        f_mhz = self.freq_hz / 1e6
        if not MIN_FREQ_MHZ <= f_mhz <= MAX_FREQ_MHZ:
            raise ValueError(f"the clock at vdd {self.vdd} V is {f_mhz:.3g} MHz (alpha-power law "
                             f"from {self.freq_mhz:g} MHz at vdd_nom {self.vdd_nom} V), outside "
                             f"{MIN_FREQ_MHZ:g}..{MAX_FREQ_MHZ:g} MHz: vdd too close to vth?")
        return self

    @property
    def freq_hz(self) -> float:
        """Clock at the operating vdd (alpha-power law relative to vdd_nom)."""
        def g(v: float) -> float:
            return (v - self.vth) ** self.alpha / v

        return self.freq_mhz * 1e6 * g(self.vdd) / g(self.vdd_nom)

    @property
    def dynamic_scale(self) -> float:
        """Dynamic-energy factor (vdd / vdd_nom)^2."""
        return (self.vdd / self.vdd_nom) ** 2


class Macro(_Strict):
    """The CiM macro: banks of rows x cols bit-cells."""

    kind: Literal["bit_serial", "bp_bs"] = Field(
        "bit_serial",
        description="bit_serial: one weight plane x one activation plane per cycle (PACiM D-CiM);"
        " bp_bs: weight bits in parallel columns, activation bits serial (Jia et al.)",
    )
    banks: int = Field(16, ge=1, le=4096)
    rows: int = Field(256, ge=1, le=65536, description="bit-cells per column = dot-product slice")
    cols: int = Field(64, ge=1, le=65536, description="columns per bank")
    wbit: int = Field(8, ge=1, le=16)
    xbit: int = Field(8, ge=1, le=16)
    cycles_per_step: int = Field(
        1, ge=1, le=1024,
        description="clock cycles per bit-serial step (1 for D-CiM; charge-domain BP/BS arrays "
        "need several for settling and the ADC)",
    )
    adc_bits: int = Field(8, ge=1, le=16, description="bp_bs column ADC resolution")
    first_layer_bits: int | None = Field(
        None, ge=1, le=16,
        description="weight and activation bits of the network's first conv (null: wbit/xbit); "
        "low-bit networks keep their first conv at 8 bits, and a bit-precision-scalable array "
        "(Jia et al.: 1-8 b) runs it so")


class Analog(_Strict):
    """The analog column of a bp_bs array (Jia et al.): its ADC and non-idealities.

    Per tile, weight bit and input bit the column sum s (0..macro.rows) converts to
    code = clip(floor(gain s (2^b - 1) / FS + offset_lsb + noise + 1/2), 0, 2^b - 1); the
    datapath shift-adds codes x FS / (2^b - 1). See docs/ANALOG.md (pacim.macro.analog).
    """

    adc_bits: int | None = Field(
        None, ge=1, le=16, description="ADC resolution b (null: macro.adc_bits)")
    full_scale: float | None = Field(
        1.0, gt=0, le=65535,
        description="FS, the column sum at the top code, as a fraction of macro.rows (smaller: "
        "finer steps, more clipping); null: FS = 2^b - 1, one code per unit of column sum")
    gain: float = Field(1.0, gt=0, le=16, description="ADC gain (1 = ideal; 0.98 = -2% error)")
    offset_lsb: float = Field(0.0, ge=-65536, le=65536, description="ADC offset error, in LSB")
    noise_lsb: float = Field(
        0.0, ge=0, le=65536, description="sigma of Gaussian noise per conversion, in LSB")
    nonlinear_lsb: float = Field(
        0.0, ge=0, le=65536,
        description="ASiM-style signal-dependent noise: sigma nonlinear_lsb / sqrt(s + 1), LSB")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the conversion noise")


class Dynamic(_Strict):
    """PACiM dynamic workload configuration thresholds on the speculation E."""

    thresholds: tuple[float, float, float] = (7000.0, 10000.0, 13000.0)

    @model_validator(mode="after")
    def _ascending(self) -> Dynamic:
        t = self.thresholds
        if not t[0] <= t[1] <= t[2]:
            raise ValueError(f"thresholds must be ascending t0 <= t1 <= t2, got {list(t)}")
        return self


class Pac(_Strict):
    """Probabilistic approximate computation and its companions."""

    enabled: bool = True
    operand: int = Field(4, ge=1, le=16, description="MSB planes of each operand computed exactly")
    approx: Literal["pac", "truncate", "expected"] = "pac"
    dynamic: Dynamic | None = None
    sparsity_encoder: bool = True
    scope: Literal["vector", "bank"] = Field(
        "vector", description="plane counts over the whole dot product, or per bank-row segment"
    )
    engine_ops_per_cycle: float = Field(
        64, ge=MIN_RATE, le=MAX_RATE,
        description="PAC engine throughput: approximated pair terms per cycle",
    )
    encoder_bits_per_cycle: float = Field(
        256, ge=MIN_RATE, le=MAX_RATE,
        description="sparsity encoder throughput: activation bits counted per cycle",
    )
    first_layer_exact: bool = Field(True, description="run the first conv exactly (PACiM)")


MemoryName = Literal["main", "global_buffer", "bank_buffer"]


class MemoryLevel(_Strict):
    """One memory level: capacity, bus width, per-bit access energy (at vdd_nom)."""

    size_kib: float = Field(ge=MIN_KIB, le=MAX_KIB)
    bus_bits: int = Field(gt=0, le=1 << 20, description="bits per cycle across this level's bus")
    read_pj_per_bit: float = Field(ge=MIN_PJ, le=MAX_PJ)
    write_pj_per_bit: float = Field(ge=MIN_PJ, le=MAX_PJ)
    scales_with_vdd: bool = Field(True, description="False for off-chip memory (own supply)")
    source: str = ""


class Memory(_Strict):
    """The hierarchy: main memory -> global buffer -> per-bank input/output buffers."""

    main: MemoryLevel
    global_buffer: MemoryLevel
    bank_buffer: MemoryLevel

    def levels(self) -> dict[str, MemoryLevel]:
        """Levels by name, outermost first."""
        return {"main": self.main, "global_buffer": self.global_buffer,
                "bank_buffer": self.bank_buffer}


class AreaEntry(_Strict):
    """One area-table value (um^2 per unit at area.node_nm) with its source."""

    value: float = Field(ge=MIN_UM2, le=MAX_UM2, description="> 0: a unit always takes area; "
                         "a component the chip lacks is left out of the table (null)")
    source: str = ""
    calibrated: bool = False


class AreaOverhead(AreaEntry):
    """An area fraction added to the bank logic (0: none)."""

    value: float = Field(ge=0, le=MAX_FACTOR)


class AreaScale(AreaEntry):
    """A factor on every bank component (1e-3 .. 1e3)."""

    value: float = Field(ge=1 / MAX_FACTOR, le=MAX_FACTOR)


class BufferAreas(_Strict):
    """Area per KiB of each memory level, by level (um^2/KiB at area.node_nm).

    A level without an entry is not on the die (main memory is off-chip by default)."""

    main: AreaEntry | None = None
    global_buffer: AreaEntry | None = None
    bank_buffer: AreaEntry | None = None  # per KiB; every bank has memory.bank_buffer.size_kib


class AreaTable(_Strict):
    """Per-unit silicon areas (um^2 at node_nm) and the geometry they need (pacim/energy/area.py).

    Areas scale to technology.node_nm by (technology.node_nm / node_nm)^2."""

    node_nm: float = Field(65, ge=MIN_NODE_NM, le=MAX_NODE_NM, description="node of the table, nm")
    bitcell: AreaEntry | None = None  # one weight bit-cell of a bank (with its compute port)
    full_adder: AreaEntry | None = None  # one full adder of a D-CiM column adder tree
    accumulator_bit: AreaEntry | None = None  # one bit of a column shift-accumulator
    adc: AreaEntry | None = None  # one column ADC (bp_bs)
    driver: AreaEntry | None = None  # one row/column line driver (DAC, precharge, write)
    pac_unit: AreaEntry | None = None  # one PAC-engine count-product unit
    encoder_lane: AreaEntry | None = None  # sparsity encoder, per activation bit per cycle
    count_bit: AreaEntry | None = None  # one stored bit of a weight-plane column count S_w
    datapath: AreaEntry | None = None  # near-memory datapath, per macro output
    input_gating: AreaEntry | None = None  # input zero-gating (sparsity controller), per row
    buffers: BufferAreas = BufferAreas()
    periphery_overhead: AreaOverhead | None = None  # bank decoders/drivers/control, x bank logic
    bank_scale: AreaScale | None = None  # one common factor on every bank component
    columns_per_adc: int = Field(1, ge=1, le=65536, description="bp_bs columns per ADC")
    count_bits: int = Field(13, ge=1, le=64, description="bits of one stored count S_w")
    weight_planes: int | None = Field(
        None, ge=1, le=16,
        description="weight bit-planes a bank stores per row x column (bit_serial); null: "
        "wbit when any layer can run exact, else min(pac.operand, wbit)",
    )


class Arch(_Strict):
    """A whole chip."""

    name: str = "unnamed"
    description: str = ""
    technology: Technology = Technology()
    macro: Macro = Macro()
    pac: Pac = Pac()
    memory: Memory
    energy: EnergyTable = EnergyTable()
    analog: Analog | None = None  # bp_bs only: the ADC model; null = exact integer arithmetic
    area: AreaTable | None = None  # silicon area table; None: no area figures
    attention: Attention = Attention()  # activation x activation products (QK^T, PV)

    @model_validator(mode="after")
    def _consistent(self) -> Arch:
        m, p = self.macro, self.pac
        if p.enabled:
            hi = max(m.xbit, m.wbit)
            if p.operand > hi:
                raise ValueError(f"pac.operand ({p.operand}) exceeds max(macro.xbit, macro.wbit)"
                                 f" = {hi}")
            if m.kind == "bp_bs":
                raise ValueError("pac.enabled needs macro.kind bit_serial: a bp_bs array has no"
                                 " bit-pair cycles to approximate")
            if p.dynamic is not None and (m.xbit, m.wbit, p.operand) != (8, 8, 4):
                raise ValueError("pac.dynamic is defined for xbit=8, wbit=8, operand=4 (PACiM);"
                                 f" got xbit={m.xbit}, wbit={m.wbit}, operand={p.operand}")
        if self.analog is not None and m.kind != "bp_bs":
            raise ValueError("analog needs macro.kind bp_bs: a bit_serial D-CiM macro is digital")
        if m.kind == "bp_bs" and m.wbit > m.cols:
            raise ValueError(f"bp_bs needs wbit ({m.wbit}) <= macro.cols ({m.cols})")
        return self

    @model_validator(mode="after")
    def _attention(self) -> Arch:
        check_attention(self.attention, self.energy, self.macro, self.pac.enabled)
        return self

    @model_validator(mode="after")
    def _area_planes(self) -> Arch:
        a = self.area
        if a is not None and a.weight_planes is not None and a.weight_planes > self.macro.wbit:
            raise ValueError(f"area.weight_planes ({a.weight_planes}) exceeds macro.wbit "
                             f"({self.macro.wbit})")
        return self

    # --- what the macro computes -------------------------------------------------------
    @property
    def operand(self) -> int:
        """Effective operand: pac.operand, or full precision when PAC is off."""
        return self.pac.operand if self.pac.enabled else max(self.macro.xbit, self.macro.wbit)

    @property
    def dynamic_thresholds(self) -> tuple[float, float, float] | None:
        """Dynamic thresholds when dynamic configuration is on."""
        if self.pac.enabled and self.pac.dynamic is not None:
            return self.pac.dynamic.thresholds
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML friendly)."""
        return self.model_dump(mode="json")

    def first_layer_arch(self) -> Arch:
        """The chip as it runs the network's first conv (macro.first_layer_bits, if set)."""
        b = self.macro.first_layer_bits
        if b is None or (b, b) == (self.macro.xbit, self.macro.wbit):
            return self
        return self.with_overrides({"macro.xbit": b, "macro.wbit": b})

    def with_overrides(self, overrides: Mapping[str, Any]) -> Arch:
        """A new Arch with dotted-key overrides applied and re-validated."""
        return _validate(apply_overrides(self.to_dict(), overrides), origin="overrides")


def _format_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "finite_number":
            msg = f"not a finite number (got {value!r})"
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            msg = f"{msg} (got {value!r})"  # a string too: YAML reads 1e-3 as '1e-3'
        lines.append(f"{origin}: {loc}: {msg}")
    return "; ".join(lines)


def _validate(data: Any, origin: str) -> Arch:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    try:
        return Arch.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, origin)) from None


# shipped chips are package data; the repository's ./arch_configs is a link to this folder
ARCH_DIR = Path(__file__).resolve().parent / "arch_configs"


def resolve_arch_path(path: str | Path) -> Path:
    """A path as given, or a shipped config's name (e.g. 'pacim_65nm')."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (ARCH_DIR / f"{path}.yaml", ARCH_DIR / str(path)):
        if cand.is_file():
            return cand
    return p


def load_arch(
    path: str | Path | Arch, overrides: Mapping[str, Any] | None = None, **kw: Any
) -> Arch:
    """Load and validate an architecture YAML, applying dotted overrides.

    ``load_arch("arch_configs/pacim_65nm.yaml", {"macro.banks": 32})`` or, as keyword
    arguments, ``load_arch(path, macro__banks=32)`` ("__" stands for ".").
    """
    ov: dict[str, Any] = dict(overrides or {})
    ov.update({k.replace("__", "."): v for k, v in kw.items()})
    if isinstance(path, Arch):
        return path.with_overrides(ov) if ov else path
    p = resolve_arch_path(path)
    data = read_yaml(p)
    if isinstance(data, dict) and ov:
        data = apply_overrides(data, ov)
    return _validate(data, origin=str(p) + (" (with overrides)" if ov else ""))
