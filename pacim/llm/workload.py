"""SmolLM2-135M (or any Llama GGUF) as a pacim Workload with real weights and activations.

Every linear layer (``blk.<i>.attn_q`` ... ``blk.<i>.ffn_down`` and the tied ``output`` head) is a
``linear`` Layer carrying its float weight (out, in) and the float input it receives in the
INSERTQUANT-quantized model on the evaluation text: the activation the static quantizer
represents (clipped to the calibrated range). With the default Hadamard rotation both are in the
rotated domain (input ``x R``, weight ``W R``; same product), and the rotation's additions are
reported in ``meta["rotation_adds"]`` (digital periphery work, not mapped). Spike-token rows
inside the template span are pre-computed by INSERTQUANT, not run on the macro, so those layers
have ``tokens - n_spike`` rows.
The activation x activation products of attention (``attn_qk`` = Q K^T, ``attn_pv`` = P V, all
heads, dense) are ``matmul`` Layers: counted, and mapped as the arch's ``attention`` section says.
"""

from __future__ import annotations

import numpy as np

from pacim.errors import PacimError
from pacim.llm.calibration import get_calibration, get_model, get_weights
from pacim.llm.eval import EVAL_TEXT, calibration_windows, read_text
from pacim.llm.insertquant import QuantHooks, parse_mode
from pacim.llm.model import SITE_LINEARS
from pacim.llm.rotation import DEFAULT_ROTATION
from pacim.llm.settings import parse_setting
from pacim.workloads.ir import Layer, Workload, linear_layer, matmul_layer
from pacim.workloads.llm_shape import LlmShape, periphery_ops

WEIGHT_BITS = 8


def smollm2_workload(
    tokens: int = 128,
    *,
    bits: int = 8,
    model: str = "smollm2-135m",
    seed: int = 0,
    include_head: bool = True,
    rotation: str = DEFAULT_ROTATION,
    method: str = "insertquant-norm",
) -> Workload:
    """Workload of every linear layer of the model on ``tokens`` evaluation tokens.

    ``bits``: activation bits of the INSERTQUANT model the inputs are captured from (weights at
    8 bits). ``seed`` 0 takes the first tokens of the shipped evaluation text; another seed picks
    a random window of it. ``rotation``: the input rotation ("hadamard" or "none").
    ``method``: the quantized mode the inputs are captured from, at the per-tensor W8A``bits``
    setting (default: pacim's first front end, whose numbers docs/WORKLOADS.md quotes).
    """
    if tokens < 2:
        raise PacimError(f"tokens must be >= 2, got {tokens}")
    lm, tok = get_model(model)
    cfg = lm.config
    text, label = read_text(None, EVAL_TEXT)
    ids = tok.encode(text)
    if ids.size < tokens:
        raise PacimError(f"{label} has only {ids.size} tokens, fewer than tokens={tokens}")
    off = 0 if seed == 0 else int(np.random.default_rng(seed).integers(0, ids.size - tokens + 1))
    window = ids[off : off + tokens]
    meth = parse_mode(method)
    if not meth.quantized or meth.base == "prefixquant" or meth.pac:
        raise PacimError(f"the workload captures inputs of a quantized mode without a prefix or "
                         f"the macro, not {method!r}")  # fmt: skip
    setting = parse_setting(f"w{WEIGHT_BITS}a{bits}", rotation=rotation)
    calib = get_calibration(model, calibration_windows(tok), setting)
    rot = calib.rotation if meth.rotated else "none"
    weights = get_weights(model, setting, rot)
    captured: dict[tuple[int, str], np.ndarray] = {}

    def capture(layer: int, site: str, x: np.ndarray) -> None:
        captured[(layer, site)] = np.ascontiguousarray(x, dtype=np.float32)

    hooks = QuantHooks(calib, weights, method, capture=capture)
    hidden = lm.hidden(window, hooks)
    t = int(window.size)
    hd, nh = cfg.head_dim, cfg.n_heads
    rotation_adds = sum(
        captured[(i, site)].shape[0] * r.adds_per_row
        for i in range(cfg.n_layers)
        for site, r in weights.rotations.items()
    )
    layers: list[Layer] = []
    for i, blk in enumerate(lm.blocks):

        def lin(site: str, name: str, i: int = i, blk=blk) -> Layer:  # noqa: ANN001
            x = captured[(i, site)]
            rot = weights.rotations.get(site)
            w = blk.linears[name] if rot is None else rot.apply(blk.linears[name])
            return linear_layer(
                f"blk.{i}.{name}", x.shape[0], w.shape[1], w.shape[0], weight=w, x=x
            )

        layers += [lin("attn_in", n) for n in SITE_LINEARS["attn_in"]]
        g = nh // cfg.n_kv_heads  # grouped-query attention: query heads per KV head
        layers.append(matmul_layer(f"blk.{i}.attn_qk", t, hd, t, count=nh, group=g,
                                   kv_axis="k"))
        layers.append(matmul_layer(f"blk.{i}.attn_pv", t, t, hd, count=nh, group=g,
                                   kv_axis="n"))
        layers.append(lin("attn_out", "attn_output"))
        layers += [lin("ffn_in", n) for n in SITE_LINEARS["ffn_in"]]
        layers.append(lin("ffn_act", "ffn_down"))
    if include_head:
        layers.append(
            linear_layer("output", t, cfg.d_model, lm.head.shape[0], weight=lm.head, x=hidden)
        )
    shape = LlmShape(blocks=cfg.n_layers, hidden=cfg.d_model, ffn=cfg.d_ff, heads=nh,
                     kv_heads=cfg.n_kv_heads, head_dim=hd,
                     head_out=int(lm.head.shape[0]) if include_head else 0, names="gguf")
    meta = {
        "source": "gguf",
        "model": model,
        "model_name": cfg.name,
        "path": str(lm.path),
        "tokens": t,
        "offset": off,
        "seed": seed,
        "text": label,
        "activation_bits": bits,
        "weight_bits": WEIGHT_BITS,
        "captured_from": method,
        "spike_plan": calib.summary(),
        "spike_tokens": hooks.spike_rows_seen,
        "rotation": rot,
        "rotation_blocks": {s: r.block for s, r in weights.rotations.items()},
        "rotation_adds": int(rotation_adds),
        "attention": "attn_qk / attn_pv are dense activation x activation products (mapped as "
                     "the arch's attention section says)",
        "llm": shape.to_dict(),
        "periphery_ops": periphery_ops(shape, t, t),
    }
    return Workload(name=f"{model}-{t}", layers=tuple(layers), meta=meta)


def llm_shape_of(model: str = "smollm2-135m", include_head: bool = True) -> LlmShape:
    """The decoder shape of a model name or Llama GGUF path, from its metadata alone."""
    from pacim.llm.fetch import resolve_model
    from pacim.llm.gguf_io import read_gguf_config

    cfg = read_gguf_config(resolve_model(model))
    if cfg.family != "llama" or cfg.sliding_window:
        raise PacimError(f"{model}: the phases model Llama attention over the whole prefix; a "
                         f"{cfg.family} model with sliding windows is not modelled yet")
    return LlmShape(blocks=cfg.n_layers, hidden=cfg.d_model, ffn=cfg.d_ff, heads=cfg.n_heads,
                    kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                    head_out=cfg.vocab_size if include_head else 0, names="gguf")
