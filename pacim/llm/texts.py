"""Named evaluation texts beyond the shipped ones: real English prose from a Debian package.

``debian-handbook``: *The Debian Administrator's Handbook* (Raphaël Hertzog, Roland Mas;
licence GPL-2.0+ or CC-BY-SA-3.0, as its ``copyright`` file says), from the Debian package
``debian-handbook`` (bookworm: 11.20220922). It is fetched once with ``apt-get download``
(apt checks the package against the signed archive index), unpacked with ``dpkg-deb``, and the
English HTML chapters are reduced, in book order, to the text of their paragraphs
(``<div class="para">``, screen listings dropped): about 0.5 M words of prose, kept in
``<cache>/texts/``. pacim ships none of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from pacim.errors import PacimError
from pacim.llm.fetch import cache_dir

HANDBOOK = "debian-handbook"
HANDBOOK_LICENCE = "GPL-2.0+ or CC-BY-SA-3.0 (The Debian Administrator's Handbook)"
_HTML = "usr/share/doc/debian-handbook/html/en-US"
TEXTS: dict[str, str] = {HANDBOOK: HANDBOOK_LICENCE}


class _Paragraphs(HTMLParser):
    """Text of every ``<div class="para">``, without ``<pre>`` listings."""

    def __init__(self) -> None:
        super().__init__()
        self.paras: list[str] = []
        self._depth = 0  # div nesting inside the current para (0: outside)
        self._pre = 0
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._pre += 1
        if tag != "div":
            return
        if self._depth:
            self._depth += 1
        elif ("class", "para") in attrs:
            self._depth, self._buf = 1, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre = max(self._pre - 1, 0)
        if tag == "div" and self._depth:
            self._depth -= 1
            if not self._depth:
                text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
                if len(text.split()) >= 8:  # a sentence, not a caption or a lone command
                    self.paras.append(text)

    def handle_data(self, data: str) -> None:
        if self._depth and not self._pre:
            self._buf.append(data)


def handbook_text(html_dir: Path) -> str:
    """The handbook's paragraphs in book order (chapters as linked from index.html)."""
    index = (html_dir / "index.html").read_text(encoding="utf-8")
    order: list[str] = []
    for name in re.findall(r'href="([^"#/]+\.html)', index):
        if name not in order and (html_dir / name).is_file():
            order.append(name)
    paras: list[str] = []
    for name in order:
        p = _Paragraphs()
        p.feed((html_dir / name).read_text(encoding="utf-8"))
        paras += p.paras
    if len(paras) < 100:
        raise PacimError(f"{html_dir}: found only {len(paras)} paragraphs of the handbook")
    return "\n\n".join(paras) + "\n"


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PacimError(f"could not run {cmd[0]} to {what}: {e}") from e
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise PacimError(f"{what} failed ({' '.join(cmd)}): {last[-1] if last else proc.returncode}"
                         " (Debian's apt with an up-to-date package list is needed: "
                         "apt-get update)")  # fmt: skip


def fetch_text(name: str) -> Path:
    """Path of a named evaluation text in the cache, fetching and extracting it once."""
    if name not in TEXTS:
        raise PacimError(f"unknown text {name!r}; known: {', '.join(TEXTS)} or a file path")
    target = cache_dir() / "texts" / f"{name}.txt"
    if target.is_file():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PacimError(f"the {name} text comes from Debian's package {name}: apt-get and "
                         "dpkg-deb are needed")  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="dl-") as tmpd:
        d = Path(tmpd)
        _run(["apt-get", "download", "-q", name], d, f"downloading the Debian package {name}")
        debs = sorted(d.glob(f"{name}_*.deb"))
        if not debs:
            raise PacimError(f"apt-get download {name} left no .deb file")
        _run(["dpkg-deb", "-x", str(debs[0]), "x"], d, f"unpacking {debs[0].name}")
        text = handbook_text(d / "x" / _HTML)
        tmp = target.with_name(target.name + ".part")
        tmp.write_text(f"{text}", encoding="utf-8")
        tmp.replace(target)
    return target


def resolve_text(text: str | None) -> str | None:
    """A text file path as given, or the cached path of a named text."""
    if text is None or text not in TEXTS:
        return text
    return str(fetch_text(text))
