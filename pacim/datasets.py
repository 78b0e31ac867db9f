"""Labeled image datasets for `pacim accuracy`: CIFAR python batches, ImageFolder trees, .npz.

Every reader yields batches of float64 images in (B, C, H, W) (or (B, F) for flat features)
plus int64 labels. Pixel scaling follows torchvision: uint8 pixels are divided by 255, float
pixels are taken as they are; then ``(x - mean[c]) / std[c]`` per channel (`Normalization`).

- CIFAR-10/100: the python pickles (dicts with b'data' (N, 3072) and b'labels' or
  b'fine_labels'); a directory ``cifar-10-batches-py`` means its ``test_batch``, a directory
  ``cifar-100-python`` its ``test`` file. Pickles are read with a restricted unpickler that only
  rebuilds numpy arrays and plain containers.
- ImageFolder: ``root/<class>/<image>.png|jpg|jpeg``, classes sorted by name -> labels 0..n-1
  (torchvision's convention). Read with Pillow when present, else matplotlib (PNG only).
- .npz: arrays ``images`` (or ``x``/``data``/``X``) and ``labels`` (or ``y``/``targets``);
  NCHW, NHWC, (N, H, W) or flat (N, F).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PacimError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
NORM_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0,), (1.0,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# --- normalization ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """Per-channel (x - mean) / std, after scaling uint8 pixels to [0, 1]."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            raise PacimError("normalization: mean and std must not be empty")
        if any(s == 0 for s in self.std):
            raise PacimError(f"normalization: std must be nonzero, got {list(self.std)}")

    @classmethod
    def parse(cls, mean: str | Sequence[float] | None = None,
              std: str | Sequence[float] | None = None, norm: str | None = None,
              ) -> Normalization:
        """From CLI text ('0.49,0.48,0.45'), numbers, a preset name or a YAML file (norm).

        The YAML file holds ``mean: [...]`` and ``std: [...]`` (optionally under a
        ``normalization:`` key). Explicit mean/std override the preset or file.
        """
        base = cls()
        if norm:
            base = cls.from_yaml(norm) if norm.lower() not in NORM_PRESETS else cls(
                *NORM_PRESETS[norm.lower()])
        m = _floats(mean, "mean") if mean is not None else base.mean
        s = _floats(std, "std") if std is not None else base.std
        return cls(m, s)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Normalization:
        """Read mean/std from a YAML file."""
        from .arch import read_yaml

        p = Path(path)
        if not p.is_file():
            raise PacimError(f"normalization {path!r}: not a preset "
                             f"({', '.join(NORM_PRESETS)}) nor an existing YAML file")
        d = read_yaml(p)
        if isinstance(d, dict) and isinstance(d.get("normalization"), dict):
            d = d["normalization"]
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise PacimError(f"{p}: expected keys mean and std (lists of numbers)")
        return cls(_floats(d["mean"], f"{p}: mean"), _floats(d["std"], f"{p}: std"))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize float images (B, C, ...) or features (B, F)."""
        m = np.asarray(self.mean, dtype=np.float64)
        s = np.asarray(self.std, dtype=np.float64)
        if m.size == 1 and s.size == 1:
            return (x - m[0]) / s[0]
        c = x.shape[1] if x.ndim >= 2 else 1
        for v, what in ((m, "mean"), (s, "std")):
            if v.size not in (1, c):
                raise PacimError(f"normalization: {what} has {v.size} values but the images "
                                 f"have {c} channels")
        shape = (1, c) + (1,) * (x.ndim - 2)
        return (x - np.broadcast_to(m, (c,)).reshape(shape)) / np.broadcast_to(
            s, (c,)).reshape(shape)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly dict."""
        return {"mean": list(self.mean), "std": list(self.std)}


def _floats(v: str | Sequence[float] | Any, what: str) -> tuple[float, ...]:
    try:
        if isinstance(v, str):
            out = tuple(float(t) for t in v.replace(" ", "").split(",") if t)
        elif isinstance(v, (int, float)):
            out = (float(v),)
        else:
            out = tuple(float(t) for t in v)
    except (TypeError, ValueError):
        raise PacimError(f"{what}: expected comma-separated numbers, got {v!r}") from None
    if not out:
        raise PacimError(f"{what}: no values given")
    return out


# --- datasets ----------------------------------------------------------------------------


class Dataset:
    """A labeled dataset; subclasses implement `__len__` and `_raw(start, stop)`."""

    name: str = "dataset"
    classes: list[str] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Images as stored (uint8 or float) and int labels."""
        raise NotImplementedError  # pragma: no cover

    def get(self, start: int, stop: int, norm: Normalization | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
        """Images [start, stop) as normalized float64 plus int64 labels."""
        x, y = self._raw(start, stop)
        x = to_float(x)
        if norm is not None:
            x = norm.apply(x)
        return x, np.asarray(y, dtype=np.int64)

    def batches(self, size: int, limit: int | None = None, norm: Normalization | None = None,
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Consecutive batches of `size` images over the first `limit` images."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(0, n, size):
            yield self.get(i, min(i + size, n), norm)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels / 255, other numbers as float64."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if x.dtype.kind not in "fiub":
        raise PacimError(f"images must be numeric, got dtype {x.dtype}")
    return x.astype(np.float64)


class ArrayDataset(Dataset):
    """Images and labels held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "arrays",
                 classes: list[str] | None = None) -> None:
        images = _to_nchw(np.asarray(images), name)
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise PacimError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
        if labels.dtype.kind not in "iu" and not np.all(np.mod(labels, 1) == 0):
            raise PacimError(f"{name}: labels must be integers")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.name = name
        self.classes = classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[start:stop], self.labels[start:stop]


def _to_nchw(a: np.ndarray, name: str) -> np.ndarray:
    """NCHW from NCHW / NHWC / (N, H, W); flat (N, F) is kept."""
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4:
        if a.shape[1] not in (1, 3, 4) and a.shape[-1] in (1, 3, 4):
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))
        return a
    raise PacimError(f"{name}: images must be (N, C, H, W), (N, H, W, C), (N, H, W) or (N, F); "
                     f"got shape {a.shape}")


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers only: a dataset file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
        ("builtins", "bytearray"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            if module.startswith("numpy.core.") and hasattr(np, "_core"):
                module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy >= 2
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _key(d: dict[Any, Any], *names: str) -> Any:
    for n in names:
        for k in (n, n.encode()):
            if k in d:
                return d[k]
    return None


def read_cifar(path: str | Path) -> ArrayDataset:
    """One CIFAR-10/100 python batch file (pickled dict)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            d = _SafeUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise PacimError(f"{p}: not a CIFAR python batch ({e})") from None
    except OSError as e:
        raise PacimError(f"{p}: cannot read: {e.strerror}") from None
    if not isinstance(d, dict):
        raise PacimError(f"{p}: not a CIFAR python batch (expected a dict)")
    data = _key(d, "data")
    labels = _key(d, "labels", "fine_labels")
    if data is None or labels is None:
        raise PacimError(f"{p}: a CIFAR batch needs keys 'data' and 'labels' (or "
                         "'fine_labels')")
    data = np.asarray(data)
    if data.ndim == 2:
        if data.shape[1] != 3072:
            raise PacimError(f"{p}: CIFAR rows must hold 3072 values, got {data.shape[1]}")
        data = data.reshape(-1, 3, 32, 32)
    return ArrayDataset(data, np.asarray(labels), name=f"cifar:{p.name}")


def read_npz(path: str | Path) -> ArrayDataset:
    """A .npz with images and labels."""
    p = Path(path)
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise PacimError(f"{p}: not a readable .npz ({e})") from None
    with z:
        img_key = next((k for k in ("images", "x", "data", "X") if k in z.files), None)
        lab_key = next((k for k in ("labels", "y", "targets", "Y") if k in z.files), None)
        if img_key is None or lab_key is None:
            raise PacimError(f"{p}: expected arrays 'images' and 'labels' (or x/y), found "
                             f"{', '.join(z.files) or 'none'}")
        return ArrayDataset(z[img_key], z[lab_key], name=f"npz:{p.name}")


class FolderDataset(Dataset):
    """An ImageFolder tree, images read lazily per batch."""

    def __init__(self, root: str | Path, size: tuple[int, int] | None = None,
                 channels: int | None = None) -> None:
        self.root = Path(root)
        self.classes = sorted(d.name for d in self.root.iterdir()
                              if d.is_dir() and not d.name.startswith("."))
        self.files: list[tuple[Path, int]] = []
        for label, cls in enumerate(self.classes):
            for f in sorted((self.root / cls).rglob("*")):
                if f.suffix.lower() in IMAGE_EXTS and f.is_file():
                    self.files.append((f, label))
        if not self.files:
            raise PacimError(f"{self.root}: no images (.png/.jpg) found in class sub-folders "
                             "root/<class>/<image>")
        self.size = size
        self.channels = channels
        self.name = f"folder:{self.root.name}"

    def __len__(self) -> int:
        return len(self.files)

    def _raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        imgs = [read_image(f, self.size, self.channels) for f, _ in self.files[start:stop]]
        shapes = {i.shape for i in imgs}
        if len(shapes) > 1:
            why = ("the model's input size is not fixed, so they cannot be resized to it"
                   if self.size is None else "install Pillow so they can be resized")
            raise PacimError(f"{self.root}: images of different sizes {sorted(shapes)}; {why}")
        labels = np.array([lab for _, lab in self.files[start:stop]], dtype=np.int64)
        return np.stack(imgs), labels


def read_image(path: Path, size: tuple[int, int] | None = None, channels: int | None = None,
               ) -> np.ndarray:
    """One image as (C, H, W): uint8 via Pillow, or float [0, 1] via matplotlib (PNG).

    When `size` (H, W) differs from the image's, Pillow resizes the shorter side to size/0.875
    and center-crops (the usual ImageNet evaluation transform); a same-aspect image is
    resized directly.
    """
    try:
        from PIL import Image
    except ImportError:
        Image = None  # noqa: N806
    if Image is not None:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if size is not None and (im.height, im.width) != tuple(size):
                    im = _resize_crop(im, size)
                a = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise PacimError(f"{path}: cannot read image ({e})") from None
    else:
        if path.suffix.lower() != ".png":
            raise PacimError(f"{path}: reading {path.suffix} needs Pillow: pip install pillow")
        import matplotlib.image as mpimg

        try:
            a = np.asarray(mpimg.imread(str(path)), dtype=np.float64)
        except (OSError, ValueError, SyntaxError) as e:
            raise PacimError(f"{path}: cannot read image ({e})") from None
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]
        if channels == 1 and a.ndim == 3:
            a = a @ np.array([0.299, 0.587, 0.114])
        elif channels != 1 and a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if size is not None and a.shape[:2] != tuple(size):
            raise PacimError(f"{path}: image is {a.shape[0]}x{a.shape[1]}, the model wants "
                             f"{size[0]}x{size[1]}; install Pillow to resize")
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def _resize_crop(im: Any, size: tuple[int, int]) -> Any:
    from PIL import Image

    h, w = size
    if im.height * w == im.width * h:
        return im.resize((w, h), Image.BILINEAR)
    short = round(min(h, w) / 0.875)
    scale = short / min(im.width, im.height)
    im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))),
                   Image.BILINEAR)
    left = (im.width - w) // 2
    top = (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def load_dataset(path: str | Path, *, size: tuple[int, int] | None = None,
                 channels: int | None = None) -> Dataset:
    """Open a dataset by its path: CIFAR batch (file or directory), .npz, or ImageFolder.

    size (H, W) / channels: the model's input, used to resize folder images.
    """
    p = Path(path)
    if not p.exists():
        raise PacimError(f"{p}: no such file or directory")
    if p.is_dir():
        for name in ("test_batch", "test"):  # cifar-10-batches-py / cifar-100-python
            if (p / name).is_file() and not (p / name).is_dir():
                return read_cifar(p / name)
        return FolderDataset(p, size, channels)
    if p.suffix.lower() == ".npz":
        return read_npz(p)
    if p.suffix.lower() in IMAGE_EXTS:
        raise PacimError(f"{p}: a single image has no label; use an ImageFolder tree "
                         "root/<class>/<image>")
    return read_cifar(p)
