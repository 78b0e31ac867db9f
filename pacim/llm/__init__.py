"""LLM front end: GGUF Llama models in numpy, INSERTQUANT quantization, perplexity, workloads.

Needs the optional extra ``pip install 'pacim[llm]'`` (gguf, tokenizers). Heavy imports are
deferred so that ``import pacim.llm`` works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pacim.llm.model import LlamaModel
    from pacim.llm.tokenizer import Tokenizer

__all__ = ["load_model"]


def load_model(model: str = "smollm2-135m") -> tuple[LlamaModel, Tokenizer]:
    """Load a named model (downloaded once) or a Llama-family .gguf path: (model, tokenizer)."""
    from pacim.llm.gguf_io import load_gguf, resolve_model
    from pacim.llm.model import LlamaModel
    from pacim.llm.tokenizer import build_tokenizer

    gm = load_gguf(resolve_model(model))
    tok = build_tokenizer(gm.tokenizer)
    return LlamaModel(gm), tok
