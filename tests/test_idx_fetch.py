"""The IDX reader and the Fashion-MNIST fetcher (a .deb built in the test, no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest

from pacim.accuracy import fetch
from pacim.accuracy.datasets import load_dataset, read_idx_pair
from pacim.accuracy.idx import read_idx, write_idx
from pacim.errors import PacimError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.random.default_rng(0).standard_normal((5, 4, 3)) * 50).astype(dtype)
    p = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), a)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype).newbyteorder("=") and b.shape == a.shape
    assert np.array_equal(a, b)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    head = gzip.decompress(raw)[:16] if gz else raw[:16]
    assert head[:4] == bytes([0, 0, {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12,
                                     np.float32: 13, np.float64: 14}[dtype], 3])
    assert int.from_bytes(head[4:8], "big") == 5  # big-endian dimensions


def test_idx_bad_magic_and_truncation(tmp_path):
    good = write_idx(tmp_path / "x.idx", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    raw = good.read_bytes()
    (tmp_path / "magic.idx").write_bytes(b"\x00\x01" + raw[2:])
    with pytest.raises(PacimError, match="not an IDX file .magic number 00 01 08 03"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "type.idx").write_bytes(b"\x00\x00\x07\x03" + raw[4:])
    with pytest.raises(PacimError, match="not an IDX file"):
        read_idx(tmp_path / "type.idx")
    (tmp_path / "short.idx").write_bytes(raw[:-5])
    with pytest.raises(PacimError, match=r"truncated IDX file: dimensions \(2, 3, 4\) need 24 "
                                         "data bytes, the file has 19"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "head.idx").write_bytes(raw[:9])
    with pytest.raises(PacimError, match="truncated IDX header"):
        read_idx(tmp_path / "head.idx")
    (tmp_path / "long.idx").write_bytes(raw + b"\x00")
    with pytest.raises(PacimError, match="trailing data"):
        read_idx(tmp_path / "long.idx")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(PacimError, match="corrupt gzip"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(PacimError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")


def fake_fashion(folder, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n).astype(np.uint8)
    for stem, a in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), a)
    return arrays


def _hashes(arrays, tmp):
    """SHA-256 of each array's uncompressed IDX bytes (what the fetcher checks)."""
    return {stem: hashlib.sha256(write_idx(tmp / f"hash_{stem}", a).read_bytes()).hexdigest()
            for stem, a in arrays.items()}


def test_idx_folder_and_file_datasets(tmp_path):
    arrays = fake_fashion(tmp_path / "fm")
    test = load_dataset(tmp_path / "fm")
    train = load_dataset(tmp_path / "fm", split="train")
    assert len(test) == 5 and len(train) == 12
    x, y = test.get(0, 5)
    assert x.shape == (5, 1, 28, 28)
    assert np.allclose(x[:, 0], arrays["t10k-images-idx3-ubyte"] / 255.0)
    assert y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    one = load_dataset(tmp_path / "fm" / "train-images-idx3-ubyte.gz")
    assert len(one) == 12
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(PacimError, match="labels file t10k-labels-idx1-ubyte.gz is not beside"):
        read_idx_pair(tmp_path / "fm" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(PacimError, match="unknown split"):
        load_dataset(tmp_path / "fm", split="val")


def _deb(path, files: dict[str, bytes]):
    """A minimal .deb: ar archive of debian-binary, control.tar.xz, data.tar.xz."""
    def tar_xz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    data = tar_xz({f"./usr/share/datasets/fashion-mnist/{k}": v for k, v in files.items()}
                  | {"./usr/share/doc/dataset-fashion-mnist/copyright": b"MIT"})
    out = b"!<arch>\n"
    for name, blob in (("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz({})),
                       ("data.tar.xz", data)):
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode()
        out += blob + (b"\n" if len(blob) % 2 else b"")
    path.write_bytes(out)
    return path


def test_fetch_from_folder_deb_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "cache"))
    arrays = fake_fashion(tmp_path / "src")
    monkeypatch.setattr(fetch, "FILES", _hashes(arrays, tmp_path))
    with pytest.raises(PacimError, match="not fetched yet: run `pacim data fetch"):
        load_dataset("fashion-mnist")
    d = fetch.fetch_fashion_mnist(tmp_path / "src")
    assert d == tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert len(load_dataset("fashion-mnist", split="train")) == 12
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion-mnist:test" and ds.classes[9] == "Ankle boot"
    # a .deb, read in Python; files gzip-compressed inside, as in Debian's package
    deb = _deb(tmp_path / "dataset-fashion-mnist_1_all.deb",
               {f.name: f.read_bytes() for f in (tmp_path / "src").iterdir()})
    assert fetch.fetch_fashion_mnist(deb, force=True) == d
    # a wrong file is refused with its hash
    write_idx(tmp_path / "src" / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(PacimError, match="t10k-labels-idx1-ubyte has SHA-256 .* expected"):
        fetch.fetch_fashion_mnist(tmp_path / "src")
    with pytest.raises(PacimError, match="not a .deb"):
        fetch.fetch_fashion_mnist(tmp_path / "src" / "t10k-labels-idx1-ubyte.gz")
    # no apt-get, nothing installed, nothing cached: one message saying how to get the files
    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(fetch, "DEB_MEMBER_DIR", "no/such/dir")
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(PacimError, match="apt-get is not available.*--from DIR"):
        fetch.fetch_fashion_mnist()


def test_data_fetch_command(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pacim.cli import main

    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "cache"))
    arrays = fake_fashion(tmp_path / "src", gz=False)
    monkeypatch.setattr(fetch, "FILES", _hashes(arrays, tmp_path))
    r = CliRunner().invoke(main, ["data", "fetch", "fashion-mnist", "--from",
                                  str(tmp_path / "src")])
    assert r.exit_code == 0, r.output
    assert "12 training and 5 test images, SHA-256 verified" in r.output
    r = CliRunner().invoke(main, ["data", "fetch", "fashion-mnist", "--from",
                                  str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such file or directory" in r.output
