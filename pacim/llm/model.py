"""A numpy Llama decoder (float32, BLAS) with hooks around every linear layer.

Conventions (llama.cpp GGUF): weights are (out, in); llama.cpp's converter permutes the rows of
Q and K so that RoPE rotates *adjacent* pairs (2i, 2i+1). We therefore apply adjacent-pair RoPE to
the GGUF weights as stored and never rotate-half (mixing the two raises SmolLM2's perplexity from
~14 to ~105).

Each layer has four quantization *sites* (one input tensor feeding one or more linears):

========== ======================== =========================
site       input                    linears (GGUF names)
========== ======================== =========================
attn_in    attention RMSNorm output attn_q, attn_k, attn_v
attn_out   attention heads output   attn_output
ffn_in     MLP RMSNorm output       ffn_gate, ffn_up
ffn_act    silu(gate) * up          ffn_down
========== ======================== =========================

A :class:`Hooks` object sees every site input and output, every RMSNorm output and the residual
stream at each block input, and may replace any of them; quantizers, INSERTQUANT and the CiM macro
are all implemented as Hooks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from pacim.errors import PacimError
from pacim.llm.gguf_io import GGUFModel, LlamaConfig

SITES: tuple[str, ...] = ("attn_in", "attn_out", "ffn_in", "ffn_act")
SITE_LINEARS: dict[str, tuple[str, ...]] = {
    "attn_in": ("attn_q", "attn_k", "attn_v"),
    "attn_out": ("attn_output",),
    "ffn_in": ("ffn_gate", "ffn_up"),
    "ffn_act": ("ffn_down",),
}
LINEARS: tuple[str, ...] = tuple(n for s in SITES for n in SITE_LINEARS[s])


@dataclass
class Block:
    """Weights of one decoder layer; ``fused[site]`` stacks the site's linears row-wise."""

    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    fused: dict[str, np.ndarray]
    linears: dict[str, np.ndarray]  # views into fused, (out, in)
    norms: dict[str, np.ndarray] = field(default_factory=dict)  # Gemma 3: q/k and post norms


class Hooks:
    """Override points of the forward pass; the base class computes the plain float model."""

    model: LlamaModel

    def bind(self, model: LlamaModel) -> Hooks:
        """Attach to a model (called by the model before each forward)."""
        self.model = model
        return self

    def begin(self, tokens: np.ndarray) -> None:
        """A forward pass over ``tokens`` starts."""

    def end(self) -> None:
        """The forward pass is done."""

    def residual(self, layer: int, h: np.ndarray) -> np.ndarray:
        """Residual stream entering ``layer`` (layer == n_layers: before the final norm)."""
        return h

    def norm(self, layer: int, which: str, x: np.ndarray) -> np.ndarray:
        """RMSNorm output, which = "attn" or "ffn"."""
        return x

    def on_input(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """A site's input activation, (rows, in)."""
        return x

    def matmul(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """The site's linears on x: (rows, sum of outs), columns in SITE_LINEARS order."""
        return x @ self.model.blocks[layer].fused[site].T

    def attention_inputs(
        self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The attention BMM inputs (T, heads, head_dim), K and Q after RoPE: the KV-cache hook.

        Quantizers replace K and V by their decoded KV-cache codes here; INSERTQUANT inserts its
        sink-token templates here.
        """
        return q, k, v

    def attention(
        self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int
    ) -> np.ndarray:
        """The attention BMMs of ``layer`` (float here; QuantHooks can put them on the macro)."""
        return self.model.attention(q, k, v, window)

    def on_output(self, layer: int, site: str, y: np.ndarray) -> np.ndarray:
        """A site's output, (rows, sum of outs)."""
        return y

    def linear(self, layer: int, site: str, x: np.ndarray) -> np.ndarray:
        """on_input -> matmul -> on_output."""
        x = self.on_input(layer, site, x)
        return self.on_output(layer, site, self.matmul(layer, site, x))


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * w, row-wise, float32."""
    ms = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True, dtype=np.float32)
    return (x * (1.0 / np.sqrt(ms + np.float32(eps)))) * w


@functools.lru_cache(maxsize=8)
def _causal_mask(t: int) -> np.ndarray:
    m = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
    m.setflags(write=False)
    return m


def causal_softmax(s: np.ndarray, d: int, window: int = 0) -> np.ndarray:
    """Attention probabilities from raw scores s (..., T, T): scaled by 1/sqrt(d), causal mask,
    optional sliding ``window``, softmax over keys (float32; a new array)."""
    t = s.shape[-1]
    s = s * np.float32(1.0 / np.sqrt(d))
    s += _causal_mask(t)
    if window and t > window:
        s += np.tril(np.full((t, t), -np.inf, dtype=np.float32), -window)
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x)."""
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (Gemma's GeGLU gate)."""
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + 0.044715 * x**3)))


GATES = {"silu": silu, "gelu_tanh": gelu_tanh}
_OPTIONAL_NORMS = ("attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm")


class LlamaModel:
    """Float32 numpy Llama forward over one token sequence."""

    def __init__(self, gm: GGUFModel) -> None:
        cfg = gm.config
        t = gm.tensors
        self.config: LlamaConfig = cfg
        self.path = gm.path
        self.embed = t["token_embd.weight"]
        self.head = t.get("output.weight", self.embed)
        self.out_norm = t["output_norm.weight"]
        self.blocks: list[Block] = []
        for i in range(cfg.n_layers):
            fused: dict[str, np.ndarray] = {}
            views: dict[str, np.ndarray] = {}
            for site, names in SITE_LINEARS.items():
                ws = [t[f"blk.{i}.{n}.weight"] for n in names]
                f = np.ascontiguousarray(np.concatenate(ws, axis=0)) if len(ws) > 1 else ws[0]
                fused[site] = f
                r0 = 0
                for n, w in zip(names, ws, strict=True):
                    views[n] = f[r0 : r0 + w.shape[0]]
                    r0 += w.shape[0]
            for n in LINEARS:  # drop the unfused copies (keep views only)
                t.pop(f"blk.{i}.{n}.weight", None)
            norms = {n: t[f"blk.{i}.{n}.weight"] for n in _OPTIONAL_NORMS
                     if f"blk.{i}.{n}.weight" in t}  # fmt: skip
            self.blocks.append(
                Block(t[f"blk.{i}.attn_norm.weight"], t[f"blk.{i}.ffn_norm.weight"], fused, views,
                      norms)  # fmt: skip
            )
        rd = cfg.rope_dim
        self.inv_freq: dict[bool, np.ndarray] = {}
        for local in (False, True):
            theta = cfg.rope_theta_local if local and cfg.rope_theta_local else cfg.rope_theta
            inv = theta ** (-np.arange(0, rd, 2, dtype=np.float64) / rd)
            if "rope_freqs.weight" in t:  # Llama 3.x long-context factors divide the frequencies
                inv = inv / t["rope_freqs.weight"].astype(np.float64)[: rd // 2]
            self.inv_freq[local] = inv
        self._rope_cache: dict[bool, tuple[int, np.ndarray, np.ndarray]] = {}
        self.gate = GATES[cfg.act]

    # ---- pieces -------------------------------------------------------------------------
    def _rope_tables(self, n: int, layer: int = 0) -> tuple[np.ndarray, np.ndarray]:
        local = self.config.local(layer)
        c = self._rope_cache.get(local)
        if c is None or c[0] < n:
            ang = np.arange(max(n, 64), dtype=np.float64)[:, None] * self.inv_freq[local][None, :]
            c = (max(n, 64), np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32))
            self._rope_cache[local] = c
        return c[1][:n], c[2][:n]

    def _rotate(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        rd = self.config.rope_dim
        out = x.astype(np.float32, copy=True)
        if self.config.rope_neox:  # rotate-half: pairs (i, i + rd/2)
            x0, x1 = x[..., : rd // 2], x[..., rd // 2 : rd]
            out[..., : rd // 2] = x0 * cos - x1 * sin
            out[..., rd // 2 : rd] = x0 * sin + x1 * cos
        else:  # llama.cpp's permuted Q/K rows: adjacent pairs (2i, 2i + 1)
            x0, x1 = x[..., 0:rd:2], x[..., 1:rd:2]
            out[..., 0:rd:2] = x0 * cos - x1 * sin
            out[..., 1:rd:2] = x0 * sin + x1 * cos
        return out

    def rope(self, x: np.ndarray, layer: int = 0) -> np.ndarray:
        """Rotary embedding of x (T, heads, head_dim) at positions 0..T-1 (layer: its base)."""
        cos, sin = self._rope_tables(x.shape[0], layer)
        return self._rotate(x, cos[:, None, :], sin[:, None, :])

    def rope_at(
        self, x: np.ndarray, positions: np.ndarray, *, layer: int = 0, inverse: bool = False
    ) -> np.ndarray:
        """Rotary embedding of rows x (n, heads, head_dim) at given positions (inverse: undo)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        cos, sin = self._rope_tables(int(pos.max()) + 1 if pos.size else 1, layer)
        cos, sin = cos[pos][:, None, :], sin[pos][:, None, :]
        return self._rotate(x, cos, -sin if inverse else sin)

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int = 0
    ) -> np.ndarray:
        """Causal grouped-query attention: q (T, H, D), k/v (T, Hkv, D) -> (T, H*D).

        ``window`` > 0: a query sees only the last ``window`` positions (sliding window)."""
        t, h, d = q.shape
        hkv = k.shape[1]
        g = h // hkv
        qg = q.reshape(t, hkv, g, d).transpose(1, 2, 0, 3).reshape(hkv, g * t, d)
        s = qg @ k.transpose(1, 2, 0)  # (hkv, g*t, t)
        s = causal_softmax(s.reshape(hkv, g, t, t), d, window)
        o = s.reshape(hkv, g * t, t) @ v.transpose(1, 0, 2)  # (hkv, g*t, d)
        return o.reshape(hkv, g, t, d).transpose(2, 0, 1, 3).reshape(t, h * d)

    # ---- forward ------------------------------------------------------------------------
    def hidden(self, tokens: np.ndarray, hooks: Hooks | None = None) -> np.ndarray:
        """Final-normed hidden states (T, d_model) of a token sequence."""
        cfg = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise PacimError("empty token sequence")
        if tokens.min() < 0 or tokens.max() >= self.embed.shape[0]:
            raise PacimError("token id out of the model's vocabulary")
        hk = (hooks or Hooks()).bind(self)
        hk.begin(tokens)
        t = tokens.size
        hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        h = self.embed[tokens]
        if cfg.embed_scale != 1.0:
            h = h * np.float32(cfg.embed_scale)
        eps = cfg.rms_eps
        for i, b in enumerate(self.blocks):
            h = hk.residual(i, h)
            a = hk.norm(i, "attn", rms_norm(h, b.attn_norm, eps))
            qkv = hk.linear(i, "attn_in", a)
            q = qkv[:, : nh * hd].reshape(t, nh, hd)
            k = qkv[:, nh * hd : (nh + nkv) * hd].reshape(t, nkv, hd)
            v = qkv[:, (nh + nkv) * hd :].reshape(t, nkv, hd)
            if cfg.qk_norm:
                q = rms_norm(q, b.norms["attn_q_norm"], eps)
                k = rms_norm(k, b.norms["attn_k_norm"], eps)
            q, k, v = hk.attention_inputs(i, self.rope(q, i), self.rope(k, i), v)
            window = cfg.sliding_window if cfg.local(i) else 0
            o = hk.linear(i, "attn_out", hk.attention(i, q, k, v, window))
            h = h + (rms_norm(o, b.norms["post_attention_norm"], eps) if cfg.post_norms else o)
            m = hk.norm(i, "ffn", rms_norm(h, b.ffn_norm, eps))
            gu = hk.linear(i, "ffn_in", m)
            act = self.gate(gu[:, : cfg.d_ff]) * gu[:, cfg.d_ff :]
            d = hk.linear(i, "ffn_act", act)
            h = h + (rms_norm(d, b.norms["post_ffw_norm"], eps) if cfg.post_norms else d)
        h = hk.residual(cfg.n_layers, h)
        hk.end()
        return rms_norm(h, self.out_norm, cfg.rms_eps)

    def logits(self, tokens: np.ndarray, hooks: Hooks | None = None) -> np.ndarray:
        """Next-token logits (T, vocab) for every position."""
        return self.hidden(tokens, hooks) @ self.head.T

    def nll(self, tokens: np.ndarray, hooks: Hooks | None = None) -> np.ndarray:
        """Negative log-likelihood (nats) of tokens[1:] given their prefixes, shape (T-1,)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        z = self.logits(tokens, hooks)[:-1]
        zmax = z.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=-1, dtype=np.float64)) + zmax[:, 0]
        return lse - z[np.arange(z.shape[0]), tokens[1:]]

    def generate(self, tokens: np.ndarray, n: int, hooks: Hooks | None = None) -> np.ndarray:
        """Greedy continuation: the n new token ids (full recompute per step; short prompts)."""
        seq = list(np.asarray(tokens, dtype=np.int64).reshape(-1))
        out: list[int] = []
        for _ in range(n):
            h = self.hidden(np.asarray(seq), hooks)[-1]
            nxt = int(np.argmax(h @ self.head.T))
            out.append(nxt)
            seq.append(nxt)
        return np.asarray(out, dtype=np.int64)
