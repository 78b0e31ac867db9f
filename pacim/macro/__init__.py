"""The CiM macro: bit-serial D-CiM with PAC (numba + BLAS), its front end and integer entry points.

    pw = prepare_weight(w, wbit=8)                  # a weight quantized once (immutable)
    act = quantize_activations(x, 8, kernel=(3, 3), pads=(1, 1, 1, 1))
    y, stats = apply(act, pw, operand=4, dynamic=DEFAULT_THRESHOLDS, layout="nchw")
"""

from ..quant import bit_planes, plane_counts
from .core import (
    APPROX_METHODS,
    DEFAULT_THRESHOLDS,
    digital_set,
    dynamic_digital_sets,
    speculation,
)
from .integer import MacResult, dynamic_mac, exact_mac, macro_mac, pac_mac
from .layer import apply
from .operands import (
    Activations,
    PreparedWeight,
    activations_from_codes,
    prepare_weight,
    quantize_activations,
)
from .stats import MacroStats

__all__ = [
    "APPROX_METHODS",
    "DEFAULT_THRESHOLDS",
    "Activations",
    "MacResult",
    "MacroStats",
    "PreparedWeight",
    "activations_from_codes",
    "apply",
    "bit_planes",
    "digital_set",
    "dynamic_digital_sets",
    "dynamic_mac",
    "exact_mac",
    "macro_mac",
    "pac_mac",
    "plane_counts",
    "prepare_weight",
    "quantize_activations",
    "speculation",
]
