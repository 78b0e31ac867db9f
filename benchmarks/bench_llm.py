"""Issue 6: `pacim llm eval` over fp, naive, insertquant, insertquant+pac on 1,024 tokens.

Target: <= 90 s on this 2-core machine, end to end in a fresh process (model load from the
float32 cache, calibration on 1,024 tokens, four modes on two 512-token windows), and W8A8
insertquant within 5% of fp perplexity and below naive. The SmolLM2
download (once, ~93 MB) is done before the timed run. Not part of the quick set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BenchResult, Check

TARGET_S = 90.0
MODES = "fp,naive,insertquant,insertquant+pac"


def _eval_cmd(out: Path, bits: int = 8) -> list[str]:
    return [
        sys.executable, "-m", "pacim", "llm", "eval", "--modes", MODES, "--tokens", "1024",
        "--bits", str(bits), "--quiet", "--json", str(out),
    ]  # fmt: skip


def run(quick: bool = False) -> BenchResult:
    """Time one `pacim llm eval` run over the four modes (after a warm-up that downloads)."""
    from pacim.llm.gguf_io import fetch_model, load_gguf

    load_gguf(fetch_model())  # download and float32 cache outside the timed run
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "llm.json"
        t0 = time.perf_counter()
        proc = subprocess.run(_eval_cmd(out), capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"pacim llm eval failed: {proc.stderr.strip()}")
        res_json = json.loads(out.read_text())
    m = res_json["modes"]
    res = BenchResult("llm_eval")
    res.figures = {
        "eval_4_modes_1024_tokens_s": dt,
        "tokens": res_json["tokens"],
        **{f"ppl_{k}": v["ppl"] for k, v in m.items()},
        **{f"seconds_{k}": v["seconds"] for k, v in m.items()},
        "max_ratio_before": res_json["max_ratio_before"],
        "max_ratio_after": res_json["max_ratio_after"],
    }
    res.checks = [
        Check("pacim llm eval, 4 modes, 1024 tokens (s)", dt, "<=", TARGET_S),
        Check("insertquant ppl / naive ppl", m["insertquant"]["ppl"] / m["naive"]["ppl"],
              "<=", 1.0),
        Check("insertquant ppl / fp ppl - 1 (W8A8)", m["insertquant"]["ppl"] / m["fp"]["ppl"] - 1,
              "<=", 0.05),
        Check("max/median ratio after INSERTQUANT", res_json["max_ratio_after"], "<=", 100.0),
    ]
    return res


def main() -> None:
    """Print the time of `pacim llm eval` over the four modes on 1,024 tokens."""
    r = run()
    for k, v in r.figures.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    for c in r.checks:
        print(c.line())


if __name__ == "__main__":
    main()
