"""INSERTQUANT (Chen, Lee, Liou, Verma: "Massive Spikes in LLMs are Bias Vectors") and baselines.

- :mod:`.detect`: sink detection and the birth / persistence / disappearance phases.
- :mod:`.templates`: key/value and residual templates (and the first front end's norm plan).
- :mod:`.recorder`, :mod:`.calibrate`: one FP pass, every method's static ranges, spike-aware
  clipping, R_correct, the on-disk cache.
- :mod:`.methods`: mode names; :mod:`.hooks`: quantized inference with a real KV cache.
"""

from __future__ import annotations

from pacim.llm.insertquant.calibrate import Calibration
from pacim.llm.insertquant.detect import DEFAULT_ALPHA, SinkPhases, spike_ratio
from pacim.llm.insertquant.hooks import QuantHooks, StopForward
from pacim.llm.insertquant.methods import (
    ABLATION_MODES,
    DEFAULT_MODES,
    MODES,
    Method,
    parse_mode,
)
from pacim.llm.quantizers import QuantizedWeights, static_qparams
from pacim.llm.sites import RecordHooks, SiteStats, all_sites, site_name, site_rotations

DEFAULT_ETA = DEFAULT_ALPHA  # the old name of the detection threshold

__all__ = [
    "ABLATION_MODES", "DEFAULT_ALPHA", "DEFAULT_ETA", "DEFAULT_MODES", "MODES", "Calibration",
    "Method", "QuantHooks", "QuantizedWeights", "RecordHooks", "SinkPhases", "SiteStats",
    "StopForward", "all_sites", "parse_mode", "site_name", "site_rotations", "spike_ratio",
    "static_qparams",
]  # fmt: skip
