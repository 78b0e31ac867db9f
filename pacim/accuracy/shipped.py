"""The shipped trained model as a built-in workload: ``fashion-resnet18`` on real test images.

`pacim simulate --workload fashion-resnet18` feeds the first `batch` Fashion-MNIST test images
(from `start`), normalized as the model's metadata says, through the trained ResNet-18; every
layer carries the input it really receives. Shapes only (``--no-data``) needs no dataset.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..workloads.ir import Workload
from ..workloads.options import validate_options

MODEL = "fashion-resnet18"


class FashionOptions(BaseModel):
    """Options of the fashion-resnet18 workload."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batch: int = Field(1, ge=1, le=10000)
    start: int = Field(0, ge=0, le=9999)


def fashion_workload(name: str = MODEL, *, data: bool = True, seed: int = 0,
                     **options: Any) -> Workload:
    """The shipped model on test images [start, start + batch) (seed: unused, real data)."""
    from ..errors import PacimError
    from ..workloads.onnx import OnnxNet, from_onnx
    from .datasets import load_dataset
    from .metadata import model_normalization, resolve_model

    opt = validate_options(FashionOptions, options, f"workload {name}")
    path = resolve_model(MODEL)
    if not data:
        return from_onnx(path, data=False, batch=opt.batch, name=name)
    net = OnnxNet.load(path)
    ds = load_dataset("fashion-mnist", split="test")
    stop = opt.start + opt.batch
    if stop > len(ds):
        raise PacimError(f"workload {name}: images [{opt.start}, {stop}) exceed the "
                         f"{len(ds)} test images")
    norm = model_normalization(path)
    x, y = ds.get(opt.start, stop, norm)
    meta = {"source": "builtin", "builtin": name, "model": str(path),
            "input": f"Fashion-MNIST test images [{opt.start}:{stop}] (real data), normalized "
                     f"with the model's mean {list(norm.mean) if norm else None} and std "
                     f"{list(norm.std) if norm else None}",
            "labels": ",".join(str(int(v)) for v in y[:32]), "batch": opt.batch}
    return net.workload(net.check_input(x), name=name, meta=meta)
