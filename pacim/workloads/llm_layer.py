"""`llm-layer`: one Llama-style decoder block (q/k/v/o, SwiGLU gate/up/down) with synthetic data.

The residual-stream hidden states are N(0, 1) with one massive-activation token (position 0: a
few fixed channels at ~1000x the median |h|, as in real LLMs). The inputs of q/k/v and gate/up
are the RMSNorm of the residual, so the spike token reaches them as an outlier token whose vector
is dominated by the spike channels (RMSNorm bounds it at sqrt(hidden / channels) x the typical
value). Weights are N(0, 1/in). The inputs of o and down come from the real float32 forward of the
block: RoPE, causal softmax attention (grouped-query when kv_heads < heads), residual add,
RMSNorm, SwiGLU. QK^T and PV are activation x activation products (matmul layers): counted, and
mapped or costed as the arch's attention section says (pacim/sched/attention.py).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ir import Layer, Workload
from .llm_shape import LlmShape, periphery_ops, step_layers
from .options import validate_options

RMS_EPS = 1e-5


class LlmLayerOptions(BaseModel):
    """Options of `llm-layer` (defaults: Llama-2-7B dimensions, 128 tokens)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    hidden: int = Field(4096, ge=1)
    ffn: int = Field(11008, ge=1)
    heads: int = Field(32, ge=1)
    kv_heads: int | None = Field(None, ge=1)  # default: heads (multi-head attention)
    tokens: int = Field(128, ge=1)
    spike_channels: int = Field(2, ge=0)  # channels carrying the massive activation (0: none)
    spike_scale: float = Field(1000.0, gt=0)  # spike size / median |residual|
    rope_theta: float = Field(10000.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> LlmLayerOptions:
        kv = self.kv_heads or self.heads
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if (self.hidden // self.heads) % 2:
            raise ValueError(f"head dim {self.hidden // self.heads} must be even for RoPE")
        if self.heads % kv:
            raise ValueError(f"heads {self.heads} is not a multiple of kv_heads {kv}")
        if self.spike_channels > self.hidden:
            raise ValueError(f"spike_channels {self.spike_channels} > hidden {self.hidden}")
        return self


def llm_shape(o: LlmLayerOptions) -> LlmShape:
    """The block's dimensions (one block, no LM head)."""
    return LlmShape(blocks=1, hidden=o.hidden, ffn=o.ffn, heads=o.heads,
                    kv_heads=o.kv_heads or o.heads, head_dim=o.hidden // o.heads)


def _shape_layers(o: LlmLayerOptions) -> list[Layer]:
    return step_layers(llm_shape(o), o.tokens, o.tokens)


def rms_norm(h: np.ndarray) -> np.ndarray:
    """RMSNorm over the last axis (weight 1)."""
    ms = np.mean(np.square(h, dtype=np.float64), axis=-1, keepdims=True)
    return (h / np.sqrt(ms + RMS_EPS)).astype(h.dtype)


def rope(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotary position embedding on (heads, T, dh), half-split (Llama / HF) layout."""
    _, t, dh = x.shape
    inv = theta ** (-np.arange(0, dh, 2, dtype=np.float64) / dh)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos = np.cos(ang).astype(x.dtype)
    sin = np.sin(ang).astype(x.dtype)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax(q k^T / sqrt(dh) + causal mask) v on (heads, T, dh); k, v broadcast to heads."""
    h, t, dh = q.shape
    rep = h // k.shape[0]
    if rep > 1:
        k = np.repeat(k, rep, axis=0)
        v = np.repeat(v, rep, axis=0)
    s = (q @ k.transpose(0, 2, 1)) * (1.0 / math.sqrt(dh))
    s = np.where(np.triu(np.ones((t, t), bool), 1), -np.inf, s)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    return s @ v


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), overflow-safe."""
    return x / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def spike_channels(o: LlmLayerOptions, seed: int) -> list[int]:
    """The channels carrying the massive activation (fixed by the seed)."""
    rng = np.random.default_rng([int(seed), 0x5F1CE])
    return sorted(int(c) for c in rng.choice(o.hidden, o.spike_channels, replace=False))


def _with_data(layers: list[Layer], o: LlmLayerOptions, seed: int) -> tuple[list[Layer], dict]:
    """Weights, residual input and the block's forward; returns layers with data and spike info."""
    from .rand import normal  # numba: only when data is built

    t, d = o.tokens, o.hidden
    dh = d // o.heads
    kvh = o.kv_heads or o.heads
    f32 = np.float32
    w = {la.name: normal((la.k, la.n), seed, f"llm-layer/{la.name}", 1.0 / np.sqrt(la.n), f32)
         for la in layers if la.mapped}
    resid = normal((t, d), seed, "llm-layer/residual", 1.0, f32)
    chans = spike_channels(o, seed)
    med = float(np.median(np.abs(resid)))
    signs = np.where(np.arange(len(chans)) % 2 == 0, 1.0, -1.0)
    resid[0, chans] = (signs * o.spike_scale * med).astype(f32)

    x_attn = rms_norm(resid)
    q = (x_attn @ w["q_proj"].T).reshape(t, o.heads, dh).transpose(1, 0, 2)
    k = (x_attn @ w["k_proj"].T).reshape(t, kvh, dh).transpose(1, 0, 2)
    v = (x_attn @ w["v_proj"].T).reshape(t, kvh, dh).transpose(1, 0, 2)
    ctx = causal_attention(rope(q, o.rope_theta), rope(k, o.rope_theta), v)
    x_o = np.ascontiguousarray(ctx.transpose(1, 0, 2).reshape(t, d))
    h1 = resid + x_o @ w["o_proj"].T
    x_mlp = rms_norm(h1)
    x_down = silu(x_mlp @ w["gate_proj"].T) * (x_mlp @ w["up_proj"].T)

    inputs = {"q_proj": x_attn, "k_proj": x_attn, "v_proj": x_attn, "o_proj": x_o,
              "gate_proj": x_mlp, "up_proj": x_mlp, "down_proj": x_down}
    out = []
    for la in layers:
        if la.mapped:
            la = replace(la, weight=w[la.name], x=inputs[la.name])
        out.append(la)
    tok_max = np.abs(x_attn).max(axis=1)
    spike = {
        "token": 0,
        "channels": chans,
        "residual_spike_over_median": o.spike_scale if chans else 0.0,
        "q_input_token_max_over_median_token_max": float(tok_max[0] / np.median(tok_max)),
    }
    return out, spike


def build_llm_layer(*, data: bool, seed: int, **options: Any) -> Workload:
    """Build `llm-layer`; shapes only unless data."""
    o = validate_options(LlmLayerOptions, options, "workload llm-layer")
    layers = _shape_layers(o)
    meta: dict[str, Any] = {
        "source": "builtin",
        "builtin": "llm-layer",
        "seed": seed,
        "batch": 1,
        "tokens": o.tokens,
        "options": o.model_dump(),
        "data": data,
        "input": (f"{o.tokens} tokens of N(0,1) residual with a massive-activation token "
                  f"(position 0, {o.spike_channels} channels at {o.spike_scale:g}x median), "
                  "RMSNorm-ed; o/down inputs from the block's float32 forward"),
        "weights": "N(0, 1/in_features), no bias",
        "note": "attn_qk / attn_pv count the full T x T products (causal mask not skipped)",
        "llm": llm_shape(o).to_dict(),
        "periphery_ops": periphery_ops(llm_shape(o), o.tokens, o.tokens),
    }
    if data:
        layers, meta["spike"] = _with_data(layers, o, seed)
    return Workload("llm-layer", tuple(layers), meta)
