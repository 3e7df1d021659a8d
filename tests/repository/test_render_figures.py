"""scripts/render/figures.py: the published figures are drawn from the results folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.render import figures

from ._render_folders import CNN2D_DIR, CNN_DIR


def test_figures_are_drawn(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures, "FIGURES", {"results": CNN_DIR, "mnist": CNN2D_DIR,
                                             "factors": {"1-D CNN": CNN_DIR, "2-D CNN": CNN2D_DIR}})
    paths = figures.draw_figures(tmp_path)
    assert [p.name for p in paths] == ["warmstart-results.png", "warmstart-mnist.png", "warmstart-factors.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_the_default_folder_is_the_docs_static_folder() -> None:
    assert figures.STATIC == figures.ROOT / "docs" / "_static"
    assert all((figures.STATIC / name).exists() for name in ("warmstart-results.png", "warmstart-mnist.png",
                                                              "warmstart-factors.png"))
