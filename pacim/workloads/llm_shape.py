"""The shape of a Llama-style decoder (LlmShape) and the layers of one inference step on it.

A step feeds `q` new tokens through every block against a KV cache of `kv` positions (the
`kv - q` cached ones plus the new): prefill is one step with q = T, a decode step has q = 1.
Per block: q/k/v projections, QK^T (q x dh @ dh x kv per head), PV (q x kv @ kv x dh per head),
o, gate, up, down; then the LM head when the model has one. The digital periphery's element
operations of a step (periphery_ops) are what the macro does not do: RMSNorm, RoPE, softmax,
SwiGLU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import PacimError
from .ir import Layer, Workload, linear_layer, matmul_layer


@dataclass(frozen=True)
class LlmShape:
    """Dimensions of a Llama-style decoder (workload meta["llm"])."""

    blocks: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    head_out: int = 0  # LM-head outputs (vocabulary), 0: no head
    names: str = "llm-layer"  # layer naming: "llm-layer" (q_proj ...) or "gguf" (blk.i.attn_q)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (workload meta)."""
        return asdict(self)

    @classmethod
    def of(cls, workload: Workload) -> LlmShape:
        """The shape a workload carries in meta["llm"]; PacimError when it has none."""
        d = workload.meta.get("llm")
        if not isinstance(d, Mapping):
            raise PacimError(f"workload {workload.name} is not an LLM workload (llm-layer, "
                             "smollm2-135m or a Llama GGUF): it has no phases")
        return cls(**d)


def _names(shape: LlmShape, i: int) -> list[str]:
    if shape.names == "gguf":
        p = f"blk.{i}."
        return [p + s for s in ("attn_q", "attn_k", "attn_v", "attn_qk", "attn_pv",
                                "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    pre = f"blk{i}." if shape.blocks > 1 else ""
    return [pre + s for s in ("q_proj", "k_proj", "v_proj", "attn_qk", "attn_pv", "o_proj",
                              "gate_proj", "up_proj", "down_proj")]


def step_layers(shape: LlmShape, q: int, kv: int) -> list[Layer]:
    """Layers of one step: q new tokens against a KV cache of kv positions (kv >= q)."""
    if q < 1 or kv < q:
        raise PacimError(f"a step needs 1 <= q <= kv, got q={q}, kv={kv}")
    d, f, dh, h = shape.hidden, shape.ffn, shape.head_dim, shape.heads
    kvd, g = shape.kv_heads * dh, h // shape.kv_heads
    cached = (kv - q) * dh
    out: list[Layer] = []
    for i in range(shape.blocks):
        nq, nk, nv, nqk, npv, no, ng, nu, nd = _names(shape, i)
        out += [linear_layer(nq, q, d, h * dh), linear_layer(nk, q, d, kvd),
                linear_layer(nv, q, d, kvd),
                matmul_layer(nqk, q, dh, kv, count=h, group=g, cached=cached, kv_axis="k"),
                matmul_layer(npv, q, kv, dh, count=h, group=g, cached=cached, kv_axis="n"),
                linear_layer(no, q, h * dh, d), linear_layer(ng, q, d, f),
                linear_layer(nu, q, d, f), linear_layer(nd, q, f, d)]
    if shape.head_out:
        out.append(linear_layer("output", q, d, shape.head_out))
    return out


def periphery_ops(shape: LlmShape, q: int, kv: int) -> dict[str, int]:
    """Element operations of the digital periphery in one step (q new tokens, kv positions).

    Per block and new token: two RMSNorms of `hidden` elements, RoPE on every query and key
    element, softmax over kv scores per head, SwiGLU on `ffn` elements; plus the final RMSNorm
    when the model has an LM head.
    """
    b = shape.blocks
    return {
        "rmsnorm": q * shape.hidden * (2 * b + (1 if shape.head_out else 0)),
        "rope": b * q * (shape.heads + shape.kv_heads) * shape.head_dim,
        "softmax": b * q * shape.heads * kv,
        "swiglu": b * q * shape.ffn,
    }
