"""Quantization settings as one spec string: ``w4a4skv4``, ``w4a8skv8``, ``w8a8skv8``, ``w8a8``.

Grammar: ``w<B>a<B>[skv<B>|gkv<B>][:<option>,...]``

- ``w<B>``: weight bits. ``a<B>``: activation bits (per tensor, static, every linear input).
- ``skv<B>``: a static per-tensor KV cache of B bits (K after RoPE and V, per layer, at the
  attention BMM inputs); ``gkv<B>``: group-wise dynamic KV (per token, groups of ``g`` channels
  inside a head, asymmetric min/max); no KV part: K and V stay float.
- options: ``wc`` / ``wt`` weights per output channel / per tensor; ``sym`` / ``asym``;
  ``rot`` / ``norot`` (the block-Hadamard rotation of the methods that rotate); ``g<N>`` KV group.

Defaults follow the two families: a spec with a KV part is the INSERTQUANT paper's Table-1 family
(weights per channel, symmetric, RTN; rotation on, as QuaRot); a spec without one is pacim's
PACiM-style per-tensor family (weights per tensor, asymmetric uint, the macro's own convention).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from pacim.errors import PacimError
from pacim.llm.rotation import DEFAULT_ROTATION, check_rotation

SETTINGS: tuple[str, ...] = ("w4a4skv4", "w4a8skv8", "w8a8skv8", "w8a8")
DEFAULT_SETTING = "w8a8"
DEFAULT_KV_GROUP = 128
_SPEC = re.compile(r"^w(\d+)a(\d+)(?:([sg])kv(\d+))?(?::(.*))?$")


@dataclass(frozen=True)
class QuantSetting:
    """Everything that decides how the quantized model is quantized (not which method)."""

    spec: str
    wbits: int
    abits: int
    kvbits: int | None = None  # None: K/V not quantized
    weights: str = "channel"  # "channel" or "tensor"
    wsym: bool = True
    kv: str = "static"  # "static" (per tensor) or "group" (dynamic)
    kv_group: int = DEFAULT_KV_GROUP
    rotation: str = DEFAULT_ROTATION

    @property
    def label(self) -> str:
        """Paper-style label, e.g. ``W4A4sKV4`` (``W8A8`` without a KV part)."""
        kv = "" if self.kvbits is None else f"{'s' if self.kv == 'static' else 'g'}KV{self.kvbits}"
        return f"W{self.wbits}A{self.abits}{kv}"

    @property
    def weight_key(self) -> tuple[int, str, bool]:
        """What decides the quantized weights (besides the rotation)."""
        return (self.wbits, self.weights, self.wsym)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``label`` added)."""
        return {**asdict(self), "label": self.label}


def _bits(v: str, what: str) -> int:
    b = int(v)
    if not 1 <= b <= 16:
        raise PacimError(f"{what} bits must be in 1..16, got {b}")
    return b


def parse_setting(
    spec: str, *, abits: int | None = None, wbits: int | None = None, rotation: str | None = None
) -> QuantSetting:
    """A QuantSetting from its spec; ``abits``/``wbits``/``rotation`` override when given."""
    m = _SPEC.match(spec.strip().lower())
    if m is None:
        raise PacimError(
            f"bad quantization setting {spec!r}: expected w<bits>a<bits>[skv<bits>|gkv<bits>]"
            f"[:options], e.g. {', '.join(SETTINGS)}"
        )
    wb, ab, kvk, kvb, opts = m.groups()
    paper = kvk is not None
    s = QuantSetting(
        spec=spec.strip().lower(), wbits=_bits(wb, "weight"), abits=_bits(ab, "activation"),
        kvbits=_bits(kvb, "KV") if paper else None, weights="channel" if paper else "tensor",
        wsym=paper, kv="group" if kvk == "g" else "static",
    )  # fmt: skip
    for o in filter(None, (o.strip() for o in (opts or "").split(","))):
        if o in ("wc", "wt"):
            s = replace(s, weights="channel" if o == "wc" else "tensor")
        elif o in ("sym", "asym"):
            s = replace(s, wsym=o == "sym")
        elif o in ("rot", "norot"):
            s = replace(s, rotation=DEFAULT_ROTATION if o == "rot" else "none")
        elif re.fullmatch(r"g\d+", o) and int(o[1:]) >= 2:
            s = replace(s, kv_group=int(o[1:]))
        else:
            raise PacimError(f"unknown option {o!r} in setting {spec!r} (wc, wt, sym, asym, "
                             "rot, norot, g<N>)")  # fmt: skip
    if abits is not None:
        s = replace(s, abits=_bits(str(abits), "activation"))
    if wbits is not None:
        s = replace(s, wbits=_bits(str(wbits), "weight"))
    if rotation is not None:
        s = replace(s, rotation=check_rotation(rotation))
    return s
