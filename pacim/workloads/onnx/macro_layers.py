"""The macro layers of the ONNX executor: the macro front end (pacim.macro) with one activation
scale per image.

Quantization follows pacim's functional layers (per-tensor asymmetric uint, conv padding with
the pad code) with one scale per *image*: activations of each image are quantized on their own,
as a chip running one image at a time does, so results never depend on the batch size. Weights
are prepared once per layer (pacim.macro.prepare_weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...macro.analog import AnalogADC
from ...macro.layer import apply
from ...macro.operands import PreparedWeight, quantize_activations
from .ops import CHUNK_ELEMS

# --- macro configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class MacroConfig:
    """What the macro layers need from the arch: precisions and the PAC configuration."""

    xbit: int = 8
    wbit: int = 8
    operand: int = 4
    approx: str = "pac"
    dynamic: tuple[float, float, float] | None = None
    pac_enabled: bool = True
    first_layer_exact: bool = True
    analog: Any = None  # pacim.macro.analog.AnalogADC of a bp_bs chip: `pac` mode runs it
    first_layer_bits: int | None = None  # bits of the first conv (arch macro.first_layer_bits)

    @classmethod
    def from_arch(cls, arch: Any) -> MacroConfig:
        """Read an `pacim.arch.Arch`."""
        return cls(
            xbit=arch.macro.xbit,
            wbit=arch.macro.wbit,
            operand=arch.operand,
            approx=arch.pac.approx,
            dynamic=arch.dynamic_thresholds,
            pac_enabled=arch.pac.enabled,
            first_layer_exact=arch.pac.first_layer_exact,
            analog=AnalogADC.from_arch(arch),
            first_layer_bits=arch.macro.first_layer_bits,
        )

    @property
    def full(self) -> int:
        """Operand of exact arithmetic: max(xbit, wbit)."""
        return max(self.xbit, self.wbit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "xbit": self.xbit, "wbit": self.wbit, "operand": self.operand,
            "approx": self.approx, "dynamic": list(self.dynamic) if self.dynamic else None,
            "pac_enabled": self.pac_enabled, "first_layer_exact": self.first_layer_exact,
            "analog": None if self.analog is None else {
                "adc_bits": self.analog.bits, "rows": self.analog.rows,
                "full_scale_rows": self.analog.fs_rows, "noise_lsb": self.analog.noise_lsb},
            "first_layer_bits": self.first_layer_bits,
        }


# --- per-image quantization and the batched macro layers ----------------------------------


# --- the macro layers: the macro front end with one activation scale per image ------------


def macro_conv2d(
    x: np.ndarray, pw: PreparedWeight, kernel: tuple[int, int], bias: np.ndarray | None, *,
    stride: int, pads: tuple[int, int, int, int], xbit: int, operand: int, approx: str,
    dynamic: tuple[float, float, float] | None, analog: AnalogADC | None = None,
    image0: int = 0,
) -> np.ndarray:
    """Conv (B, C, H, W) -> (B, K, Ho, Wo) through the macro, each image quantized on its own.

    pads = (top, left, bottom, right), filled with each image's pad code. Images are run in
    chunks so that the unfolded operands stay bounded on big batches. analog: the bp_bs
    array's ADC; its noise is drawn per conversion from the global output row, so with image0
    (the batch's first image in the dataset) results do not depend on the batching.
    """
    if tuple(kernel) != pw.kernel:
        raise ValueError(f"kernel {tuple(kernel)} does not match the weight's {pw.kernel}")
    b_, c_, h, w_ = x.shape
    per_img = ((h + pads[0] + pads[2]) * (w_ + pads[1] + pads[3])) * c_ * kernel[0] * kernel[1]
    chunk = max(1, CHUNK_ELEMS // max(per_img, 1))
    outs = []
    for i0 in range(0, b_, chunk):
        act = quantize_activations(x[i0:i0 + chunk], xbit, per="sample", kernel=pw.kernel,
                                   stride=stride, pads=pads)
        adc = None
        if analog is not None:
            ho = (h + pads[0] + pads[2] - kernel[0]) // stride + 1
            wo = (w_ + pads[1] + pads[3] - kernel[1]) // stride + 1
            adc = analog.with_stream(analog.stream, row0=(image0 + i0) * ho * wo)
        outs.append(apply(act, pw, bias, operand=operand, approx=approx, dynamic=dynamic,
                          stats=False, layout="nchw", analog=adc)[0])
    return outs[0] if len(outs) == 1 else np.concatenate(outs)


def macro_linear(
    x: np.ndarray, pw: PreparedWeight, bias: np.ndarray | None, *, xbit: int, operand: int,
    approx: str, analog: AnalogADC | None = None, image0: int = 0,
) -> np.ndarray:
    """x (B, ..., N) @ w.T through the macro, each x[b] quantized on its own; (B, ..., K)."""
    n = x.shape[-1]
    rows_per = int(np.prod(x.shape[1:-1], dtype=np.int64))
    act = quantize_activations(x.reshape(-1, n), xbit, per="sample", sample_rows=rows_per)
    adc = None if analog is None else analog.with_stream(analog.stream, row0=image0 * rows_per)
    y = apply(act, pw, bias, operand=operand, approx=approx, stats=False, analog=adc)[0]
    return y.reshape(x.shape[:-1] + (pw.k,))
