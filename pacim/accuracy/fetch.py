"""Fashion-MNIST from Debian's package ``dataset-fashion-mnist``, verified and cached.

``fetch_fashion_mnist()`` gets the .deb with ``apt-get download`` (no root needed once the
package lists exist), opens it in Python (a .deb is an ar archive holding data.tar.xz), extracts
only the four idx files, checks each one's SHA-256 and writes them to
``$PACIM_CACHE/datasets/fashion-mnist`` (default ``~/.cache/pacim``). A folder that already
holds the four files (``.gz`` or not), a .deb, or the installed package's folder can be given
instead (``source``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..errors import PacimError

DATASET = "fashion-mnist"
DEB_PACKAGE = "dataset-fashion-mnist"
DEB_MEMBER_DIR = "usr/share/datasets/fashion-mnist"
# SHA-256 of the decompressed files, measured on the files of dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (Debian bookworm); the .gz files there hash to
# t10k-images cc1d090a.., t10k-labels 8d3605d1.., train-images b0564c3e.., train-labels 0ae29f65..
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
HOW_TO_GET = (
    f"get the four files {', '.join(f + '.gz' for f in FILES)} (Debian/Ubuntu package "
    f"{DEB_PACKAGE}: `apt-get download {DEB_PACKAGE}`, or github.com/zalandoresearch/"
    f"fashion-mnist, folder data/fashion), then run: pacim data fetch {DATASET} --from DIR")


def cache_root() -> Path:
    """``$PACIM_CACHE`` or ``~/.cache/pacim``."""
    env = os.environ.get("PACIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pacim"


def dataset_dir(name: str = DATASET) -> Path:
    """Where a fetched dataset lives in the cache."""
    return cache_root() / "datasets" / name


def _content_sha256(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def cached_fashion_mnist() -> Path | None:
    """The cache folder when it holds all four files (not re-hashed: they were at fetch)."""
    d = dataset_dir()
    return d if all(_find(d, f) for f in FILES) else None


def _store(files: dict[str, bytes], where: str) -> Path:
    """Verify the four files' hashes and write them (atomically) into the cache."""
    for stem, want in FILES.items():
        if stem not in files:
            raise PacimError(f"{where}: {stem}(.gz) not found; {HOW_TO_GET}")
        got = _content_sha256(files[stem])
        if got != want:
            raise PacimError(f"{where}: {stem} has SHA-256 {got}, expected {want}: not the "
                             "Fashion-MNIST file (corrupt or a different dataset)")
    out = dataset_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stem, data in files.items():
            name = stem + (".gz" if data[:2] == b"\x1f\x8b" else "")
            for old in (out / stem, out / (stem + ".gz")):
                old.unlink(missing_ok=True)
            tmp = out / (name + ".part")
            tmp.write_bytes(data)
            tmp.replace(out / name)
    except OSError as e:
        raise PacimError(f"cannot write the dataset cache {out}: {e.strerror}") from None
    return out


def _from_folder(folder: Path) -> dict[str, bytes]:
    files = {}
    for stem in FILES:
        p = _find(folder, stem)
        if p is not None:
            files[stem] = p.read_bytes()
    return files


def ar_members(raw: bytes, where: str) -> dict[str, bytes]:
    """Members of an ar archive (the container of a .deb), by name."""
    if raw[:8] != b"!<arch>\n":
        raise PacimError(f"{where}: not a .deb (ar archive) file")
    out, pos = {}, 8
    while pos + 60 <= len(raw):
        head = raw[pos:pos + 60]
        name = head[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(head[48:58].decode("ascii").strip())
        except ValueError:
            raise PacimError(f"{where}: corrupt ar member header at byte {pos}") from None
        out[name] = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)  # members are 2-byte aligned
    return out


def files_from_deb(deb: Path) -> dict[str, bytes]:
    """The four idx files inside dataset-fashion-mnist's .deb, read without dpkg."""
    raw = deb.read_bytes()
    members = ar_members(raw, str(deb))
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise PacimError(f"{deb}: no data.tar.* member in the .deb")
    try:
        tar = tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*")
    except tarfile.TarError as e:
        raise PacimError(f"{deb}: cannot open {data_name} ({e})") from None
    files = {}
    with tar:
        for m in tar.getmembers():
            path = m.name.removeprefix("./")
            stem = Path(path).name.removesuffix(".gz")
            if m.isfile() and str(Path(path).parent) == DEB_MEMBER_DIR and stem in FILES:
                f = tar.extractfile(m)
                if f is not None:
                    files[stem] = f.read()
    return files


def _apt_download(tmp: Path) -> Path:
    """`apt-get download` the package into tmp (one `apt-get update` if it is unknown)."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise PacimError(f"apt-get is not available on this machine; {HOW_TO_GET}")

    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run([apt, "download", DEB_PACKAGE], cwd=tmp, capture_output=True,
                              text=True, timeout=600)

    r = download()
    if r.returncode != 0 and "Unable to locate" in r.stderr:
        subprocess.run([apt, "update"], capture_output=True, text=True, timeout=600)
        r = download()
    debs = sorted(tmp.glob(f"{DEB_PACKAGE}_*.deb"))
    if r.returncode != 0 or not debs:
        why = (r.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise PacimError(f"apt-get download {DEB_PACKAGE} failed ({why}); {HOW_TO_GET}")
    return debs[-1]


def fetch_fashion_mnist(source: str | Path | None = None, *, force: bool = False) -> Path:
    """Fashion-MNIST's four idx files in the cache folder, fetched and verified once.

    source: a folder with the files, a .deb of dataset-fashion-mnist, or None (the cache; else
    the installed package's /usr/share folder; else `apt-get download`).
    """
    if source is None and not force and (hit := cached_fashion_mnist()) is not None:
        return hit
    if source is not None:
        src = Path(source).expanduser()
        if src.is_dir():
            return _store(_from_folder(src), str(src))
        if src.is_file():
            return _store(files_from_deb(src), str(src))
        raise PacimError(f"{src}: no such file or directory")
    installed = Path("/") / DEB_MEMBER_DIR
    if installed.is_dir() and all(_find(installed, f) for f in FILES):
        return _store(_from_folder(installed), str(installed))
    with tempfile.TemporaryDirectory(prefix="pacim-fetch-") as d:
        deb = _apt_download(Path(d))
        return _store(files_from_deb(deb), str(deb.name))
