"""Will a simulation with data fit in memory? An estimate from the shapes, before any tensor exists.

`estimate(shapes)` adds up, from a shapes-only workload (data=False):
- tensors: every mapped layer's float weight, bias and input, at the builder's float width;
- build: the builder's peak work memory on top (the ResNet-18 float64 forward: a layer's padded
  input, im2col matrix, output and batch-norm temporaries; `llm-layer`: the heads x T x T
  attention scores and the MLP activations; random YAML layers: one input's ReLU copy);
- operands: what `pacim.simulate` keeps per layer while the workload lives (the macro's
  prepared operands, pacim/macro/operands.py): activation codes, plane and window counts,
  bit-packed planes; weight codes, the GEMM's float32 weight matrices, packed weight planes;
- work: one layer call at a time (pacim/macro/engine.py): the digital GEMM output, the outputs
  and the exact reference outputs (float64), the low-rank factors, two GEMM row blocks of
  ROW_BLOCK_ELEMS float32 each.
Peak = tensors + max(build, operands + work). `check(estimate, what)` compares it with the memory
available to this process (`available_bytes`: /proc/meminfo MemAvailable, and RLIMIT_AS less
what the process already maps; PACIM_MEMORY_LIMIT overrides, e.g. "512M") and refuses with one
line naming the parts. Over-estimates rather than under: a refusal says "about".
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from math import prod

from ..errors import PacimError
from ..macro.engine import ROW_BLOCK_ELEMS
from .ir import Layer, Workload

ENV = "PACIM_MEMORY_LIMIT"
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Float width of each builder's tensors: the ResNet-18 forward and random YAML layers are float64
# (pacim.workloads.rand.normal's default), llm-layer float32, ONNX graphs float32.
FLOAT_BYTES = {"resnet18": 8, "resnet18-cifar": 8, "llm-layer": 4, "yaml": 8, "onnx": 4}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a simulation with data needs, by part (see the module docstring)."""

    tensors: int
    build: int
    operands: int
    work: int

    @property
    def total(self) -> int:
        """Peak bytes: the tensors, plus the larger of the build and the simulation."""
        return self.tensors + max(self.build, self.operands + self.work)

    def building(self) -> MemoryEstimate:
        """Only what building the workload's data takes (no simulation)."""
        return MemoryEstimate(self.tensors, self.build, 0, 0)

    def describe(self) -> str:
        """'tensors 1.2 GB, build 3 GB, operands 0.4 GB, work 2 GB'."""
        return ", ".join(f"{k} {fmt_bytes(v)}" for k, v in (
            ("tensors", self.tensors), ("build", self.build), ("operands", self.operands),
            ("work", self.work)))


def fmt_bytes(n: float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1 (e.g. '1.5 GiB')."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def _words(c: int) -> int:
    return (c + 63) // 64


def _geometry(la: Layer) -> tuple[int, int, int]:
    """(padded input pixels, channels per pixel, kernel taps) as the macro sees the input."""
    if la.kind == "conv2d" and la.in_shape is not None:
        b, c, h, w = la.in_shape
        p = la.padding
        return b * (h + 2 * p) * (w + 2 * p), c, la.kernel[0] * la.kernel[1]
    return la.vectors, la.n, 1


def layer_operands(la: Layer, xbit: int = 8, wbit: int = 8) -> int:
    """Bytes of one layer's prepared operands (kept while the workload lives)."""
    npix, c, khw = _geometry(la)
    xb, wb = (xbit + 7) // 8, (wbit + 7) // 8
    act = npix * c * xb  # padded NHWC codes
    act += npix * xbit * 8 + la.vectors * xbit * 8  # pixel and window plane counts (int64)
    act += npix * xbit * _words(c) * 8  # bit-packed planes (dynamic configuration)
    wn = la.k * la.n
    weight = wn * wb + la.k * wbit * 8  # codes, plane counts
    weight += 2 * wn * 8  # GEMM matrices: PAC MSB codes and the exact reference (2 digits)
    weight += la.k * khw * _words(c) * 8 * wbit  # bit-packed planes
    return act + weight


def layer_work(la: Layer, xbit: int = 8) -> int:
    """Bytes of one layer call's outputs and buffers (one layer at a time)."""
    p, k = la.vectors, la.k
    return 4 * p * k * 8 + p * (xbit * 8 + 16 * 8) + 2 * ROW_BLOCK_ELEMS * 4 * 2


def _builder(wl: Workload) -> str:
    meta = wl.meta
    return str(meta.get("builtin") or meta.get("source") or "")


def _build_work(wl: Workload, fb: int) -> int:
    """Peak work memory of the builder's forward pass (on top of the tensors it keeps)."""
    kind = _builder(wl)
    mapped = [la for la in wl.layers if la.mapped]
    if kind.startswith("resnet18"):  # float64 im2col + GEMM per conv, BN from the output
        return max((_geometry(la)[0] * _geometry(la)[1] + la.n * la.vectors + 3 * la.k
                    * la.vectors) * 8 for la in mapped)
    if kind == "llm-layer":
        o = wl.meta.get("options", {})
        t, heads = int(o.get("tokens", 1)), int(o.get("heads", 1))
        hidden, ffn = int(o.get("hidden", 1)), int(o.get("ffn", 1))
        scores = 3 * heads * t * t * fb + 2 * t * t  # scores, mask, exp; the bool masks
        mlp = 3 * t * ffn * fb + 6 * t * hidden * fb
        return scores + mlp
    if kind == "yaml":  # one layer's input drawn, then its ReLU copy
        return max(prod(la.in_shape or (la.vectors, la.n)) * fb for la in mapped)
    return max(la.vectors * la.k * fb for la in mapped)  # a forward: one output at a time


def estimate(shapes: Workload, xbit: int = 8, wbit: int = 8) -> MemoryEstimate:
    """Bytes simulating `shapes` with data would need (shapes: the workload built data=False)."""
    mapped = [la for la in shapes.layers if la.mapped]
    if not mapped:
        return MemoryEstimate(0, 0, 0, 0)
    fb = FLOAT_BYTES.get(_builder(shapes), 8)
    tensors = sum((prod(la.in_shape or (la.vectors, la.n)) + la.k * la.n + la.k) * fb
                  for la in mapped)
    return MemoryEstimate(
        tensors=tensors,
        build=_build_work(shapes, fb),
        operands=sum(layer_operands(la, xbit, wbit) for la in mapped),
        work=max(layer_work(la, xbit) for la in mapped),
    )


def _parse(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SUFFIX else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise PacimError(f"{ENV}={text!r}: not a size (bytes, or e.g. 512M, 8G)") from None
    if not value > 0 or value == float("inf"):
        raise PacimError(f"{ENV}={text!r}: must be a positive size")
    return int(value * _SUFFIX[unit])


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (VmSize), 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_bytes() -> int:
    """Memory this process may still use: PACIM_MEMORY_LIMIT if set, else the smaller of the
    system's MemAvailable and the address-space limit (RLIMIT_AS) less what is mapped."""
    env = os.environ.get(ENV)
    if env:
        return _parse(env)
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62  # unknown: do not refuse
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        avail = min(avail, max(0, soft - _mapped_bytes()))
    return avail


def check(est: MemoryEstimate, what: str, *, built: bool = False,
          budget: int | None = None) -> None:
    """PacimError (one line) when `est` does not fit in the available memory. built: the
    workload's tensors exist already (only the simulation's operands and work are still to
    come); budget: bytes available (default `available_bytes()`)."""
    have = available_bytes() if budget is None else budget
    need = est.operands + est.work if built else est.total
    if need > have:
        raise PacimError(
            f"{what} with data needs about {fmt_bytes(need)} more ({est.describe()}), but "
            f"{fmt_bytes(have)} is available; simulate with --no-data (data=False) or a "
            f"smaller workload (the limit: {ENV} if set, else MemAvailable and RLIMIT_AS)")
