"""Accuracy of a trained ONNX network under PAC on a labeled dataset, next to its hardware cost.

``evaluate`` runs every image through the network in each mode (float / exact / pac, see
`pacim.workloads.onnx`), reports top-1 per mode and the top-1 agreement between modes, and
simulates the first image(s) through the same pipeline as ``pacim simulate`` for the hardware
figures. ``accuracy_command`` is the ``pacim accuracy`` CLI command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from .arch import Arch, load_arch
from .datasets import Dataset, Normalization, load_dataset
from .errors import PacimError

AccuracyProgress = Callable[[int, int, dict[str, float]], None]
DEFAULT_MODES: tuple[str, ...] = ("float", "exact", "pac")
# summary keys of the simulate report that the accuracy result carries
_HW_SKIP = ("layers", "arch_config", "workload_meta")


def parse_modes(text: str | Sequence[str]) -> tuple[str, ...]:
    """'float,pac' -> ('float', 'pac'), validated, order kept, duplicates dropped."""
    from .workloads.onnx import MODES

    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for m in (s.strip().lower() for s in items):
        if not m:
            continue
        if m not in MODES:
            raise PacimError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
        if m not in out:
            out.append(m)
    if not out:
        raise PacimError("no mode given; choose from " + ", ".join(MODES))
    return tuple(out)


def _input_geometry(shape: tuple[int | None, ...]) -> tuple[tuple[int, int] | None, int | None]:
    if len(shape) == 4 and shape[2] is not None and shape[3] is not None:
        return (int(shape[2]), int(shape[3])), shape[1]
    return None, None


def _hardware(arch: Arch, net: Any, x: np.ndarray) -> dict[str, Any]:
    """Simulate the network on images x (the `pacim simulate` pipeline); its summary figures."""
    from .pipeline import simulate

    wl = net.workload(x, meta={"input": "dataset"})
    try:
        rep = simulate(arch, wl).to_dict()
    except ImportError as e:  # the scheduler / energy stages are not installed in this tree
        return {"error": f"hardware simulation unavailable: {e}"}
    hw = {k: v for k, v in rep.items() if k not in _HW_SKIP}
    n = int(x.shape[0])
    hw["images"] = n
    if isinstance(hw.get("energy_pj"), (int, float)):
        hw["energy_pj_per_image"] = hw["energy_pj"] / n
    if isinstance(hw.get("latency_s"), (int, float)):
        hw["latency_s_per_image"] = hw["latency_s"] / n
    hw["layers"] = [{k: la.get(k) for k in ("name", "kind", "macs", "exact", "cycles",
                                            "energy_pj", "digital_cycles_mean")}
                    for la in rep.get("layers", [])]
    return hw


def evaluate(
    model_path: str | Path,
    data_path: str | Path | Dataset,
    arch: Arch | str | Path,
    *,
    limit: int | None = None,
    modes: Sequence[str] = DEFAULT_MODES,
    batch: int = 32,
    norm: Normalization | None = None,
    first_layer: str = "arch",
    hw_images: int = 1,
    progress: AccuracyProgress | None = None,
) -> dict[str, Any]:
    """Top-1 per mode, top-1 agreement between modes, and the hardware report of the run.

    arch: an Arch or a YAML path. norm: pixel normalization (default none). first_layer:
    ``arch`` or a mode forced on the first macro layer. hw_images: images (from the start of
    the data) simulated for the hardware report; 0 skips it. progress(done, total, running
    top-1 per mode) is called after every batch.
    """
    from .workloads.onnx import OnnxNet

    modes = parse_modes(modes)
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    if isinstance(batch, bool) or int(batch) < 1:
        raise PacimError(f"batch must be >= 1, got {batch}")
    if limit is not None and int(limit) < 1:
        raise PacimError(f"limit must be >= 1, got {limit}")
    net = OnnxNet.load(model_path)
    size, channels = _input_geometry(net.input_shape)
    ds = data_path if isinstance(data_path, Dataset) else load_dataset(
        data_path, size=size, channels=channels)
    norm = norm or Normalization()
    total = len(ds) if limit is None else min(int(limit), len(ds))
    fixed = net.input_shape[0] if net.input_shape else None
    step = int(fixed) if fixed else int(batch)  # a model exported with a fixed batch gets it

    preds: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    correct = dict.fromkeys(modes, 0)
    seconds = dict.fromkeys(modes, 0.0)
    labels_all: list[np.ndarray] = []
    hw_x: np.ndarray | None = None
    done = 0
    for x, y in ds.batches(step, total, norm):
        x = net.check_input(x)
        if hw_x is None and hw_images > 0:
            hw_x = x[:hw_images]
        b = x.shape[0]
        if fixed and b < step:  # pad a short last batch; images are quantized one by one
            x = np.concatenate([x, np.repeat(x[-1:], step - b, axis=0)])
        if done == 0:  # load numba kernels and quantize weights outside the timings
            for m in modes:
                net.run(x if fixed else x[:1], m, config=arch, first_layer=first_layer)
        for m in modes:
            t0 = time.perf_counter()
            out = net.run(x, m, config=arch, first_layer=first_layer)[:b]
            seconds[m] += time.perf_counter() - t0
            logits = out.reshape(b, -1)
            if y.size and int(y.max()) >= logits.shape[1]:
                raise PacimError(f"{ds.name}: label {int(y.max())} but the model outputs "
                                 f"{logits.shape[1]} classes")
            p = logits.argmax(axis=1)
            preds[m].append(p)
            correct[m] += int((p == y).sum())
        labels_all.append(y)
        done += b
        if progress is not None:
            progress(done, total, {m: correct[m] / done for m in modes})
    if done == 0:
        raise PacimError(f"{ds.name}: no images to evaluate")

    pred = {m: np.concatenate(v) for m, v in preds.items()}
    agreement = {f"{a}_vs_{b}": float((pred[a] == pred[b]).mean())
                 for a, b in (("pac", "float"), ("exact", "float"), ("pac", "exact"))
                 if a in pred and b in pred}
    from .workloads.onnx import MacroConfig

    cfg = MacroConfig.from_arch(arch)
    first_name = net.macro_layers[0].name
    result: dict[str, Any] = {
        "model": str(model_path),
        "data": ds.name if isinstance(data_path, Dataset) else str(data_path),
        "dataset": ds.name,
        "images": done,
        "dataset_images": len(ds),
        "batch": step,
        "arch": arch.name,
        "macro": cfg.to_dict(),
        "first_layer": {m: net.layer_modes(m, first_layer, cfg)[first_name] for m in modes},
        "normalization": norm.to_dict(),
        "modes": list(modes),
        "top1": {m: correct[m] / done for m in modes},
        "correct": correct,
        "agreement": agreement,
        "seconds": seconds,
        "images_per_s": {m: done / s if s > 0 else None for m, s in seconds.items()},
    }
    result["hardware"] = _hardware(arch, net, hw_x) if hw_x is not None else None
    return result


def result_text(r: dict[str, Any]) -> str:
    """Human-readable block of an `evaluate` result."""
    from .report import summary_text

    m = r["macro"]
    dyn = "dynamic on" if m["dynamic"] else "dynamic off"
    pac = (f"operand {m['operand']}, approx {m['approx']}, {dyn}" if m["pac_enabled"]
           else "PAC off (exact)")
    lines = [
        f"model {r['model']}  data {r['dataset']} ({r['images']} of {r['dataset_images']} "
        f"images)",
        f"arch {r['arch']}: {m['xbit']}b x {m['wbit']}b, {pac}",
        f"{'mode':<7}{'top-1':>9}{'images/s':>11}  first layer",
    ]
    for mode in r["modes"]:
        ips = r["images_per_s"].get(mode)
        lines.append(f"{mode:<7}{100 * r['top1'][mode]:>8.2f}%"
                     f"{'' if ips is None else f'{ips:.1f}':>11}  {r['first_layer'][mode]}")
    if r["agreement"]:
        lines.append("top-1 agreement: " + "  ".join(
            f"{k.replace('_vs_', ' vs ')} {100 * v:.2f}%" for k, v in r["agreement"].items()))
    hw = r.get("hardware")
    if hw:
        if "error" in hw:
            lines.append(f"hardware: {hw['error']}")
        else:
            n = hw["images"]
            lines.append(f"hardware (first {n} image{'s' if n > 1 else ''}, the simulate "
                         "pipeline):")
            lines.append(summary_text(hw))
            if "energy_pj_per_image" in hw:
                lines.append(f"per image: energy {hw['energy_pj_per_image'] / 1e6:.4g} uJ"
                             + (f"  latency {hw['latency_s_per_image'] * 1e3:.4g} ms"
                                if "latency_s_per_image" in hw else ""))
    return "\n".join(lines)


@click.command("accuracy")
@click.option("--model", "model_path", required=True, metavar="NET.onnx",
              help="Trained network in ONNX (needs the onnx extra).")
@click.option("--data", "data_path", required=True, metavar="DIR_OR_FILE",
              help="CIFAR batch file or directory, ImageFolder tree, or .npz.")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images only.")
@click.option("--modes", default="float,exact,pac", show_default=True,
              help="Comma-separated modes: float, exact, pac.")
@click.option("--batch", type=int, default=32, show_default=True, help="Images per batch.")
@click.option("--mean", default=None, metavar="R,G,B", help="Per-channel mean (after /255).")
@click.option("--std", default=None, metavar="R,G,B", help="Per-channel std (after /255).")
@click.option("--norm", default=None, metavar="PRESET|FILE",
              help="Normalization preset (cifar10, cifar100, imagenet, none) or a YAML file "
                   "with mean and std.")
@click.option("--first-layer", type=click.Choice(["arch", "float", "exact", "pac"]),
              default="arch", show_default=True,
              help="Mode of the first Conv/Gemm: arch follows pac.first_layer_exact.")
@click.option("--hw-images", type=int, default=1, show_default=True,
              help="Images simulated for the hardware report (0: none).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override an arch field, e.g. --set pac.operand=3 (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the result as JSON.")
def accuracy_command(model_path: str, data_path: str, arch_path: str, limit: int | None,
                     modes: str, batch: int, mean: str | None, std: str | None,
                     norm: str | None, first_layer: str, hw_images: int, sets: tuple[str, ...],
                     json_path: str | None) -> None:
    """Top-1 accuracy of an ONNX network per mode (float, exact, PAC) and its hardware cost.

    \b
    Examples:
      pacim accuracy --model resnet18.onnx --data cifar-10-batches-py \\
          --arch arch_configs/pacim_65nm.yaml --norm cifar10 --limit 1000
      pacim accuracy --model net.onnx --data images/ --arch pacim_65nm \\
          --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --modes float,pac --json acc.json
    """
    from .arch import parse_assignment
    from .progress import Progress
    from .report import check_writable, json_safe, write_text

    arch = load_arch(arch_path, dict(parse_assignment(s) for s in sets))
    check_writable(json_path)
    normalization = Normalization.parse(mean, std, norm)
    prog = Progress("accuracy")

    def show(done: int, total: int, running: dict[str, float]) -> None:
        prog.extra = " ".join(f"{m} {100 * a:.1f}%" for m, a in running.items()) + " "
        prog(done, total, "")

    try:
        res = evaluate(model_path, data_path, arch, limit=limit, modes=parse_modes(modes),
                       batch=batch, norm=normalization, first_layer=first_layer,
                       hw_images=hw_images, progress=show)
    finally:
        prog.close()
    click.echo(result_text(res))
    if json_path:
        write_text(json_path, json.dumps(json_safe(res), indent=2) + "\n")
