"""Tokenizer built from GGUF metadata with the ``tokenizers`` library (no model hub).

Two GGUF tokenizer models are supported:

- ``gpt2`` (byte-level BPE: SmolLM2, Llama 3, ...): BPE from ``tokenizer.ggml.tokens`` and
  ``tokenizer.ggml.merges``; the pre-tokenizer follows ``tokenizer.ggml.pre`` (SmolLM:
  Digits(individual_digits=True) then ByteLevel(add_prefix_space=False); Llama 3: its split
  regex then ByteLevel without regex; otherwise plain GPT-2 ByteLevel); ByteLevel decoder.
- ``llama`` (SentencePiece BPE with byte fallback: Llama 2, TinyLlama, Mistral): merges are
  derived from the vocabulary as the Hugging Face converter does.

Control and user-defined tokens are added as special / added tokens, so ``<|im_start|>`` etc.
encode to one id. Encoding then decoding returns the input text exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pacim.errors import PacimError
from pacim.llm.gguf_io import TokenizerSpec, require_tokenizers

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """Merges of a SentencePiece BPE vocabulary: every split of a piece into two known pieces,
    ordered by the merged piece's score (then by the parts' ids), as the HF converter does."""
    vocab = {t: i for i, t in enumerate(tokens) if not types or types[i] == TOKEN_NORMAL}
    score = scores if scores else [-float(i) for i in range(len(tokens))]
    found: list[tuple[float, int, int, str, str]] = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                found.append((-score[pid], vocab[left], vocab[right], left, right))
    found.sort()
    return [(a, b) for _, _, _, a, b in found]


class Tokenizer:
    """Text <-> token ids for a GGUF model."""

    def __init__(self, spec: TokenizerSpec) -> None:
        tk = require_tokenizers()
        from tokenizers import AddedToken, decoders, models, normalizers  # noqa: PLC0415
        from tokenizers import pre_tokenizers as pt  # noqa: PLC0415

        self.spec = spec
        toks = spec.tokens
        types = spec.token_types or [TOKEN_NORMAL] * len(toks)
        vocab = {t: i for i, t in enumerate(toks)}
        if len(vocab) != len(toks):  # duplicate strings: keep the first id
            vocab = {}
            for i, t in enumerate(toks):
                vocab.setdefault(t, i)
        unk = toks[spec.unk_id] if spec.unk_id is not None and spec.unk_id < len(toks) else None
        if spec.model == "gpt2":
            merges = []
            for m in spec.merges:
                a, sep, b = m.partition(" ")
                if not sep:
                    raise PacimError(f"malformed BPE merge {m!r} in GGUF tokenizer")
                merges.append((a, b))
            tok = tk.Tokenizer(models.BPE(vocab, merges, ignore_merges=False))
            pre = spec.pre.lower()
            if pre in ("smollm",):
                tok.pre_tokenizer = pt.Sequence(
                    [pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False)]
                )
            elif pre in ("llama-bpe", "llama3", "llama-v3", "smaug-bpe"):
                split = pt.Split(tk.Regex(LLAMA3_SPLIT), behavior="isolated", invert=False)
                tok.pre_tokenizer = pt.Sequence(
                    [split, pt.ByteLevel(add_prefix_space=False, use_regex=False)]
                )
            else:
                tok.pre_tokenizer = pt.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        elif spec.model == "llama":
            merges = _spm_merges(toks, spec.scores, types)
            tok = tk.Tokenizer(models.BPE(vocab, merges, unk_token=unk, byte_fallback=True))
            norm = [normalizers.Replace(" ", "\u2581")]
            if spec.add_space_prefix:
                norm.insert(0, normalizers.Prepend("\u2581"))
            tok.normalizer = normalizers.Sequence(norm)
            dec: list[Any] = [decoders.Replace("\u2581", " "), decoders.ByteFallback()]
            dec.append(decoders.Fuse())
            if spec.add_space_prefix:
                dec.append(decoders.Strip(" ", 1, 0))
            tok.decoder = decoders.Sequence(dec)
        else:
            raise PacimError(f"unsupported GGUF tokenizer model {spec.model!r} (gpt2 or llama)")
        added = [
            AddedToken(t, special=(types[i] == TOKEN_CONTROL), normalized=False)
            for i, t in enumerate(toks)
            if types[i] in (TOKEN_CONTROL, TOKEN_USER)
        ]
        if added:
            tok.add_tokens(added)
        self._tok = tok

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self.spec.tokens)

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id, if the model defines one."""
        return self.spec.bos_id

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence id, if the model defines one."""
        return self.spec.eos_id

    def encode(self, text: str, *, add_bos: bool | None = None) -> np.ndarray:
        """Token ids of text (int64); a BOS id is prepended when the GGUF asks for it."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_bos is None:
            add_bos = self.spec.add_bos
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids: Any) -> str:
        """Text of token ids (special tokens kept)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


def build_tokenizer(spec: TokenizerSpec) -> Tokenizer:
    """The Tokenizer of a GGUF tokenizer spec."""
    return Tokenizer(spec)
