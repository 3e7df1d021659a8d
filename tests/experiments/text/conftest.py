"""Fixtures of the text experiment's tests: a small folder of Python files and a small run's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from torch_dash_optim.experiments.text import TextConfig


@pytest.fixture
def small() -> TextConfig:
    """A run of seconds on :func:`folder`'s text: two chunks, a one-block model of width 8."""
    return TextConfig(chunks=2, train_bytes=600, heldout_bytes=300, segment_bytes=100, context=8, width=8, heads=2,
                      layers=1, batch_size=8, epochs=1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Twelve .py files of distinct text, an empty one, a sub-package and a non-.py file."""
    for i in range(12):
        (tmp_path / f"mod{i:02d}.py").write_bytes(f"# module {i}\n".encode() + bytes([65 + i]) * 300)
    (tmp_path / "empty.py").write_bytes(b"")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inner.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    return tmp_path
