"""Labeled image datasets: IDX ((Fashion-)MNIST), CIFAR python batches, ImageFolder trees, .npz.

Every reader yields batches of float64 images in (B, C, H, W) (or (B, F) for flat features)
plus int64 labels. Pixel scaling follows torchvision: uint8 pixels are divided by 255, float
pixels are taken as they are; then ``(x - mean[c]) / std[c]`` per channel (`Normalization`).

- ``fashion-mnist``: the name of the dataset fetched by ``pacim data fetch fashion-mnist``.
- IDX: a folder with ``{train,t10k}-images-idx3-ubyte[.gz]`` and the matching
  ``-labels-idx1-ubyte`` files, or one images file (its labels file beside it).
- CIFAR-10/100: the python pickles (dicts with b'data' (N, 3072) and b'labels' or
  b'fine_labels'); a directory ``cifar-10-batches-py`` means its ``test_batch`` (split
  ``train``: ``data_batch_1..5``), a directory ``cifar-100-python`` its ``test`` (``train``) file.
  Pickles are read with a restricted unpickler that only rebuilds numpy arrays and plain
  containers.
- ImageFolder: ``root/<class>/<image>.png|jpg|jpeg``, classes sorted by name -> labels 0..n-1
  (torchvision's convention). Read with Pillow when present, else matplotlib (PNG only).
- .npz: arrays ``images`` (or ``x``/``data``/``X``) and ``labels`` (or ``y``/``targets``);
  NCHW, NHWC, (N, H, W) or flat (N, F).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PacimError
from .norm import Normalization

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")

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


SPLITS = ("test", "train")
_IDX_PREFIX = {"test": "t10k", "train": "train"}
_CIFAR_FILES = {"test": ("test_batch", "test"),
                "train": ("data_batch_1", "train")}  # cifar-10-batches-py / cifar-100-python


class SubsetDataset(Dataset):
    """Images [start, stop) of another dataset (e.g. a held-out tail of a training split)."""

    def __init__(self, base: Dataset, start: int, stop: int | None = None) -> None:
        n = len(base)
        stop = n if stop is None else stop
        if not 0 <= start < stop <= n:
            raise PacimError(f"{base.name}: images [{start}, {stop}) are not within its "
                             f"{n} images")
        self.base, self.start, self.stop = base, int(start), int(stop)
        self.name = f"{base.name}[{start}:{stop}]"
        self.classes = base.classes

    def __len__(self) -> int:
        return self.stop - self.start

    def _raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base._raw(self.start + start, self.start + min(stop, len(self)))


def read_idx_pair(images: str | Path, labels: str | Path | None = None,
                  name: str | None = None) -> ArrayDataset:
    """An IDX images file and its labels file (default: the name with labels-idx1)."""
    from .idx import read_idx

    ip = Path(images)
    lp = Path(labels) if labels is not None else ip.with_name(
        ip.name.replace("images-idx3", "labels-idx1"))
    if lp == ip or not lp.is_file():
        raise PacimError(f"{ip}: its labels file {lp.name} is not beside it")
    x, y = read_idx(ip), read_idx(lp)
    if x.ndim != 3 or y.ndim != 1:
        raise PacimError(f"{ip}: expected (N, H, W) images and (N,) labels, got {x.shape} and "
                         f"{y.shape}")
    return ArrayDataset(x[:, None], y, name=name or f"idx:{ip.name}")


def _idx_images(folder: Path, split: str) -> Path | None:
    for suffix in (".gz", ""):
        f = folder / f"{_IDX_PREFIX[split]}-images-idx3-ubyte{suffix}"
        if f.is_file():
            return f
    return None


def _cifar_split(p: Path, split: str) -> Dataset | None:
    """A CIFAR python folder's split (training: batches 1..5 joined), or None."""
    test_name, c100_name = _CIFAR_FILES[split]
    if (p / c100_name).is_file() and not (p / "data_batch_1").is_file():
        return read_cifar(p / c100_name)
    if not (p / test_name).is_file():
        return None
    if split == "test":
        return read_cifar(p / test_name)
    parts = [read_cifar(f) for f in sorted(p.glob("data_batch_[0-9]*"))]
    return ArrayDataset(np.concatenate([d.images for d in parts]),
                        np.concatenate([d.labels for d in parts]), name=f"cifar:{p.name}:train",
                        classes=parts[0].classes)


def load_dataset(path: str | Path, *, size: tuple[int, int] | None = None,
                 channels: int | None = None, split: str = "test") -> Dataset:
    """Open a dataset by name (``fashion-mnist``) or path: an IDX folder or file, a CIFAR batch
    (file or directory), .npz, or ImageFolder.

    size (H, W) / channels: the model's input, used to resize folder images. split: ``test``
    (default) or ``train``, for the datasets that hold both (fashion-mnist, IDX and CIFAR
    folders); a single file or ImageFolder is what it is.
    """
    if split not in SPLITS:
        raise PacimError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    from .fetch import CLASSES, DATASET, cached_fashion_mnist

    if str(path) == DATASET:
        d = cached_fashion_mnist()
        if d is None:
            raise PacimError(f"dataset {DATASET} is not fetched yet: run `pacim data fetch "
                             f"{DATASET}` (it needs apt-get, or --from a folder of its files)")
        ds = read_idx_pair(_idx_images(d, split), name=f"{DATASET}:{split}")  # type: ignore
        ds.classes = list(CLASSES)
        return ds
    p = Path(path)
    if not p.exists():
        raise PacimError(f"{p}: no such file or directory")
    if p.is_dir():
        img = _idx_images(p, split)
        if img is not None:
            return read_idx_pair(img, name=f"idx:{p.name}:{split}")
        ds = _cifar_split(p, split)
        return ds if ds is not None else FolderDataset(p, size, channels)
    name = p.name.lower()
    if "-images-idx" in name or name.endswith((".idx3-ubyte", ".idx3-ubyte.gz")):
        return read_idx_pair(p)
    if p.suffix.lower() == ".npz":
        return read_npz(p)
    if p.suffix.lower() in IMAGE_EXTS:
        raise PacimError(f"{p}: a single image has no label; use an ImageFolder tree "
                         "root/<class>/<image>")
    return read_cifar(p)
