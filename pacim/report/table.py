"""The text forms of a report: the per-layer table and the summary block."""

from __future__ import annotations

from typing import Any

from .export import flatten


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


LEGEND = (
    "dig.cyc: mean digital bit-serial cycles per vector-tile (wbit x xbit = exact; - without data)"
    "\nstalls: cycles the banks wait (weight load, memory, PAC engine, encoder, drain)"
    "\nrd/wr Mbit: all memory levels; energy uJ: everything counted (memories, leakage)"
)


def _clock(d: dict[str, Any]) -> str | None:
    """'clock 200 MHz at VDD 1 V' from the report's resolved arch (None without one)."""
    tech = (d.get("arch_config") or {}).get("technology")
    if not isinstance(tech, dict):
        return None
    from ..arch import Technology

    try:
        t = Technology.model_validate(tech)
    except ValueError:
        return None
    text = f"clock {t.freq_hz / 1e6:.4g} MHz at VDD {t.vdd:g} V"
    if t.vdd != t.vdd_nom:
        text += f" (alpha-power law from {t.freq_mhz:g} MHz at vdd_nom {t.vdd_nom:g} V)"
    return text


def _scaled(v: Any, scale: float) -> float | None:
    return None if v is None else v * scale


def format_table(d: dict[str, Any]) -> str:
    """Text table of a report dict."""
    cols: list[tuple[str, str]] = [("layer", "name"), ("kind", "kind"), ("MACs", "macs"),
                                   ("dig.cyc", "digital_cycles_mean"),
                                   ("SQNR dB", "accuracy.sqnr_db")]
    layers = [flatten(la) for la in d.get("layers", [])]
    if any("cycles" in la for la in layers):
        cols += [("cycles", "cycles"), ("stalls", "stall_cycles_total")]
    if any("memory.reads_bits" in la for la in layers):
        cols += [("rd Mbit", "memory.reads_mbit"), ("wr Mbit", "memory.writes_mbit")]
    if any("energy_pj" in la for la in layers):
        cols += [("energy uJ", "energy_uj")]
    for la in layers:
        if "memory.reads_bits" in la:
            la["memory.reads_mbit"] = la["memory.reads_bits"] / 1e6
            la["memory.writes_mbit"] = la["memory.writes_bits"] / 1e6
        if "energy_pj" in la and la["energy_pj"] is not None:
            la["energy_uj"] = la["energy_pj"] / 1e6
        if "stall_cycles.total" in la:
            la["stall_cycles_total"] = la["stall_cycles.total"]
        if la.get("attention_mapping"):  # a matmul on the macro / the digital unit
            la["digital_cycles_mean"] = la["attention_mapping"]
        elif la.get("kind") == "periphery":
            la["digital_cycles_mean"] = "periphery"
        elif not la.get("mapped", True):
            la["digital_cycles_mean"] = "not mapped"
    cells = [[_fmt(la.get(key)) for _, key in cols] for la in layers]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, (h, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(widths[i]) if i < 2 else h.rjust(widths[i])
                       for i, (h, _) in enumerate(cols))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                               for i, c in enumerate(r)))
    lines.append(LEGEND)
    lines.append("")
    lines.append(summary_text(d))
    return "\n".join(lines)


def summary_text(d: dict[str, Any]) -> str:
    """The summary block of a report dict."""
    bsc = d.get("bit_serial_cycles") or {}
    red = bsc.get("reduction")
    acc = d.get("accuracy") or {}
    clock = _clock(d)
    out = [
        f"arch {d.get('arch')}  workload {d.get('workload')}  "
        f"({'data' if d.get('data') else 'no data: shapes + default statistics'})",
        *([clock] if clock else []),
        f"MACs {_fmt(d.get('macs'))} (mapped {_fmt(d.get('mapped_macs'))})  "
        f"ops {_fmt(d.get('ops'))}",
        f"bit-serial cycles: baseline {_fmt(bsc.get('baseline'))}  "
        f"actual {_fmt(bsc.get('actual'))}"
        f"  reduction {_fmt(None if red is None else 100 * red)}%",
        f"accuracy vs exact: output RMSE {_fmt(acc.get('output_rmse_vs_exact'))}  "
        f"SQNR {_fmt(acc.get('sqnr_db'))} dB",
    ]
    if "cycles" in d:
        mem = d.get("memory") or {}
        out.append(f"cycles {_fmt(d.get('cycles'))}  "
                   f"latency {_fmt(_scaled(d.get('latency_s'), 1e3))} ms  "
                   f"throughput {_fmt(d.get('throughput_tops'))} TOPS")
        if mem:
            out.append(f"memory: reads {_fmt(_scaled(mem.get('reads_bits'), 1e-6))} Mbit  "
                       f"writes {_fmt(_scaled(mem.get('writes_bits'), 1e-6))} Mbit")
    if "energy_pj" in d:
        line = (f"energy {_fmt(_scaled(d.get('energy_pj'), 1e-6))} uJ  "
                f"TOPS/W {_fmt(d.get('tops_per_w'))}  "
                f"peak TOPS/W {_fmt(d.get('peak_tops_per_w'))}")
        if d.get("area_mm2") is not None:
            line += (f"  area {_fmt(d.get('area_mm2'))} mm2  TOPS/mm2 "
                     f"{_fmt(d.get('tops_per_mm2'))}  peak TOPS/mm2 "
                     f"{_fmt(d.get('peak_tops_per_mm2'))}")
        elif "area_mm2" in d:
            line += "  area - (no area table)"
        out.append(line)
    out += _phase_lines(d)
    return "\n".join(out)


def _phase_lines(d: dict[str, Any]) -> list[str]:
    """The attention and phase lines of a report that has them."""
    out = []
    att = d.get("attention")
    if isinstance(att, dict):
        kv = att.get("kv_bits")
        pac = (f"  PAC operand {att.get('operand')}: bit-serial cycles "
               f"{_fmt(att.get('bit_serial_cycles'))} of "
               f"{_fmt(att.get('bit_serial_cycles_baseline'))}" if att.get("pac") else "")
        out.append(f"attention {att.get('mapping')}{pac}: K/V {_fmt(kv)}-bit, inputs "
                   f"{_fmt(att.get('input_bits'))}-bit")
        out.append(f"  KV home {att.get('kv_home')}  KV reads "
                   f"{_fmt(_scaled(att.get('kv_reads_bits'), 1e-6))} Mbit  writes "
                   f"{_fmt(_scaled(att.get('kv_writes_bits'), 1e-6))} Mbit  cell writes "
                   f"{_fmt(_scaled(att.get('kv_cell_write_bits'), 1e-6))} Mbit")
    ph = d.get("phase")
    if isinstance(ph, dict):
        out.append(f"{ph.get('name')}: {_fmt(ph.get('tokens'))} tokens after a context of "
                   f"{_fmt(ph.get('context'))}  tokens/s {_fmt(ph.get('tokens_per_s'))}  "
                   f"energy/token {_fmt(_scaled(ph.get('energy_per_token_pj'), 1e-6))} uJ  "
                   f"weight reloads/step {_fmt(ph.get('weight_reloads_per_step'))}  "
                   f"weight-load share {_fmt(_scaled(ph.get('weight_load_share'), 100))}%")
    return out
