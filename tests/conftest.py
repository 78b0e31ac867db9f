"""Shared fixtures: the tiny spiky GGUF of tests.llm_fixtures and its texts (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def spiky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spiky 4-layer model (tests.llm_fixtures.spiky_gguf)."""
    from tests.llm_fixtures import spiky_gguf

    return spiky_gguf(tmp_path_factory.mktemp("spiky"))


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory, spiky: Path) -> tuple[Path, Path]:
    """(evaluation, calibration) texts of the spiky model (tests.llm_fixtures.spiky_texts)."""
    from tests.llm_fixtures import spiky_texts

    return spiky_texts(tmp_path_factory.mktemp("texts"), spiky)


@pytest.fixture
def pacim_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh PACIM_CACHE per test (calibrations and caches never shared between tests)."""
    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "cache"))
