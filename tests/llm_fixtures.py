"""The tiny spiky GGUF and its texts, shared by the INSERTQUANT test modules.

The spiky tiny model (tests.test_llm_synthetic.write_gguf with ``spike_birth``) makes token 0
(``<|endoftext|>``) a sink whose massive activation is born at a known layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BIRTH, LAYERS4 = 1, 4


def spiky_gguf(d: Path) -> Path:
    """The spiky 4-layer model, its spike born at layer BIRTH."""
    from tests.test_llm_synthetic import write_gguf

    return write_gguf(d / "spiky.gguf", layers=LAYERS4, spike_birth=BIRTH, seed=3,
                      head_scale=0.1)  # fmt: skip


def spiky_texts(d: Path, spiky: Path) -> tuple[Path, Path]:
    """Texts whose 32-token windows all start with <|endoftext|>; some hold a second one."""
    from pacim.llm.calibration import get_model

    _, tok = get_model(str(spiky))
    out = []
    for name, words, second in (("eval", "the rain in spain stays on the plain ", (1, 3)),
                                ("calib", "a stitch in time saves nine then more ", (0, 2))):
        ids = tok.encode(words * 8)
        parts = []
        for k in range(6):
            body = list(ids[k : k + 31])
            if k in second:
                body[10] = 0  # a delimiter-like second sink inside the window
            parts.append(tok.decode([0, *body]))
        p = d / f"{name}.txt"
        p.write_text("".join(parts))
        assert tok.encode(p.read_text()).size == 6 * 32
        out.append(p)
    return out[0], out[1]


def spiky_config(spiky: Path, texts: tuple[Path, Path], **kw: Any) -> Any:
    """An EvalConfig on the spiky model: 192 tokens in 32-token windows, both texts."""
    from pacim.llm.eval import EvalConfig

    ev, ca = texts
    base = dict(model=str(spiky), text=str(ev), calib=str(ca), tokens=192, ctx=32,
                calib_tokens=192)  # fmt: skip
    return EvalConfig(**{**base, **kw})
