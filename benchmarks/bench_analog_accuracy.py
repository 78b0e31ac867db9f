"""Issue 17: what the analog BP/BS array costs in accuracy, on trained networks and real images.

The trained Fashion-MNIST ResNet-18s at 8b/8b (``fashion-resnet18-pretrain``, W8A8 QAT), 4b/4b
(``fashion-resnet18-w4a4``) and 1b/1b (``fashion-resnet18-w1a1``; both keep their first conv at
8 bits, ``macro.first_layer_bits: 8``) on ``jia_bpbs_65nm``, through `pacim accuracy`:

- the table (first TABLE_IMAGES test images): float, ideal integer arithmetic (``exact``), the
  8-b ADC alone (noise 0), ADC + the shipped noise, and ADC + noise with one code per unit of
  column sum (``analog.full_scale: null``: FS = 255 rows instead of the array's 768);
- the accuracy sweep over ``analog.adc_bits`` x ``analog.noise_lsb`` (the issue's grid) for the
  4b/4b network, at both full scales, with the column sums the ADCs see on real images (the
  why);
- the timed target (full run): `pacim accuracy` over all 10,000 test images through the analog
  W4A4 network, against the float executor in the same run.

Full run only (about 10 minutes).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchResult, Check

ARCH = "jia_bpbs_65nm"
MODELS = {"8b/8b": ("fashion-resnet18-pretrain", 8), "4b/4b": ("fashion-resnet18-w4a4", 4),
          "1b/1b": ("fashion-resnet18-w1a1", 1)}
TABLE_IMAGES = 1000
SWEEP_IMAGES = 300
SWEEP_MODEL = "4b/4b"
ADC_BITS = (4, 5, 6, 7, 8)
NOISE_LSB = (0.0, 0.25, 0.5, 1.0, 2.0)  # the grid, plus 0.25
FULL_SCALES = {"768 rows (shipped)": 1.0, "one code per row": None}
TIME_LIMIT_S = 600.0  # the 10 minutes for 10,000 images through analog W4A4 ...
# ... as a ratio to the float executor in the same run: float runs this network at ~4 ms per
# image on this machine (40 s / 10,000), so 10 minutes is 15x; the check is the ratio
TIME_RATIO_LIMIT = 15.0
LEVEL_POINTS = 0.5  # "at the level of digital": top-1 within 0.5 points of ideal arithmetic


def _arch(bits: int, **over: Any) -> Any:
    from pacim.arch import load_arch

    o: dict[str, Any] = {"macro.xbit": bits, "macro.wbit": bits}
    if bits < 8:
        o["macro.first_layer_bits"] = 8  # the networks keep their first conv at 8 bits
    o.update(over)
    return load_arch(ARCH, o)


def _unavailable() -> str | None:
    from pacim.accuracy.fetch import cached_fashion_mnist
    from pacim.accuracy.metadata import resolve_model

    try:
        import onnx  # noqa: F401
    except ImportError:
        return "the onnx extra is not installed"
    if cached_fashion_mnist() is None:
        return "Fashion-MNIST is not fetched (pacim data fetch fashion-mnist)"
    missing = [m for m, _ in MODELS.values() if not resolve_model(m).is_file()]
    return f"missing models: {', '.join(missing)}" if missing else None


def _top1(model: str, arch: Any, modes: tuple[str, ...], limit: int | None) -> dict[str, Any]:
    from pacim.accuracy.evaluate import evaluate

    r = evaluate(model, "fashion-mnist", arch, limit=limit, modes=modes, hw_images=0)
    return {"top1": r["top1"], "seconds": r["seconds"], "images": r["images"]}


def table(limit: int = TABLE_IMAGES) -> dict[str, Any]:
    """Top-1 per precision: float, exact, ADC, ADC + noise, ADC + noise at FS one code/row."""
    rows: dict[str, Any] = {}
    for name, (model, bits) in MODELS.items():
        base = _top1(model, _arch(bits), ("float", "exact", "pac"), limit)
        adc = _top1(model, _arch(bits, **{"analog.noise_lsb": 0.0}), ("pac",), limit)
        fine = _top1(model, _arch(bits, **{"analog.full_scale": None}), ("pac",), limit)
        rows[name] = {"model": model, "images": base["images"],
                      "float": base["top1"]["float"], "exact": base["top1"]["exact"],
                      "adc": adc["top1"]["pac"], "adc_noise": base["top1"]["pac"],
                      "adc_noise_fs_per_row": fine["top1"]["pac"]}
    return rows


def column_sums(model: str, bits: int, images: int = 4) -> dict[str, Any]:
    """The column sums the shipped ADC converts on real test images, pooled over layers."""
    from pacim.accuracy.datasets import load_dataset
    from pacim.accuracy.metadata import model_normalization, resolve_model
    from pacim.macro.analog import AnalogADC
    from pacim.pipeline import run_layer
    from pacim.sched import layer_arch
    from pacim.workloads.onnx import OnnxNet

    path = resolve_model(model)
    net = OnnxNet.load(path)
    x, _ = load_dataset("fashion-mnist", split="test").get(0, images, model_normalization(path))
    wl = net.workload(net.check_input(x))
    arch = _arch(bits)
    hist = np.zeros(1, dtype=np.int64)
    clipped = conv = 0
    for i, la in enumerate(la for la in wl.layers if la.mapped):
        st = run_layer(layer_arch(arch, la, first=i == 0), la, True, index=i)[0].analog
        h = np.asarray(st.column_sum_hist, dtype=np.int64)
        if h.size > hist.size:
            hist = np.pad(hist, (0, h.size - hist.size))
        hist[: h.size] += h
        clipped, conv = clipped + st.clipped, conv + st.conversions
    cdf = np.cumsum(hist) / hist.sum()
    adc = AnalogADC.from_arch(arch)
    s = np.arange(hist.size)
    return {"images": images, "rows_per_tile": adc.rows, "lsb_rows": adc.lsb,
            "conversions": conv, "clipped_fraction": clipped / conv,
            "column_sum_mean": float(hist @ s / hist.sum()),
            "column_sum_p50": int(np.searchsorted(cdf, 0.5)),
            "column_sum_p99": int(np.searchsorted(cdf, 0.99)),
            "column_sum_max": int(hist.size - 1),
            "below_half_lsb": float(hist[: int(math.ceil(adc.lsb / 2))].sum() / hist.sum())}


def sweep(limit: int = SWEEP_IMAGES) -> dict[str, Any]:
    """Top-1 of the 4b/4b network over ADC bits x noise, at both full scales."""
    model, bits = MODELS[SWEEP_MODEL]
    out: dict[str, Any] = {"images": limit, "model": model, "curves": {}}
    out["exact"] = _top1(model, _arch(bits), ("exact",), limit)["top1"]["exact"]
    for label, fs in FULL_SCALES.items():
        curves: dict[str, dict[str, float]] = {}
        for noise in NOISE_LSB:
            curves[f"{noise:g}"] = {
                str(b): _top1(model, _arch(bits, **{"analog.adc_bits": b,
                                                    "analog.noise_lsb": noise,
                                                    "analog.full_scale": fs}),
                              ("pac",), limit)["top1"]["pac"] for b in ADC_BITS}
        out["curves"][label] = curves
    return out


def timed(limit: int | None = None) -> dict[str, float]:
    """`pacim accuracy` through analog W4A4 (ADC + shipped noise) on every test image."""
    model, bits = MODELS["4b/4b"]
    t0 = time.perf_counter()
    r = _top1(model, _arch(bits), ("float", "pac"), limit)
    wall = time.perf_counter() - t0
    return {"images": r["images"], "wall_s": wall, "float_s": r["seconds"]["float"],
            "analog_s": r["seconds"]["pac"], "analog_top1": r["top1"]["pac"],
            "ratio": r["seconds"]["pac"] / r["seconds"]["float"]}


def figure(fig: dict[str, Any], path: Path) -> Path | None:
    """Top-1 against ADC bits per noise level, one panel per full scale."""
    sw = fig.get("sweep")
    if not sw:
        return None
    from matplotlib.figure import Figure

    f = Figure(figsize=(10, 4), layout="constrained")
    cs = fig.get("column_sums", {})
    for j, (label, curves) in enumerate(sw["curves"].items()):
        ax = f.add_subplot(1, 2, j + 1)
        for noise, pts in curves.items():
            ax.plot([int(b) for b in pts], [100 * v for v in pts.values()], "o-",
                    label=f"noise {noise} LSB")
        ax.axhline(100 * sw["exact"], color="k", ls="--", lw=1, label="ideal (exact)")
        ax.axhline(100 * (sw["exact"] - LEVEL_POINTS / 100), color="grey", ls=":", lw=1,
                   label=f"ideal - {LEVEL_POINTS:g} pt")
        ax.set_xlabel("ADC bits")
        ax.set_xticks(list(ADC_BITS))
        ax.set_ylabel("top-1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"W4A4 on {ARCH}, full scale {label}", fontsize=10)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize=8, loc="lower right")
    if cs:
        f.suptitle(f"column sums on real images: median {cs['column_sum_p50']}, 99th pct "
                   f"{cs['column_sum_p99']}, max {cs['column_sum_max']} of "
                   f"{cs['rows_per_tile']} rows; the shipped 8-b LSB is {cs['lsb_rows']:.2f} "
                   "rows", fontsize=9)
    f.savefig(path, dpi=110)
    return path


def run(quick: bool = False) -> BenchResult:
    """The table, the sweep and the timing (full run only)."""
    res = BenchResult("analog_accuracy")
    why = _unavailable()
    if quick or why:
        res.figures = {"skipped": "full run only" if quick else why}
        return res
    model, bits = MODELS[SWEEP_MODEL]
    res.figures = {"table": table(), "column_sums": column_sums(model, bits),
                   "sweep": sweep(), "timed": timed()}
    t = res.figures["timed"]
    res.checks = [
        Check("analog W4A4 pacim accuracy, 10,000 images: analog / float executor time",
              t["ratio"], "<=", TIME_RATIO_LIMIT),
        Check("ADC bits needed for top-1 within 0.5 pt of ideal, W4A4, one code per row, "
              "no noise (<= 8: the 8-b ADC suffices once FS fits the sums)",
              _bits_needed(res.figures["sweep"], "one code per row", "0"), "<=", 8),
    ]
    out = Path(__file__).resolve().parent.parent / "docs" / "analog_accuracy.png"
    figure(res.figures, out)
    return res


def _bits_needed(sw: dict[str, Any], fs: str, noise: str) -> float:
    """Fewest ADC bits at which top-1 is within LEVEL_POINTS of ideal (inf if none)."""
    pts = sw["curves"][fs][noise]
    ok = [int(b) for b, v in pts.items() if v >= sw["exact"] - LEVEL_POINTS / 100]
    return float(min(ok)) if ok else math.inf


def results_md(results: dict[str, Any]) -> list[str]:
    """The RESULTS.md section (empty when the benchmark did not run)."""
    figs = results.get("analog_accuracy", {}).get("figures", {})
    if "table" not in figs:
        return []

    def p(v: float) -> str:
        return f"{100 * v:.2f}%"

    t, cs, sw, tm = figs["table"], figs["column_sums"], figs["sweep"], figs["timed"]
    n = next(iter(t.values()))["images"]
    out = ["", "### Trained networks on the analog array: top-1 on real images", "",
           f"Fashion-MNIST ResNet-18s trained by `pacim train` (`--wbit/--xbit`; first conv at 8 "
           f"bits), on {ARCH}, first {n:,} test images. ADC: 8 b over 768-row tiles; shipped "
           "noise 0.011 LSB (kT/C, docs/ANALOG.md).", "",
           "| network | model | float | ideal (exact) | ADC, FS 768 rows | ADC + noise, FS 768 | "
           "ADC + noise, FS 255 rows (1 code/row) |", "|---|---|---|---|---|---|---|"]
    for name, r in t.items():
        out.append(f"| {name} | `{r['model']}` | {p(r['float'])} | {p(r['exact'])} | "
                   f"{p(r['adc'])} | {p(r['adc_noise'])} | {p(r['adc_noise_fs_per_row'])} |")
    need = {fs: _bits_needed(sw, fs, f"{NOISE_LSB[0]:g}") for fs in sw["curves"]}
    out += ["", f"Why (the W4A4 network's column sums on {cs['images']} real images, all "
            f"layers): median {cs['column_sum_p50']}, 99th percentile {cs['column_sum_p99']}, "
            f"max {cs['column_sum_max']} of {cs['rows_per_tile']} rows; at full scale 768 an "
            f"8-b LSB is {cs['lsb_rows']:.2f} rows, so {100 * cs['below_half_lsb']:.0f}% of the "
            "conversions read code 0. The dot products are short and sparse (a 3x3 x 32-channel "
            "window is 288 rows, and 1b x 1b products of real activations are mostly 0), so a "
            "full scale of the whole 768-row column spends most codes on sums that never occur."
            " With one code per unit of column sum (FS 255 rows) the 8-b ADC is exact up to "
            "255 and the networks are at the level of digital.", "",
            f"Accuracy sweep (W4A4, {sw['images']} images, `analog.adc_bits` x "
            "`analog.noise_lsb`): ADC bits needed for top-1 within "
            f"{LEVEL_POINTS:g} point of ideal at noise 0: "
            + ", ".join(f"full scale {k}: {'never (up to 8)' if math.isinf(v) else int(v)}"
                        for k, v in need.items()) + ". Figure: docs/analog_accuracy.png.", "",
            "| full scale | noise (LSB) | " + " | ".join(f"{b} b" for b in ADC_BITS) + " |",
            "|---|---|" + "---|" * len(ADC_BITS)]
    for fs, curves in sw["curves"].items():
        for noise, pts in curves.items():
            out.append(f"| {fs} | {noise} | " + " | ".join(p(pts[str(b)]) for b in ADC_BITS)
                       + " |")
    out += ["", f"`pacim accuracy` through analog W4A4 (ADC + noise) on all {tm['images']:,} "
            f"test images: {tm['analog_s'] / 60:.1f} min (float executor {tm['float_s']:.0f} s, "
            f"ratio {tm['ratio']:.1f}; target 10 min), top-1 {p(tm['analog_top1'])}.", ""]
    return out
