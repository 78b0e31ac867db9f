"""The CiM macro: bit-serial D-CiM with PAC (numba + BLAS), and the integer entry points."""

from ..quant import bit_planes, plane_counts
from .core import (
    APPROX_METHODS,
    DEFAULT_THRESHOLDS,
    MacResult,
    digital_set,
    dynamic_digital_sets,
    dynamic_mac,
    exact_mac,
    macro_mac,
    pac_mac,
    speculation,
)
from .stats import MacroStats

__all__ = [
    "APPROX_METHODS",
    "DEFAULT_THRESHOLDS",
    "MacResult",
    "bit_planes",
    "digital_set",
    "dynamic_digital_sets",
    "dynamic_mac",
    "exact_mac",
    "macro_mac",
    "pac_mac",
    "plane_counts",
    "speculation",
    "MacroStats",
]
