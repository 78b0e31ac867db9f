"""Issue 2 speed: PAC conv2d on ResNet-18's 64->64 3x3 56x56 layer vs one float32 GEMM."""

from __future__ import annotations

import numpy as np

from benchmarks.common import BenchResult, Check, best_of
from pacim.functional import conv2d
from pacim.macro.core import DEFAULT_THRESHOLDS


def run(quick: bool = False) -> BenchResult:
    """Time PAC (operand 4), dynamic PAC and a float32 GEMM of the same im2col shapes."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((1, 64, 56, 56)), 0.0)  # post-ReLU activations
    w = rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2.0 / 576)
    macs = 64 * 576 * 56 * 56
    a = rng.standard_normal((56 * 56, 576)).astype(np.float32)
    b = rng.standard_normal((576, 64)).astype(np.float32)
    conv2d(x, w, padding=1, dynamic=DEFAULT_THRESHOLDS)  # warm numba
    t = best_of(
        {
            "gemm_f32": lambda: a @ b,
            "pac": lambda: conv2d(x, w, padding=1, operand=4),
            "dynamic": lambda: conv2d(x, w, padding=1, operand=4, dynamic=DEFAULT_THRESHOLDS),
        },
        repeat=5 if quick else 15,
    )
    gmacs = macs / t["pac"] / 1e9
    res = BenchResult("macro_conv2d")
    res.figures = {
        "layer": "resnet18 64->64 3x3 56x56 s1 p1 b1",
        "macs": macs,
        "pac_s": t["pac"],
        "dynamic_s": t["dynamic"],
        "gemm_f32_s": t["gemm_f32"],
        "pac_gmac_per_s": gmacs,
        "pac_over_gemm": t["pac"] / t["gemm_f32"],
        "dynamic_over_pac": t["dynamic"] / t["pac"],
        "speedup_vs_published_sim_20mmacs": gmacs * 1e9 / 20e6,
    }
    res.checks = [
        Check("PAC conv2d GMAC/s", gmacs, ">=", 1.0),
        Check("PAC conv2d / float32 GEMM", t["pac"] / t["gemm_f32"], "<=", 8.0),
        Check("dynamic / PAC", t["dynamic"] / t["pac"], "<=", 3.0),
    ]
    return res
