"""Accuracy of a trained ONNX network under PAC on a labeled dataset, next to its hardware cost.

``evaluate`` runs every image through the network in each mode (float / exact / pac, see
`pacim.workloads.onnx`), reports top-1 per mode and the top-1 agreement between modes, and
simulates the first image(s) through the same pipeline as ``pacim simulate`` for the hardware
figures. The input normalization recorded in the model's metadata (`pacim.accuracy.metadata`)
is applied unless another is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Arch, load_arch
from ..errors import PacimError
from .datasets import Dataset, load_dataset
from .metadata import model_normalization, resolve_model
from .norm import Normalization

AccuracyProgress = Callable[[int, int, dict[str, float]], None]
DEFAULT_MODES: tuple[str, ...] = ("float", "exact", "pac")
# summary keys of the simulate report that the accuracy result carries
_HW_SKIP = ("layers", "arch_config", "workload_meta")


def parse_modes(text: str | Sequence[str]) -> tuple[str, ...]:
    """'float,pac' -> ('float', 'pac'), validated, order kept, duplicates dropped."""
    from ..workloads.onnx import MODES

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
    from ..pipeline import simulate

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


@dataclass(frozen=True)
class Column:
    """One way of running the network: a mode (float / exact / pac) and a macro configuration."""

    mode: str
    config: Any = None  # an Arch or a MacroConfig; None: pacim's default macro
    first_layer: str = "arch"


@dataclass
class ColumnRun:
    """Predictions of several columns over the same images, timed per column."""

    preds: dict[str, np.ndarray]
    labels: np.ndarray
    seconds: dict[str, float]
    first_batch: np.ndarray | None  # the first (normalized) batch, for the hardware report

    def top1(self) -> dict[str, float]:
        """Top-1 per column."""
        return {k: float((p == self.labels).mean()) for k, p in self.preds.items()}

    def agreement(self, a: str, b: str) -> float:
        """Share of images on which columns a and b predict the same class."""
        return float((self.preds[a] == self.preds[b]).mean())


def run_columns(net: Any, ds: Dataset, columns: dict[str, Column], *, total: int,
                batch: int = 32, norm: Normalization | None = None,
                progress: AccuracyProgress | None = None) -> ColumnRun:
    """Run the first `total` images of ds through every column, batch by batch."""
    fixed = net.input_shape[0] if net.input_shape else None
    step = int(fixed) if fixed else int(batch)  # a model exported with a fixed batch gets it
    preds: dict[str, list[np.ndarray]] = {k: [] for k in columns}
    correct = dict.fromkeys(columns, 0)
    seconds = dict.fromkeys(columns, 0.0)
    labels: list[np.ndarray] = []
    first: np.ndarray | None = None
    done = 0
    for x, y in ds.batches(step, total, norm):
        x = net.check_input(x)
        b = x.shape[0]
        if first is None:
            first = x
        if fixed and b < step:  # pad a short last batch; images are quantized one by one
            x = np.concatenate([x, np.repeat(x[-1:], step - b, axis=0)])
        if done == 0:  # load numba kernels and quantize weights outside the timings
            for c in columns.values():
                net.run(x if fixed else x[:1], c.mode, config=c.config,
                        first_layer=c.first_layer)
        for k, c in columns.items():
            t0 = time.perf_counter()
            out = net.run(x, c.mode, config=c.config, first_layer=c.first_layer,
                          image0=done)[:b]
            seconds[k] += time.perf_counter() - t0
            logits = out.reshape(b, -1)
            if y.size and int(y.max()) >= logits.shape[1]:
                raise PacimError(f"{ds.name}: label {int(y.max())} but the model outputs "
                                 f"{logits.shape[1]} classes")
            p = logits.argmax(axis=1)
            preds[k].append(p)
            correct[k] += int((p == y).sum())
        labels.append(y)
        done += b
        if progress is not None:
            progress(done, total, {k: correct[k] / done for k in columns})
    if done == 0:
        raise PacimError(f"{ds.name}: no images to evaluate")
    return ColumnRun({k: np.concatenate(v) for k, v in preds.items()}, np.concatenate(labels),
                     seconds, first)


def open_model_and_data(model: str | Path, data: str | Path | Dataset, *, split: str = "test",
                        norm: Normalization | None = None) -> tuple[Any, Dataset, Normalization,
                                                                     str]:
    """(OnnxNet, dataset, normalization, where the normalization came from).

    model: an .onnx path or a shipped model's name. The normalization is `norm` when given,
    else the one in the model's metadata, else none.
    """
    from ..workloads.onnx import OnnxNet

    path = resolve_model(model)
    net = OnnxNet.load(path)
    size, channels = _input_geometry(net.input_shape)
    ds = data if isinstance(data, Dataset) else load_dataset(data, size=size, channels=channels,
                                                             split=split)
    source = "given"
    if norm is None:
        norm = model_normalization(path)
        source = "model metadata" if norm is not None else "none"
    return net, ds, norm or Normalization(), source


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
    split: str = "test",
) -> dict[str, Any]:
    """Top-1 per mode, top-1 agreement between modes, and the hardware report of the run.

    model_path: an .onnx file or a shipped model's name (``fashion-resnet18``). arch: an Arch
    or a YAML path. norm: pixel normalization (default: the model's metadata, else none).
    first_layer: ``arch`` or a mode forced on the first macro layer. hw_images: images (from
    the start of the data) simulated for the hardware report; 0 skips it. progress(done, total,
    running top-1 per mode) is called after every batch. split: ``test`` or ``train`` for
    datasets that hold both.
    """
    from ..workloads.onnx import MacroConfig

    modes = parse_modes(modes)
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    if isinstance(batch, bool) or int(batch) < 1:
        raise PacimError(f"batch must be >= 1, got {batch}")
    if limit is not None and int(limit) < 1:
        raise PacimError(f"limit must be >= 1, got {limit}")
    net, ds, norm, norm_source = open_model_and_data(model_path, data_path, split=split,
                                                     norm=norm)
    total = len(ds) if limit is None else min(int(limit), len(ds))
    run = run_columns(net, ds, {m: Column(m, arch, first_layer) for m in modes}, total=total,
                      batch=batch, norm=norm, progress=progress)
    done = int(run.labels.size)
    agreement = {f"{a}_vs_{b}": run.agreement(a, b)
                 for a, b in (("pac", "float"), ("exact", "float"), ("pac", "exact"))
                 if a in run.preds and b in run.preds}
    cfg = MacroConfig.from_arch(arch)
    first_name = net.macro_layers[0].name
    top1 = run.top1()
    result: dict[str, Any] = {
        "model": str(model_path),
        "data": ds.name if isinstance(data_path, Dataset) else str(data_path),
        "dataset": ds.name,
        "images": done,
        "dataset_images": len(ds),
        "batch": int(net.input_shape[0]) if net.input_shape and net.input_shape[0] else batch,
        "arch": arch.name,
        "macro": cfg.to_dict(),
        "first_layer": {m: net.layer_modes(m, first_layer, cfg)[first_name] for m in modes},
        "normalization": norm.to_dict(),
        "normalization_source": norm_source,
        "modes": list(modes),
        "top1": top1,
        "correct": {m: int((p == run.labels).sum()) for m, p in run.preds.items()},
        "agreement": agreement,
        "seconds": run.seconds,
        "images_per_s": {m: done / s if s > 0 else None for m, s in run.seconds.items()},
    }
    hw_x = run.first_batch[:hw_images] if hw_images > 0 and run.first_batch is not None else None
    result["hardware"] = _hardware(arch, net, hw_x) if hw_x is not None else None
    return result


def result_text(r: dict[str, Any]) -> str:
    """Human-readable block of an `evaluate` result."""
    from ..report import summary_text

    m = r["macro"]
    dyn = "dynamic on" if m["dynamic"] else "dynamic off"
    pac = (f"operand {m['operand']}, approx {m['approx']}, {dyn}" if m["pac_enabled"]
           else "PAC off (exact)")
    if m.get("analog"):
        a = m["analog"]
        pac = (f"analog BP/BS: pac mode = {a['adc_bits']}-b ADC over {a['rows']}-row tiles, "
               f"full scale {a['full_scale_rows']:g}, noise {a['noise_lsb']:g} LSB")
    if m.get("first_layer_bits"):
        pac += f"; first conv at {m['first_layer_bits']} b"
    lines = [
        f"model {r['model']}  data {r['dataset']} ({r['images']} of {r['dataset_images']} "
        f"images)",
        f"arch {r['arch']}: {m['xbit']}b x {m['wbit']}b, {pac}",
        "normalization: mean " + ",".join(f"{v:g}" for v in r["normalization"]["mean"])
        + " std " + ",".join(f"{v:g}" for v in r["normalization"]["std"])
        + f" ({r.get('normalization_source', 'given')})",
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
