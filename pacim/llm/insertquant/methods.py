"""The evaluation modes: float, the baselines, INSERTQUANT, its ablation levels, and ``+pac``.

=====================  ========  ===========================================================
mode                   rotation  what
=====================  ========  ===========================================================
``fp``                 -         the float model
``rtn``                none      round to nearest; static ranges = min/max of every token
``quarot-rtn``         setting   block-Hadamard rotation, then RTN
``prefixquant``        setting   the sink token(s) as a float prefix of the KV cache, then
                                 static per-tensor quantization (ranges MSE-clipped)
``insertquant``        setting   the paper's method: detect, clamp, insert, restore, and
                                 spike-aware calibration
``insertquant:<lvl>``  setting   ablation, cumulative: ``detect`` (sinks left out of the
                                 ranges only), ``clamp``, ``insert``, ``restore``
``insertquant-persist`` setting  the paper's text literally: sink K/V bypass the KV quantizer
                                 only in the persistence phase (templates); see below
``insertquant-fp``     -         the paper's clamp + insert + restore, nothing quantized (the
                                 FP-parity check)
``prefixquant-fp``     -         the prefix in front, nothing quantized
``insertquant-norm``   setting   pacim's first front end (norm-output templates)
``<mode>+pac``         as mode   every linear's integer MAC on the PAC macro
``naive``              none      the old name of ``rtn``
=====================  ========  ===========================================================

From ``insert`` on, the sinks' K/V entries never pass the static KV quantizer: in the persistence
phase they are the float templates (the paper), and in the layers before the spike's birth and
after its disappearance, which the paper does not address, they are the sinks' own float K/V,
position 0 from the first layer on (it is always a sink). In LLaMA-2-7B the spike is born at
layer 1, so the persistence phase covers nearly every layer; in SmolLM2-135M it is born at layer
11 of 30, and quantizing position 0's key in layers 0-11 to 4 bits is what separated INSERTQUANT
from PrefixQuant (whose prefix stays float in every layer). ``insertquant-persist`` keeps the
literal reading for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacim.errors import PacimError

LEVELS: tuple[str, ...] = ("detect", "clamp", "insert", "restore", "calib")
DETECT, CLAMP, INSERT, RESTORE, CALIB = 1, 2, 3, 4, 5
BASELINES: tuple[str, ...] = ("rtn", "quarot-rtn", "prefixquant")
QUANT_MODES: tuple[str, ...] = (
    *BASELINES, "insertquant", *(f"insertquant:{lv}" for lv in LEVELS[:-1]),
    "insertquant-persist", "insertquant-norm", "naive",
)  # fmt: skip
MODES: tuple[str, ...] = (
    "fp", *QUANT_MODES, "insertquant-fp", "prefixquant-fp", *(f"{m}+pac" for m in QUANT_MODES)
)
DEFAULT_MODES: tuple[str, ...] = ("fp", "rtn", "quarot-rtn", "prefixquant", "insertquant")
ABLATION_MODES: tuple[str, ...] = (
    "quarot-rtn", *(f"insertquant:{lv}" for lv in LEVELS[:-1]), "insertquant",
    "insertquant-persist",
)


@dataclass(frozen=True)
class Method:
    """What a mode name means."""

    name: str
    base: str  # fp, rtn, quarot-rtn, prefixquant, insertquant, insertquant-norm
    level: int = 0  # INSERTQUANT steps on (cumulative), CALIB = all
    pac: bool = False
    quantized: bool = True
    sink_kv_float: bool = True  # from insert on: sinks' K/V never quantized (see module doc)

    @property
    def rotated(self) -> bool:
        """True when the method uses the setting's rotation (all but rtn and fp)."""
        return self.base not in ("rtn", "fp")

    @property
    def insertquant(self) -> bool:
        """True for the paper's method and its levels (not insertquant-norm)."""
        return self.base == "insertquant"

    @property
    def ranges(self) -> str:
        """Which calibrated range set the method quantizes with."""
        if self.base == "rtn":
            return "all"
        if self.base == "quarot-rtn":
            return "all-rot"
        if self.base == "prefixquant":
            return "prefix"
        if self.insertquant and self.level >= CALIB:
            return "iq"
        return "sem"


def parse_mode(name: str) -> Method:
    """The Method of a mode name; PacimError naming the valid modes."""
    if name not in MODES:
        raise PacimError(f"unknown mode {name!r}; choose from {', '.join(MODES)}")
    pac = name.endswith("+pac")
    base = name.removesuffix("+pac")
    if base == "fp":
        return Method(name, "fp", quantized=False)
    if base == "insertquant-fp":
        return Method(name, "insertquant", RESTORE, quantized=False)
    if base == "prefixquant-fp":
        return Method(name, "prefixquant", quantized=False)
    if base == "naive":
        return Method(name, "rtn", pac=pac)
    if base.startswith("insertquant:"):
        return Method(name, "insertquant", LEVELS.index(base.split(":")[1]) + 1, pac=pac)
    if base == "insertquant":
        return Method(name, "insertquant", CALIB, pac=pac)
    if base == "insertquant-persist":
        return Method(name, "insertquant", CALIB, pac=pac, sink_kv_float=False)
    return Method(name, base, pac=pac)
