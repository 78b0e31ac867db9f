"""Macro speed at the GEMM limit (issue 13): PAC conv2d / linear vs one float32 GEMM.

Every ratio is measured in one run against a float32 GEMM of the same im2col shapes, timed
beside it (interleaved best-of, the same BLAS threads, warm). The layers are ResNet-18's, fed
the built-in network's real activations, so the dynamic levels see a real mix (about half the
rows of layer1 take the 10-cycle level). Checks use the CI guards; the goals are figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import BenchResult, Check, best_of
from pacim.functional import conv2d, linear
from pacim.macro import DEFAULT_THRESHOLDS, prepare_weight

PACIM_SIM_MMACS = 11.3  # PACiM's own simulator on the 56x56 layer, measured here (PAPERS.md)
# ResNet-18 layers: (name in the built-in workload, batch)
CONV_CASES = [("layer1.0.conv2", 1), ("layer3.1.conv1", 1), ("layer4.1.conv1", 1),
              ("layer1.0.conv2", 8)]
GOALS = {"prepared": 2.0, "float_api": 2.5, "dynamic": 1.3, "linear": 2.0}
GUARDS = {"prepared": 4.0, "float_api": 5.0, "dynamic": 2.0, "linear": 4.0}


def _gemm_operands(rows: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, n)).astype(np.float32),
            rng.standard_normal((n, k)).astype(np.float32))


def _layer_input(wl: Any, name: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    layer = next(la for la in wl.layers if la.name == name)
    x = np.asarray(layer.x)
    if batch > 1:  # more images: the same activations, each shifted by its own small noise
        rng = np.random.default_rng(batch)
        x = np.maximum(np.concatenate([x] * batch) + 0.05 * rng.standard_normal(
            (batch,) + x.shape[1:]) * x.std(), 0.0)
    return x, np.asarray(layer.weight)


def run(quick: bool = False) -> BenchResult:
    """Time PAC (static / dynamic, prepared / float weight) and the GEMMs beside them."""
    from pacim.workloads import load_workload

    wl = load_workload("resnet18")
    repeat = 7 if quick else 20
    res = BenchResult("macro_conv2d")
    figs: dict[str, Any] = {}
    worst = {key: 0.0 for key in GOALS}
    for name, batch in CONV_CASES:
        x, w = _layer_input(wl, name, batch)
        k, c, kh, kw = w.shape
        rows = batch * x.shape[2] * x.shape[3]  # stride 1, padding 1
        a, b = _gemm_operands(rows, c * kh * kw, k, seed=rows)
        pw = prepare_weight(w, 8)
        conv2d(x, pw, padding=1, dynamic=DEFAULT_THRESHOLDS)  # warm numba and pw's caches
        fns = {
            "gemm_f32": lambda a=a, b=b: a @ b,
            "prepared": lambda x=x, pw=pw: conv2d(x, pw, padding=1, operand=4),
            "dynamic": lambda x=x, pw=pw: conv2d(x, pw, padding=1, dynamic=DEFAULT_THRESHOLDS),
        }
        if batch == 8 or name == "layer1.0.conv2":
            fns["float_api"] = lambda x=x, w=w: conv2d(x, w, padding=1, operand=4)
        t = best_of(fns, repeat=repeat)
        tag = f"{k}x{c} {x.shape[2]}x{x.shape[3]} b{batch}"
        macs = rows * k * c * kh * kw
        figs[f"{tag}.gemm_f32_ms"] = t["gemm_f32"] * 1e3
        figs[f"{tag}.pac_gmac_per_s"] = macs / t["prepared"] / 1e9
        figs[f"{tag}.prepared_over_gemm"] = t["prepared"] / t["gemm_f32"]
        figs[f"{tag}.dynamic_over_static"] = t["dynamic"] / t["prepared"]
        worst["prepared"] = max(worst["prepared"], t["prepared"] / t["gemm_f32"])
        worst["dynamic"] = max(worst["dynamic"], t["dynamic"] / t["prepared"])
        if "float_api" in t:
            figs[f"{tag}.float_api_over_gemm"] = t["float_api"] / t["gemm_f32"]
            worst["float_api"] = max(worst["float_api"], t["float_api"] / t["gemm_f32"])
        if (name, batch) == CONV_CASES[0]:
            gmacs = macs / t["prepared"] / 1e9
            figs["pac_gmac_per_s"] = gmacs
            figs["dynamic_gmac_per_s"] = macs / t["dynamic"] / 1e9
            figs["speedup_vs_pacim_simulator"] = gmacs * 1e3 / PACIM_SIM_MMACS
    # PAC linear: 128 tokens x 576 through a 1536 x 576 weight (an LLM MLP projection)
    rng = np.random.default_rng(5)
    xl = rng.standard_normal((128, 576))
    wlin = rng.standard_normal((1536, 576)) * 0.04
    pwl = prepare_weight(wlin, 8)
    a, b = _gemm_operands(128, 576, 1536, seed=128)
    linear(xl, pwl)
    t = best_of({"gemm_f32": lambda: a @ b, "pac": lambda: linear(xl, pwl)}, repeat=repeat)
    worst["linear"] = t["pac"] / t["gemm_f32"]
    figs["linear 128x576x1536.over_gemm"] = worst["linear"]
    figs["linear 128x576x1536.pac_gmac_per_s"] = 128 * 576 * 1536 / t["pac"] / 1e9
    for key, goal in GOALS.items():
        figs[f"worst.{key}"] = worst[key]
        figs[f"goal.{key}"] = goal
        figs[f"goal_met.{key}"] = bool(worst[key] <= goal)
    res.figures = figs
    res.checks = [
        Check("PAC conv2d (prepared weight) / float32 GEMM, worst of 4 layers",
              worst["prepared"], "<=", GUARDS["prepared"]),
        Check("PAC conv2d (float weight) / float32 GEMM, worst of b1/b8",
              worst["float_api"], "<=", GUARDS["float_api"]),
        Check("dynamic / static PAC conv2d, worst of 4 layers", worst["dynamic"], "<=",
              GUARDS["dynamic"]),
        Check("PAC linear 128x576x1536 (prepared) / float32 GEMM", worst["linear"], "<=",
              GUARDS["linear"]),
        Check("PAC conv2d GMAC/s (56x56 layer)", figs["pac_gmac_per_s"], ">=", 1.0),
    ]
    return res
