"""Reading Llama-family GGUF model files as float32 (with a float32 cache beside the model).

Fetching the named models lives in :mod:`pacim.llm.fetch`; its names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pacim.errors import PacimError
from pacim.llm.fetch import (  # noqa: F401  (re-exported: the public names of the old module)
    INSTALL_HINT,
    MODELS,
    SMOLLM2,
    ModelSource,
    cache_dir,
    fetch_model,
    require_gguf,
    require_tokenizers,
    resolve_model,
)

LLAMA_ARCHS = ("llama", "mistral", "gemma3")  # llama.cpp writes Mistral models as "llama" too
GEMMA3_SWA_THETA = 10000.0  # llama.cpp's RoPE base of Gemma 3's sliding-window layers
GEMMA3_SWA_PATTERN = 6  # every 6th Gemma 3 layer attends globally, the others in a window


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a Llama-family decoder, read from GGUF metadata."""

    name: str
    arch: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_dim: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    context_length: int
    tied_head: bool
    # Gemma 3 (defaults: plain Llama)
    family: str = "llama"
    rope_neox: bool = False  # rotate-half RoPE (no Q/K row permutation in the GGUF)
    rope_theta_local: float = 0.0  # RoPE base of sliding-window layers (0: rope_theta)
    sliding_window: int = 0  # 0: every layer attends to the whole causal prefix
    swa_pattern: int = 0  # layer i is global when (i + 1) % swa_pattern == 0
    embed_scale: float = 1.0  # token embeddings times this (Gemma: sqrt(d_model))
    act: str = "silu"  # MLP gate: silu (SwiGLU) or gelu_tanh (GeGLU)
    qk_norm: bool = False  # RMSNorm of every query and key head
    post_norms: bool = False  # RMSNorm of the attention and MLP outputs before the residual

    def local(self, layer: int) -> bool:
        """True when the layer attends only within the sliding window."""
        return bool(self.sliding_window) and (layer + 1) % max(self.swa_pattern, 1) != 0

    @property
    def n_params(self) -> int:
        """Parameter count (embedding counted once when the head is tied)."""
        d, f, hd = self.d_model, self.d_ff, self.head_dim
        per = d * self.n_heads * hd * 2 + d * self.n_kv_heads * hd * 2 + 3 * d * f + 2 * d
        head = 0 if self.tied_head else self.vocab_size * d
        return self.n_layers * per + self.vocab_size * d + d + head


@dataclass(frozen=True)
class TokenizerSpec:
    """Tokenizer description stored in the GGUF metadata (``tokenizer.ggml.*``)."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str
    tokens: list[str] = field(repr=False)
    token_types: list[int] = field(repr=False)
    merges: list[str] = field(repr=False)
    scores: list[float] = field(repr=False)
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    add_bos: bool = False
    add_space_prefix: bool = False


@dataclass(frozen=True)
class GGUFModel:
    """A loaded model: config, float32 tensors (numpy layout: out x in) and tokenizer spec."""

    path: Path
    config: LlamaConfig
    tensors: dict[str, np.ndarray] = field(repr=False)
    tokenizer: TokenizerSpec = field(repr=False)


_REQUIRED_BLOCK = (
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
)  # fmt: skip
_GEMMA3_BLOCK = ("attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm")


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception as e:  # noqa: BLE001  (gguf raises assorted errors on bad fields)
        raise PacimError(f"unreadable GGUF metadata field {key}: {e}") from e


def _open_reader(path: Path) -> Any:
    gguf = require_gguf()
    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001  (struct/value/index errors on truncated files)
        raise PacimError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def read_config(reader: Any, path: Path) -> LlamaConfig:
    """Build the LlamaConfig from GGUF metadata; PacimError if not a Llama-family model."""
    arch = _field(reader, "general.architecture")
    if arch not in LLAMA_ARCHS:
        raise PacimError(f"{path}: architecture {arch!r} is not Llama-family ({LLAMA_ARCHS})")

    def req(key: str) -> Any:
        v = _field(reader, f"{arch}.{key}")
        if v is None:
            raise PacimError(f"{path}: missing GGUF metadata {arch}.{key}")
        return v

    d = int(req("embedding_length"))
    n_heads = int(req("attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv", n_heads))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", d // n_heads))
    names = {t.name for t in reader.tensors}
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        toks = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(toks.data) if toks is not None else 0
    cfg = LlamaConfig(
        name=str(_field(reader, "general.name", path.stem)),
        arch=str(arch),
        n_layers=int(req("block_count")),
        d_model=d,
        d_ff=int(req("feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        rope_dim=int(_field(reader, f"{arch}.rope.dimension_count", head_dim)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        vocab_size=int(vocab),
        context_length=int(_field(reader, f"{arch}.context_length", 2048)),
        tied_head="output.weight" not in names,
    )
    if arch == "gemma3":
        cfg = dataclasses.replace(
            cfg, family="gemma3", rope_neox=True, rope_theta_local=GEMMA3_SWA_THETA,
            sliding_window=int(_field(reader, f"{arch}.attention.sliding_window", 0)),
            swa_pattern=GEMMA3_SWA_PATTERN, embed_scale=float(np.sqrt(d)), act="gelu_tanh",
            qk_norm=True, post_norms=True,
        )  # fmt: skip
    if n_heads % n_kv or cfg.rope_dim % 2 or cfg.rope_dim > head_dim:
        raise PacimError(f"{path}: inconsistent attention geometry in {cfg}")
    missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in names]
    missing += [
        f"blk.{i}.{s}.weight"
        for i in range(cfg.n_layers)
        for s in _REQUIRED_BLOCK + (_GEMMA3_BLOCK if cfg.family == "gemma3" else ())
        if f"blk.{i}.{s}.weight" not in names
    ]
    if missing:
        raise PacimError(f"{path}: not a Llama GGUF, missing tensors: {', '.join(missing[:4])}")
    return cfg


def read_tokenizer_spec(reader: Any, path: Path) -> TokenizerSpec:
    """The ``tokenizer.ggml.*`` metadata as a TokenizerSpec."""
    tokens = _field(reader, "tokenizer.ggml.tokens")
    model = _field(reader, "tokenizer.ggml.model")
    if not tokens or model is None:
        raise PacimError(f"{path}: no tokenizer in the GGUF metadata")

    def opt_int(key: str) -> int | None:
        v = _field(reader, key)
        return None if v is None else int(v)

    return TokenizerSpec(
        model=str(model),
        pre=str(_field(reader, "tokenizer.ggml.pre", "default")),
        tokens=list(tokens),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type", [])],
        merges=list(_field(reader, "tokenizer.ggml.merges", [])),
        scores=[float(s) for s in _field(reader, "tokenizer.ggml.scores", [])],
        bos_id=opt_int("tokenizer.ggml.bos_token_id"),
        eos_id=opt_int("tokenizer.ggml.eos_token_id"),
        unk_id=opt_int("tokenizer.ggml.unknown_token_id"),
        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        add_space_prefix=bool(_field(reader, "tokenizer.ggml.add_space_prefix", False)),
    )


def read_tensors(reader: Any, path: Path, cfg: LlamaConfig) -> dict[str, np.ndarray]:
    """Dequantize every tensor to float32, numpy layout (GGUF shape reversed)."""
    gguf = require_gguf()
    out: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        try:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            a = np.ascontiguousarray(np.asarray(a, dtype=np.float32).reshape(shape))
        except NotImplementedError as e:
            raise PacimError(f"{path}: tensor {t.name}: {e}") from e
        except (ValueError, TypeError) as e:
            raise PacimError(f"{path}: tensor {t.name} is corrupt ({e})") from e
        if not np.isfinite(a).all():
            raise PacimError(f"{path}: tensor {t.name} holds NaN or inf")
        out[t.name] = a
    d, hd = cfg.d_model, cfg.head_dim
    expect = {
        "token_embd.weight": (cfg.vocab_size, d),
        "blk.0.attn_q.weight": (cfg.n_heads * hd, d),
        "blk.0.attn_k.weight": (cfg.n_kv_heads * hd, d),
        "blk.0.ffn_down.weight": (d, cfg.d_ff),
    }
    for name, shp in expect.items():
        if out[name].shape != shp:
            raise PacimError(f"{path}: {name} has shape {out[name].shape}, expected {shp}")
    return out


F32_CACHE_VERSION = 1
F32_CACHE_MAX_BYTES = 2 << 30  # larger models are not cached as float32


def _f32_cache_path(p: Path) -> Path | None:
    """Directory of the float32 cache of a GGUF file (None when disabled by PACIM_F32_CACHE=0)."""
    if os.environ.get("PACIM_F32_CACHE", "1") == "0":
        return None
    st = p.stat()
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{F32_CACHE_VERSION}"
    return cache_dir() / "f32" / f"{p.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _save_f32(d: Path, gm: GGUFModel) -> None:
    """Write tensors as one float32 blob plus a JSON index (best effort, atomic rename)."""
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        index = []
        off = 0
        with (tmp / "tensors.f32").open("wb") as f:
            for name, a in gm.tensors.items():
                f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())
                index.append([name, list(a.shape), off])
                off += a.size
        meta = {
            "config": dataclasses.asdict(gm.config),
            "tokenizer": dataclasses.asdict(gm.tokenizer),
            "index": index,
            "elements": off,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        tmp.replace(d)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_f32(d: Path, p: Path) -> GGUFModel | None:
    """Read a float32 cache written by _save_f32; None when absent or unreadable."""
    try:
        meta = json.loads((d / "meta.json").read_text())
        blob = np.fromfile(d / "tensors.f32", dtype=np.float32)
        if blob.size != meta["elements"]:
            return None
        tensors = {}
        for name, shape, off in meta["index"]:
            n = int(np.prod(shape)) if shape else 1
            tensors[name] = blob[off : off + n].reshape(shape)
        cfg = LlamaConfig(**meta["config"])
        spec = TokenizerSpec(**meta["tokenizer"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return GGUFModel(path=p, config=cfg, tensors=tensors, tokenizer=spec)


def load_gguf(path: str | os.PathLike[str], *, use_cache: bool = True) -> GGUFModel:
    """Read a Llama-family GGUF: config, float32 tensors, tokenizer spec.

    The dequantized float32 tensors are cached next to the model (``<cache>/f32/``) so later
    loads skip the GGUF parsing and dequantization (~10 s -> <1 s); set PACIM_F32_CACHE=0 to
    disable.
    """
    p = Path(path)
    if not p.is_file():
        raise PacimError(f"model file not found: {p}")
    d = _f32_cache_path(p) if use_cache else None
    if d is not None and d.is_dir():
        gm = _load_f32(d, p)
        if gm is not None:
            return gm
    reader = _open_reader(p)
    cfg = read_config(reader, p)
    spec = read_tokenizer_spec(reader, p)
    tensors = read_tensors(reader, p, cfg)
    gm = GGUFModel(path=p, config=cfg, tensors=tensors, tokenizer=spec)
    if d is not None and sum(a.size for a in tensors.values()) * 4 <= F32_CACHE_MAX_BYTES:
        _save_f32(d, gm)
    return gm


def read_gguf_config(path: str | os.PathLike[str]) -> LlamaConfig:
    """The LlamaConfig of a GGUF file: from its float32 cache's index when present (parsing
    the GGUF's metadata reads its whole vocabulary, ~5 s), else from the metadata."""
    p = Path(path)
    if not p.is_file():
        raise PacimError(f"model file not found: {p}")
    d = _f32_cache_path(p)
    if d is not None:
        try:
            return LlamaConfig(**json.loads((d / "meta.json").read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no (readable) cache: the metadata
    return read_config(_open_reader(p), p)
