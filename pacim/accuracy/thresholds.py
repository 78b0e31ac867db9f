"""`pacim calibrate-thresholds`: choose PACiM's dynamic thresholds (t0, t1, t2) on held-out images.

The authors hard-code (7000, 10000, 13000). Here the thresholds are the arch's, scaled by one
factor s (their ratios kept), and s is chosen on calibration images that are not test images
(by default the training images the model never saw, from its metadata):

1. one exact-mode pass records every PAC layer's input; its speculation values E predict the
   mean digital cycles of any s, which places the curve's points evenly between 16 and 10;
2. each point runs the network through PAC with dynamic configuration: top-1, and the mean
   digital cycles measured from that run's own layer inputs, image by image, per vector-tile
   over the PAC layers as `pacim simulate` counts them (tiles from the arch's mapping). (simulate
   itself runs each layer on the float network's input, quantized over the whole batch, so its
   mean can differ from the chip's by a few tenths of a cycle);
3. ``target_cycles``: the s whose mean cycles is nearest the target from below, refined by
   bisection; ``max_drop``: the fewest cycles whose top-1 is within max_drop points of float.
"""

from __future__ import annotations

from typing import Any

import click
import numpy as np

from ..arch import Arch
from ..errors import PacimError

CURVE_CYCLES = tuple(np.round(np.arange(15.5, 10.0, -0.5), 2))  # placement of the curve's points
_REFINE_STEPS = 4


def layer_weights(arch: Arch, net: Any, x1: np.ndarray) -> dict[str, tuple[int, int]]:
    """PAC layer name -> (vector-tiles per vector, dot-product length N) of the arch's mapping."""
    from ..sched import layer_is_exact, map_layer, precision

    out = {}
    for i, la in enumerate(net.workload(x1, data=False).layers):
        if la.kind == "conv2d" and not layer_is_exact(arch, la, first=i == 0):
            out[la.name] = (map_layer(arch, la, precision(arch, False)).tiles, la.n)
    return out


def speculation_values(net: Any, rec: dict[str, np.ndarray], xbit: int) -> dict[str, np.ndarray]:
    """E of every output position of every recorded conv input (per-image quantization, the
    executor's macro operands)."""
    from ..macro.core import speculation
    from ..macro.operands import quantize_activations

    out = {}
    for name, x in rec.items():
        la = net.layers[name]
        if la.kind != "conv2d":
            continue
        act = quantize_activations(x, xbit, per="sample", kernel=tuple(la.weight.shape[2:]),
                                   stride=la.stride, pads=la.conv_pads(x.shape[2], x.shape[3]))
        out[name] = speculation(act.window_counts(), la.weight[0].size)
    return out


def mean_cycles(e: dict[str, np.ndarray], weights: dict[str, tuple[int, int]],
                thresholds: tuple[float, float, float], extra: tuple[int, int] = (0, 0)
                ) -> float:
    """Mean digital cycles per vector-tile; extra = (tile-weighted rows, cycles) of the PAC
    layers outside the conv speculation (e.g. the FC at 16 cycles)."""
    from ..macro.core import dynamic_levels

    cyc_by_level = np.array([16, 15, 13, 10], dtype=np.float64)
    num, den = float(extra[1]), float(extra[0])
    for name, (tiles, _) in weights.items():
        lv = dynamic_levels(e[name], thresholds)
        num += tiles * float(cyc_by_level[lv].sum())
        den += tiles * lv.size
    return num / den if den else 16.0


def fc_rows_cycles(arch: Arch, net: Any, x1: np.ndarray, images: int) -> tuple[int, int]:
    """(tile-weighted rows, cycles) of PAC linear layers: static, 16 cycles at operand 4."""
    from ..sched import map_layer, precision

    rows = cyc = 0
    for la in net.workload(x1, data=False).layers:
        if la.kind == "linear":
            t = map_layer(arch, la, precision(arch, False)).tiles
            rows += t * images
            cyc += t * images * arch.operand ** 2
    return rows, cyc


def _scaled(base: tuple[float, float, float], s: float) -> tuple[float, float, float]:
    return tuple(float(round(s * b)) for b in base)  # type: ignore[return-value]


def _scale_for(e: dict[str, np.ndarray], w: dict[str, tuple[int, int]], base: tuple,
               target: float, extra: tuple[int, int]) -> float:
    """Bisection (in log s) for the scale whose predicted mean cycles is `target`."""
    lo, hi = -12.0, 6.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if mean_cycles(e, w, _scaled(base, float(np.exp(mid))), extra) > target:
            lo = mid
        else:
            hi = mid
    return float(np.exp((lo + hi) / 2))


def calibrate(net: Any, x: np.ndarray, y: np.ndarray, arch: Arch, *,
              target_cycles: float | None = None, max_drop: float | None = None,
              batch: int = 100, progress: Any = None) -> dict[str, Any]:
    """The accuracy vs mean-digital-cycles curve on (x, y) and the chosen thresholds."""
    from ..workloads.onnx import MacroConfig

    if (target_cycles is None) == (max_drop is None):
        raise PacimError("give exactly one of --target-cycles or --max-drop")
    if target_cycles is not None and not 10.0 <= target_cycles <= 16.0:
        raise PacimError(f"--target-cycles must be in 10..16 (the dynamic levels' cycles), "
                         f"got {target_cycles}")
    if max_drop is not None and max_drop < 0:
        raise PacimError(f"--max-drop must be >= 0 points, got {max_drop}")
    base = arch.dynamic_thresholds
    if base is None:
        raise PacimError(f"arch {arch.name}: dynamic configuration is off (pac.dynamic: null); "
                         "calibrating thresholds needs it on")
    cfg0 = MacroConfig.from_arch(arch)
    n = x.shape[0]
    w = layer_weights(arch, net, x[:1])
    extra = fc_rows_cycles(arch, net, x[:1], n)

    def run(mode: str, cfg: Any, record: bool = False) -> tuple[float, dict[str, np.ndarray]]:
        right, e_all = 0, {}
        for i in range(0, n, batch):
            rec: dict[str, np.ndarray] | None = {} if record else None
            out = net.run(x[i:i + batch], mode, config=cfg, record=rec)
            right += int((out.reshape(out.shape[0], -1).argmax(1) == y[i:i + batch]).sum())
            if rec is not None:
                for k, v in speculation_values(net, {k: rec[k] for k in w}, cfg0.xbit).items():
                    e_all.setdefault(k, []).append(v)
        return right / n, {k: np.concatenate(v) for k, v in e_all.items()}

    def point(s: float) -> dict[str, Any]:
        t = _scaled(base, s)
        cfg = MacroConfig(cfg0.xbit, cfg0.wbit, cfg0.operand, cfg0.approx, t, True,
                          cfg0.first_layer_exact)
        top1, e = run("pac", cfg, record=True)
        p = {"scale": s, "thresholds": list(t), "top1": top1,
             "mean_cycles": mean_cycles(e, w, t, extra)}
        if progress is not None:
            progress(p)
        return p

    top_float, _ = run("float", None)
    top_exact, e_exact = run("exact", cfg0, record=True)
    static = MacroConfig(cfg0.xbit, cfg0.wbit, cfg0.operand, cfg0.approx, None, True,
                         cfg0.first_layer_exact)
    top_static, _ = run("pac", static)
    curve = [point(_scale_for(e_exact, w, base, c, extra)) for c in CURVE_CYCLES]
    curve.append(point(1.0))  # the arch's own thresholds

    def drop(p: dict[str, Any]) -> float:
        return 100 * (top_float - p["top1"])

    if target_cycles is not None:
        ok = [p for p in curve if p["mean_cycles"] <= target_cycles]
        above = [p for p in curve if p["mean_cycles"] > target_cycles]
        lo = min(ok, key=lambda p: p["scale"]) if ok else None  # nearest from below
        hi = max(above, key=lambda p: p["scale"]) if above else None
        for _ in range(_REFINE_STEPS if lo is not None and hi is not None else 0):
            mid = point(float(np.sqrt(lo["scale"] * hi["scale"])))
            curve.append(mid)
            if mid["mean_cycles"] <= target_cycles:
                lo = mid
            else:
                hi = mid
        chosen = lo
        why = f"mean digital cycles <= {target_cycles:g}"
    else:
        ok = [p for p in curve if drop(p) <= max_drop]
        chosen = min(ok, key=lambda p: p["mean_cycles"]) if ok else None
        if chosen is not None:
            worse = [p for p in curve if p["mean_cycles"] < chosen["mean_cycles"]]
            nxt = max(worse, key=lambda p: p["mean_cycles"]) if worse else None
            for _ in range(_REFINE_STEPS if nxt is not None else 0):
                mid = point(float(np.sqrt(chosen["scale"] * nxt["scale"])))
                curve.append(mid)
                if drop(mid) <= max_drop and mid["mean_cycles"] < chosen["mean_cycles"]:
                    chosen = mid
                else:
                    nxt = mid
        why = f"top-1 within {max_drop:g} points of float"
    curve.sort(key=lambda p: -p["mean_cycles"])
    return {"images": n, "float_top1": top_float, "exact_top1": top_exact,
            "pac_static_top1": top_static, "base_thresholds": list(base), "curve": curve,
            "chosen": chosen, "criterion": why}


def plot_curve(res: dict[str, Any], path: str) -> None:
    """Top-1 vs mean digital cycles, with float, exact and static PAC as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["mean_cycles"] for p in c], [100 * p["top1"] for p in c], "o-",
            label="PAC, dynamic (scaled thresholds)")
    for key, style, label in (("float_top1", "k--", "float"), ("exact_top1", "g:", "W8A8 exact"),
                              ("pac_static_top1", "r-.", "PAC static (16 cycles)")):
        ax.axhline(100 * res[key], color=style[0], linestyle=style[1:], label=label)
    if res["chosen"] is not None:
        ch = res["chosen"]
        ax.plot([ch["mean_cycles"]], [100 * ch["top1"]], "r*", ms=14,
                label=f"chosen {tuple(int(t) for t in ch['thresholds'])}")
    ax.set_xlabel("mean digital bit-serial cycles per vector-tile (PAC layers)")
    ax.set_ylabel(f"top-1 on {res['images']} calibration images (%)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def calibration_slice(model: Any, data: str | None, split: str | None, start: int | None,
                       images: int) -> tuple[str, str, int, int]:
    """(data, split, start, stop): by default the held-out training images of the metadata."""
    import re

    from .metadata import read_metadata

    md = read_metadata(model)
    hold = re.fullmatch(r"train\[(\d+):(\d+)\]", md.get("pacim.holdout", ""))
    meta_data = md.get("pacim.dataset")
    if data is None:
        if meta_data is None:
            raise PacimError(f"{model}: no dataset in its metadata; give --data")
        data = meta_data
    split = split or "train"
    if start is None and hold and data == meta_data and split == "train":
        a, b = int(hold.group(1)), int(hold.group(2))
        return data, split, a, min(b, a + images)
    if start is None:
        return data, split, -images, 0  # the split's last images
    return data, split, start, start + images


@click.command("calibrate-thresholds")
@click.option("--model", "model_path", required=True, metavar="NET.onnx|NAME")
@click.option("--data", "data_path", default=None, metavar="NAME|PATH",
              help="Calibration dataset (default: the model's, from its metadata).")
@click.option("--split", type=click.Choice(["train", "test"]), default=None,
              help="Default train: calibration images are not test images.")
@click.option("--start", type=int, default=None,
              help="First calibration image (default: the model's held-out training images, "
                   "else the split's last --images).")
@click.option("--images", type=int, default=1000, show_default=True)
@click.option("--arch", "arch_path", default="pacim_65nm", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--target-cycles", type=float, default=None,
              help="Mean digital cycles to reach (e.g. 12.2: the paper's -81%).")
@click.option("--max-drop", type=float, default=None,
              help="Largest top-1 loss against float, in points.")
@click.option("--batch", type=int, default=100, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
def calibrate_command(model_path: str, data_path: str | None, split: str | None,
                      start: int | None, images: int, arch_path: str, sets: tuple[str, ...],
                      target_cycles: float | None, max_drop: float | None, batch: int,
                      plot_path: str | None, json_path: str | None) -> None:
    """Choose the dynamic thresholds (t0, t1, t2) on held-out images; print (and plot) the
    accuracy vs mean-digital-cycles curve.

    \b
    Examples:
      pacim calibrate-thresholds --model fashion-resnet18 --target-cycles 12.2
      pacim calibrate-thresholds --model net.onnx --data cifar-10-batches-py --max-drop 0.5 \\
          --plot curve.png
    """
    import json

    from ..arch import load_arch, parse_assignment
    from ..report import check_writable, json_safe, write_text
    from .evaluate import open_model_and_data
    from .metadata import resolve_model

    for p in (plot_path, json_path):
        check_writable(p)
    if images < 1 or batch < 1:
        raise PacimError("--images and --batch must be >= 1")
    arch = load_arch(arch_path, dict(parse_assignment(s) for s in sets))
    path = resolve_model(model_path)
    data, split, a, b = calibration_slice(path, data_path, split, start, images)
    net, ds, norm, _ = open_model_and_data(path, data, split=split)
    if a < 0:
        a, b = max(0, len(ds) + a), len(ds)
    if not 0 <= a < b <= len(ds):
        raise PacimError(f"{ds.name}: images [{a}, {b}) are not within its {len(ds)} images")
    x, y = ds.get(a, b, norm)
    x = net.check_input(x)
    click.echo(f"calibrating on {ds.name}[{a}:{b}] ({b - a} images, split {split}), arch "
               f"{arch.name}, thresholds {arch.dynamic_thresholds} x scale")
    res = calibrate(net, x, y, arch, target_cycles=target_cycles, max_drop=max_drop,
                    batch=batch, progress=lambda p: click.echo(
                        f"  thresholds {tuple(int(t) for t in p['thresholds'])}: mean cycles "
                        f"{p['mean_cycles']:.2f}, top-1 {100 * p['top1']:.2f}%", err=True))
    res.update(model=str(model_path), data=f"{ds.name}[{a}:{b}]", arch=arch.name)
    click.echo(curve_text(res))
    if plot_path:
        plot_curve(res, plot_path)
    if json_path:
        write_text(json_path, json.dumps(json_safe(res), indent=2) + "\n")
    if res["chosen"] is None:
        raise PacimError(f"no thresholds on the curve meet {res['criterion']}; the closest "
                         "are printed above")


def curve_text(res: dict[str, Any]) -> str:
    """The curve as a table, and the chosen thresholds."""
    fl = res["float_top1"]
    lines = [f"float {100 * fl:.2f}%  W8A8 exact {100 * res['exact_top1']:.2f}%  PAC static "
             f"(16 cycles) {100 * res['pac_static_top1']:.2f}%  on {res['images']} images",
             f"{'t0':>7}{'t1':>7}{'t2':>7}{'cycles':>8}{'top-1':>8}{'drop':>7}"]
    for p in res["curve"]:
        t = p["thresholds"]
        lines.append(f"{t[0]:>7.0f}{t[1]:>7.0f}{t[2]:>7.0f}{p['mean_cycles']:>8.2f}"
                     f"{100 * p['top1']:>7.2f}%{100 * (fl - p['top1']):>7.2f}")
    ch = res["chosen"]
    if ch is not None:
        t = [int(v) for v in ch["thresholds"]]
        lines.append(f"chosen ({res['criterion']}): thresholds ({t[0]}, {t[1]}, {t[2]}), mean "
                     f"cycles {ch['mean_cycles']:.2f} (bit-serial reduction "
                     f"{100 * (1 - ch['mean_cycles'] / 64):.1f}%), top-1 {100 * ch['top1']:.2f}%")
        lines.append(f"use: --set pac.dynamic.thresholds=[{t[0]},{t[1]},{t[2]}]")
    return "\n".join(lines)
