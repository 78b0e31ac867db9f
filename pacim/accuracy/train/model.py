"""PACiM's ResNet-18 in torch, with the layer modes of its training stages.

CIFAR-style: a 3x3 stem (stride 1, or 2 for small CPU budgets), no max-pool, BasicBlocks
2-2-2-2 at width w-2w-4w-8w (w = 64 in the paper), global average pool, one FC. Each conv is
followed by BatchNorm (kept as a per-channel affine after the macro, as the authors quantize the
conv weight itself) and a PACT activation. Every conv and the FC is a `MacroConv` /
`MacroLinear` whose mode is set for the whole network:

- ``float``: ordinary float layers;
- ``qat``: fake quantization at the macro configuration's bits (W8A8 by default; `pacim train
  --wbit/--xbit` for low-bit networks) with straight-through rounding (activations per image);
  the first conv at ``first_bits`` (8) when the rest is narrower, as low-bit networks keep it;
- ``nat``: qat plus the authors' noise-aware training, y + N(0, 1) * (trim_noise / 100) * y, on
  every layer except the first conv;
- ``pac``: the bit-exact PAC macro in the forward pass (`pac.py`), straight-through gradient;
  the first conv stays exact (W8A8), as on PACiM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...workloads.onnx import MacroConfig
from .pac import pac_conv2d, pac_linear
from .quant import PACT, binarize, fq_conv2d, fq_linear

LAYER_MODES = ("float", "qat", "nat", "pac")


@dataclass
class LayerMode:
    """Shared, mutable mode of all macro layers of one network."""

    mode: str = "float"
    trim_noise: float = 0.0  # percent, for nat
    pac: MacroConfig = field(default_factory=MacroConfig)
    cycles: list[tuple[int, float]] = field(default_factory=list)  # (outputs, mean) in pac mode
    first_bits: int | None = None  # bits of the first conv in qat/nat (None: as the rest)


class _Macro:
    """Mixin of the macro layers: the mode object and the noise of NAT."""

    state: LayerMode
    first: bool

    def _noise(self, y: torch.Tensor) -> torch.Tensor:
        if self.state.mode == "nat" and not self.first and self.training:
            return y + torch.randn_like(y) * (self.state.trim_noise / 100.0) * y
        return y

    def weight_bits(self) -> int:
        """Bits the macro quantizes this layer's weight to (qat/nat/pac modes)."""
        st = self.state
        return st.first_bits if self.first and st.first_bits is not None else st.pac.wbit

    def macro_weight(self) -> torch.Tensor:
        """The weight the chip holds: binarized (quant.binarize) for 1-bit layers."""
        w = self.weight  # type: ignore[attr-defined]
        return binarize(w).detach() if self.weight_bits() == 1 else w.detach()

    def _record(self, cycles: torch.Tensor) -> None:
        self.state.cycles.append((cycles.numel(), float(cycles.float().mean())))


class MacroConv(nn.Conv2d, _Macro):
    """A conv that runs float, fake-quantized, noisy or through the PAC macro (see module doc)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, state: LayerMode,
                 first: bool = False) -> None:
        super().__init__(cin, cout, k, stride, k // 2, bias=False)
        self.state = state
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        st = self.state
        s, p = self.stride[0], self.padding[0]
        if st.mode == "float":
            return F.conv2d(x, self.weight, None, s, p)
        if st.mode == "pac" and not self.first:
            out = pac_conv2d(x, self.weight, None, stride=s, padding=p, cfg=st.pac)
            self._record(out.cycles)
            return out.y
        cfg = st.pac
        xb, wb = cfg.xbit, cfg.wbit
        if self.first and st.first_bits is not None:
            xb = wb = st.first_bits
        return self._noise(fq_conv2d(x, self.weight, None, s, p, xb, wb))


class MacroLinear(nn.Linear, _Macro):
    """The FC layer, on the macro like the convs (PACiM runs it on PAC)."""

    def __init__(self, n: int, k: int, state: LayerMode) -> None:
        super().__init__(n, k, bias=True)
        self.state = state
        self.first = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        st = self.state
        if st.mode == "float":
            return F.linear(x, self.weight, self.bias)
        if st.mode == "pac":
            return pac_linear(x, self.weight, self.bias, cfg=st.pac).y
        return self._noise(fq_linear(x, self.weight, self.bias, st.pac.xbit, st.pac.wbit))


class BasicBlock(nn.Module):
    """conv-bn-pact, conv-bn, + shortcut (1x1 conv-bn when the shape changes), pact."""

    def __init__(self, cin: int, cout: int, stride: int, state: LayerMode) -> None:
        super().__init__()
        self.conv1 = MacroConv(cin, cout, 3, stride, state)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = PACT()
        self.conv2 = MacroConv(cout, cout, 3, 1, state)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(MacroConv(cin, cout, 1, stride, state),
                                      nn.BatchNorm2d(cout))
        self.act2 = PACT()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + (self.down(x) if self.down is not None else x))


class PacResNet18(nn.Module):
    """ResNet-18 for PACiM; `set_mode` switches every macro layer at once."""

    def __init__(self, width: int = 64, in_channels: int = 3, classes: int = 10,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.state = LayerMode()
        self.frozen_bn = False
        self.config = {"width": int(width), "in_channels": int(in_channels),
                       "classes": int(classes), "stem_stride": int(stem_stride)}
        self.conv1 = MacroConv(in_channels, width, 3, stem_stride, self.state, first=True)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = PACT()
        blocks: list[nn.Module] = []
        cin = width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            blocks += [BasicBlock(cin, width * mult, stride, self.state),
                       BasicBlock(width * mult, width * mult, 1, self.state)]
            cin = width * mult
        self.layers = nn.Sequential(*blocks)
        self.fc = MacroLinear(cin, classes, self.state)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def freeze_batchnorm(self) -> None:
        """Keep every BatchNorm in evaluation mode (fixed statistics) from now on."""
        self.frozen_bn = True
        self.train(self.training)

    def train(self, mode: bool = True) -> PacResNet18:  # noqa: D102
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def set_mode(self, mode: str, *, trim_noise: float = 0.0,
                 pac: MacroConfig | None = None) -> None:
        """Mode of every macro layer: float, qat, nat (with trim_noise %) or pac."""
        if mode not in LAYER_MODES:
            raise ValueError(f"mode must be one of {', '.join(LAYER_MODES)}, got {mode!r}")
        self.state.mode = mode
        self.state.trim_noise = float(trim_noise)
        if pac is not None:
            self.state.pac = pac

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.act1(self.bn1(self.conv1(x)))
        h = self.layers(h)
        return self.fc(h.mean(dim=(2, 3)))
