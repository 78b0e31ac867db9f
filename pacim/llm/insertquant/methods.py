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
``insertquant-fp``     -         the paper's clamp + insert + restore, nothing quantized (the
                                 FP-parity check)
``prefixquant-fp``     -         the prefix in front, nothing quantized
``insertquant-norm``   setting   pacim's first front end (norm-output templates)
``<mode>+pac``         as mode   every linear's integer MAC on the PAC macro
``naive``              none      the old name of ``rtn``
=====================  ========  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from pacim.errors import PacimError

LEVELS: tuple[str, ...] = ("detect", "clamp", "insert", "restore", "calib")
DETECT, CLAMP, INSERT, RESTORE, CALIB = 1, 2, 3, 4, 5
BASELINES: tuple[str, ...] = ("rtn", "quarot-rtn", "prefixquant")
QUANT_MODES: tuple[str, ...] = (
    *BASELINES, "insertquant", *(f"insertquant:{lv}" for lv in LEVELS[:-1]),
    "insertquant-norm", "naive",
)  # fmt: skip
MODES: tuple[str, ...] = (
    "fp", *QUANT_MODES, "insertquant-fp", "prefixquant-fp", *(f"{m}+pac" for m in QUANT_MODES)
)
DEFAULT_MODES: tuple[str, ...] = ("fp", "rtn", "quarot-rtn", "prefixquant", "insertquant")
ABLATION_MODES: tuple[str, ...] = (
    "quarot-rtn", *(f"insertquant:{lv}" for lv in LEVELS[:-1]), "insertquant"
)


@dataclass(frozen=True)
class Method:
    """What a mode name means."""

    name: str
    base: str  # fp, rtn, quarot-rtn, prefixquant, insertquant, insertquant-norm
    level: int = 0  # INSERTQUANT steps on (cumulative), CALIB = all
    pac: bool = False
    quantized: bool = True

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
    return Method(name, base, pac=pac)
