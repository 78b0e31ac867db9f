"""Issue 17: the analog BP/BS model (Jia et al.) — speed, and SQNR against ADC bits and noise.

Speed (also in --quick): a W4A4 analog conv, ResNet-18's 64->64 3x3 56x56 layer with the
built-in network's real activations, against one float32 GEMM of the same im2col shape timed
beside it (interleaved best-of); GMAC/s against ASiM's published CPU figure.

Accuracy (full run only): the issue's sweep `pacim sweep --arch jia_bpbs_65nm --workload
resnet18-cifar --grid analog.adc_bits=4,5,6,7,8 --grid analog.noise_lsb=0,0.5,1,2` at the
shipped 1b/1b and at 4b/4b, plus analog.full_scale at 8 bits; the digital level (SQNR of the
exact integer macro against the float layer) and the column sums the ADCs saw on this data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from benchmarks.common import BenchResult, Check, best_of
from pacim.arch import load_arch
from pacim.macro import apply, prepare_weight, quantize_activations
from pacim.macro.analog import AnalogADC

ARCH = "jia_bpbs_65nm"
WORKLOAD = "resnet18-cifar"
ASIM_GMACS = 0.9  # ASiM: ResNet-18 W4A4, 10,000 CIFAR-10 images in 6,000 s on an i9 (PAPERS.md)
GOAL = 24.0  # W4A4 analog layer / float32 GEMM: 16 binary products plus the ADC (issue 17)
GRID = {"analog.adc_bits": [4, 5, 6, 7, 8], "analog.noise_lsb": [0.0, 0.5, 1.0, 2.0]}
FULL_SCALES = [1 / 16, 1 / 8, 1 / 4, None, 1 / 2, 1.0]  # None: one code per row (FS = 255)
PRECISIONS = [(1, 1), (4, 4)]  # the shipped 1b/1b and Jia's 4-b network
MARGIN_DB = 10.0  # "at the level of digital": analog error power <= 10% of the quantization's


def _speed(quick: bool) -> dict[str, Any]:
    from pacim.workloads import load_workload

    wl = load_workload("resnet18")
    layer = next(la for la in wl.layers if la.name == "layer1.0.conv2")
    x, w = np.asarray(layer.x), np.asarray(layer.weight)
    act = quantize_activations(x, 4, kernel=(3, 3), pads=(1, 1, 1, 1))
    pw = prepare_weight(w, 4)
    rows, n, k = act.rows, act.n, pw.k
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((rows, n)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    shipped = AnalogADC.from_arch(load_arch(ARCH, {"macro.xbit": 4, "macro.wbit": 4}))
    quiet = AnalogADC(bits=shipped.bits, rows=shipped.rows)
    fns = {
        "gemm_f32": lambda: a @ b,
        "analog": lambda: apply(act, pw, operand=4, analog=shipped, stats=False),
        "analog_noise_free": lambda: apply(act, pw, operand=4, analog=quiet, stats=False),
        "analog_stats": lambda: apply(act, pw, operand=4, analog=shipped),
    }
    for f in fns.values():
        f()  # warm numba and the packed weight
    t = best_of(fns, repeat=5 if quick else 15)
    macs = rows * n * k
    return {
        "layer": "resnet18 layer1.0.conv2 64->64 3x3 56x56 W4A4",
        "gemm_f32_ms": t["gemm_f32"] * 1e3,
        "analog_ms": t["analog"] * 1e3,
        "analog_over_gemm": t["analog"] / t["gemm_f32"],
        "noise_free_over_gemm": t["analog_noise_free"] / t["gemm_f32"],
        "with_stats_over_gemm": t["analog_stats"] / t["gemm_f32"],
        "analog_gmac_per_s": macs / t["analog"] / 1e9,
        "speedup_vs_asim_cpu": macs / t["analog"] / 1e9 / ASIM_GMACS,
        "goal": GOAL,
        "conversions_per_s": rows * k * 16 / t["analog"],
    }


def float_output(layer: Any) -> np.ndarray:
    """The layer's float64 output in the macro's (rows, K) order."""
    x = np.asarray(layer.x, dtype=np.float64)
    w = np.asarray(layer.weight, dtype=np.float64)
    bias = 0.0 if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    if layer.kind == "linear":
        return x @ w.T + bias
    p, s = layer.padding, layer.stride
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::s, ::s]
    return np.einsum("bchwij,kcij->bhwk", win, w, optimize=True).reshape(-1, w.shape[0]) + bias


def _db(sig: float, err: float) -> float:
    return math.inf if err == 0 else 10.0 * math.log10(sig / err)


def _data_study(xbit: int, wbit: int) -> dict[str, Any]:
    """Digital level and the shipped ADC's column sums on the workload, pooled over layers."""
    from pacim.pipeline import layer_operands, run_layer
    from pacim.workloads import load_workload

    arch = load_arch(ARCH, {"macro.xbit": xbit, "macro.wbit": wbit})
    wl = load_workload(WORKLOAD)
    mapped = [la for la in wl.layers if la.mapped]
    se = sr = 0.0
    hist = np.zeros(1, dtype=np.int64)
    clipped = conv = 0
    for i, la in enumerate(mapped):
        act, pw = layer_operands(la, xbit, wbit)
        bias = None if la.bias is None else np.asarray(la.bias, dtype=np.float64)
        y = apply(act, pw, bias, operand=max(xbit, wbit), stats=False)[0]
        f = float_output(la)
        se += float(((y - f) ** 2).sum())
        sr += float((f * f).sum())
        st = run_layer(arch, la, True, index=i)[0].analog
        h = np.asarray(st.column_sum_hist, dtype=np.int64)
        if h.size > hist.size:
            hist = np.pad(hist, (0, h.size - hist.size))
        hist[: h.size] += h
        clipped += st.clipped
        conv += st.conversions
    cdf = np.cumsum(hist) / hist.sum()
    s = np.arange(hist.size)
    adc = AnalogADC.from_arch(arch)
    return {
        "digital_sqnr_db": _db(sr, se),
        "rows_per_tile": adc.rows, "lsb_rows": adc.lsb, "conversions": conv,
        "clipped_fraction": clipped / conv,
        "column_sum_mean": float(hist @ s / hist.sum()),
        "column_sum_p50": int(np.searchsorted(cdf, 0.5)),
        "column_sum_p99": int(np.searchsorted(cdf, 0.99)),
        "column_sum_p999": int(np.searchsorted(cdf, 0.999)),
        "column_sum_max": int(hist.size - 1),
        # nonzero sums below half an LSB: read as code 0, their information is lost
        "lost_to_code_0": float(hist[1: int(math.ceil(adc.lsb / 2))].sum() / hist.sum()),
        "column_sum_hist": hist.tolist(),
    }


def _sweeps(xbit: int, wbit: int) -> dict[str, Any]:
    from pacim.sweeps import SerialExecutor, sweep

    arch = load_arch(ARCH, {"macro.xbit": xbit, "macro.wbit": wbit})
    recs = sweep(arch, GRID, WORKLOAD, executor=SerialExecutor())
    fs = sweep(arch, {"analog.full_scale": FULL_SCALES, "analog.noise_lsb": [0.0]}, WORKLOAD,
               executor=SerialExecutor())
    bad = [r for r in recs + fs if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} sweep points failed, e.g. {bad[0]['error']}")

    def sq(r: dict[str, Any]) -> float:
        v = r["sqnr_db"]
        return math.inf if v is None else float(v)

    grid = {f"{r['analog.noise_lsb']:g}": {} for r in recs}
    for r in recs:
        grid[f"{r['analog.noise_lsb']:g}"][str(r["analog.adc_bits"])] = sq(r)
    return {"grid": grid,
            "full_scale": [{"full_scale": r["analog.full_scale"], "sqnr_db": sq(r)} for r in fs],
            "seconds_per_point": float(np.mean([r["sim_s"] for r in recs]))}


def _verdict(study: dict[str, Any], grid: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Where the ADC is at the level of digital: SQNR >= digital + MARGIN_DB."""
    need = study["digital_sqnr_db"] + MARGIN_DB
    min_bits = {noise: next((int(b) for b, v in sorted(row.items(), key=lambda kv: int(kv[0]))
                             if v >= need), None) for noise, row in grid.items()}
    ok8 = [float(noise) for noise, row in grid.items() if row["8"] >= need]
    return {"needed_sqnr_db": need, "min_adc_bits_by_noise": min_bits,
            "max_noise_lsb_at_8_bits": max(ok8) if ok8 else None}


def run(quick: bool = False) -> BenchResult:
    """Speed always; the sweeps and the data study in the full run."""
    res = BenchResult("analog_bpbs")
    sp = _speed(quick)
    res.figures.update({f"speed.{k}": v for k, v in sp.items()})
    res.checks = [
        Check("W4A4 analog conv (shipped ADC, with noise) / float32 GEMM", sp["analog_over_gemm"],
              "<=", GOAL),
        Check("W4A4 analog conv GMAC/s over ASiM's CPU 0.9", sp["speedup_vs_asim_cpu"], ">=", 1.0),
    ]
    if quick:
        return res
    for xbit, wbit in PRECISIONS:
        tag = f"w{wbit}a{xbit}"
        study = _data_study(xbit, wbit)
        sw = _sweeps(xbit, wbit)
        res.figures[f"{tag}.study"] = study
        res.figures[f"{tag}.sweep"] = sw
        res.figures[f"{tag}.verdict"] = _verdict(study, sw["grid"])
        res.checks.append(Check(f"{tag}: SQNR at 8 bits, noise 0 >= at 4 bits",
                                sw["grid"]["0"]["8"] - sw["grid"]["0"]["4"], ">=", 0.0))
    return res


def figure(results: dict[str, Any], path: Path) -> Path | None:
    """docs/analog_sweep.png from a full run's figures (None when they are absent)."""
    figs = results.get("analog_bpbs", {}).get("figures", {})
    tags = [f"w{w}a{x}" for x, w in PRECISIONS if f"w{w}a{x}.sweep" in figs]
    if not tags:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.5, 4.2 * math.ceil((len(tags) + 2) / 2)))
    axes = fig.subplots(math.ceil((len(tags) + 2) / 2), 2).ravel()
    for ax, tag in zip(axes, tags, strict=False):
        st, sw = figs[f"{tag}.study"], figs[f"{tag}.sweep"]
        for noise, row in sw["grid"].items():
            bits = sorted(int(b) for b in row)
            ax.plot(bits, [min(row[str(b)], 80.0) for b in bits], "o-",
                    label=f"noise {noise} LSB")
        d = st["digital_sqnr_db"]
        ax.axhline(d + MARGIN_DB, color="k", ls="--", lw=1,
                   label=f"digital quantization {d:.1f} dB + {MARGIN_DB:g}")
        ax.set_xticks(bits)
        ax.set_xlabel("ADC bits (full scale = 768 rows)")
        ax.set_ylabel("output SQNR vs exact integer (dB)")
        ax.set_title(f"{WORKLOAD} {tag.upper()} on {ARCH}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-2]
    for tag in tags:
        rows = figs[f"{tag}.sweep"]["full_scale"]
        line = ax.semilogx([255 / 768 if r["full_scale"] is None else r["full_scale"]
                            for r in rows], [min(r["sqnr_db"], 80.0) for r in rows], "o-",
                           label=f"{tag.upper()} (80 = exact)")
        ax.axhline(figs[f"{tag}.study"]["digital_sqnr_db"] + MARGIN_DB, ls="--", lw=1,
                   color=line[0].get_color())
    ax.axvline(255 / 768, color="g", ls=":", label="one code per row (FS = 255 rows)")
    ax.set_xlabel("analog.full_scale (FS / 768 rows), 8 bits, no noise")
    ax.set_ylabel("output SQNR vs exact integer (dB)")
    ax.set_title("clipping against resolution (dashed: digital + 10 dB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[-1]
    for tag in tags:
        st = figs[f"{tag}.study"]
        h = np.asarray(st["column_sum_hist"], dtype=np.float64)
        ax.semilogy(np.arange(h.size), np.maximum(h / h.sum(), 1e-9), label=(
            f"{tag.upper()}: p99.9 {st['column_sum_p999']}, max {st['column_sum_max']}"))
    lsb = figs[f"{tags[0]}.study"]["lsb_rows"]
    ax.axvline(lsb, color="r", ls=":", label=f"8-b LSB at FS = 768 rows: {lsb:.2f} rows")
    ax.axvline(255, color="g", ls=":", label="255: top code at one code per row")
    ax.set_ylim(1e-7, 1)
    ax.set_xlabel("column sum s (rows of the 768-row tile with w_i x_j = 1)")
    ax.set_ylabel("share of conversions")
    ax.set_title("column sums of real data, all layers")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def results_md(results: dict[str, Any]) -> list[str]:
    """The analog section of docs/RESULTS.md (empty when the benchmark did not run)."""
    figs = results.get("analog_bpbs", {}).get("figures", {})
    if not figs:
        return []
    out = ["", "## Analog BP/BS (Jia et al.'s array through its ADC)", "",
           f"Speed: {figs['speed.layer']}: {figs['speed.analog_gmac_per_s']:.2f} GMAC/s with the "
           f"shipped ADC ({figs['speed.speedup_vs_asim_cpu']:.1f}x ASiM's {ASIM_GMACS} GMAC/s on "
           f"an i9), {figs['speed.analog_over_gemm']:.1f}x one float32 GEMM (goal <= "
           f"{GOAL:g}x; noise-free {figs['speed.noise_free_over_gemm']:.1f}x, with ADC "
           f"statistics {figs['speed.with_stats_over_gemm']:.1f}x).", ""]
    for x, w in PRECISIONS:
        tag = f"w{w}a{x}"
        if f"{tag}.sweep" not in figs:
            continue
        st, sw, vd = figs[f"{tag}.study"], figs[f"{tag}.sweep"], figs[f"{tag}.verdict"]
        bits = sorted(int(b) for b in next(iter(sw["grid"].values())))
        out += [f"### {WORKLOAD} {tag.upper()} on {ARCH} (768 rows per tile, full scale 768)",
                "",
                f"Digital quantization (exact integer macro vs float): "
                f"{st['digital_sqnr_db']:.1f} dB; \"at the level of digital\" here means the "
                f"ADC's SQNR >= {vd['needed_sqnr_db']:.1f} dB (error power <= 10% of the "
                f"quantization's). Column sums over all layers: mean "
                f"{st['column_sum_mean']:.1f}, p99 {st['column_sum_p99']}, p99.9 "
                f"{st['column_sum_p999']}, max {st['column_sum_max']} of 768 rows; "
                f"{100 * st['lost_to_code_0']:.0f}% are nonzero but below half an 8-b LSB "
                f"({st['lsb_rows']:.2f} rows): they convert to code 0.", "",
                "| noise (LSB) | " + " | ".join(f"{b} b" for b in bits) + " |",
                "|---|" + "---|" * len(bits)]
        for noise, row in sw["grid"].items():
            out.append(f"| {noise} | " + " | ".join(
                "exact" if math.isinf(row[str(b)]) else f"{row[str(b)]:.1f}" for b in bits) + " |")
        fs = ", ".join(
            f"{'0.332 (1 code/row)' if r['full_scale'] is None else format(r['full_scale'], 'g')}: "
            f"{'exact' if math.isinf(r['sqnr_db']) else format(r['sqnr_db'], '.1f')}"
            for r in sw["full_scale"])
        m8 = vd["max_noise_lsb_at_8_bits"]
        out += ["", f"8 bits, noise 0, by analog.full_scale (dB): {fs}. The 8-b ADC is at the "
                f"level of digital up to noise {m8:g} LSB." if m8 is not None else
                f"8 bits, noise 0, by analog.full_scale (dB): {fs}. At full scale 768 the 8-b "
                "ADC is not at the level of digital at any noise in the grid.", ""]
    return out
