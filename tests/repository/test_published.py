"""Every generated block in README.md and docs/ matches what its committed results files render."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("published", ROOT / "scripts" / "published.py")
published = importlib.util.module_from_spec(_spec)
sys.modules["published"] = published
_spec.loader.exec_module(published)  # type: ignore[union-attr]

BLOCKS = [b for path in published.documents() for b in published.blocks(path)]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.path.name}:{b.name}")
def test_block_matches_its_results(block) -> None:
    assert block.body == published.render(block), (
        f"{block.path.relative_to(ROOT)}: the block rendered by {block.name} is stale; "
        "run: python scripts/published.py --write"
    )


def test_markers_are_found_and_stale_blocks_are_caught(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    mod = tmp_path / "fake_results.py"
    mod.write_text("def table(fmt):\n    return f'| a | {fmt} |'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- generated: fake_results:table md -->\n| a | typed |\n<!-- end generated -->\ny\n")
    page = tmp_path / "docs" / "p.rst"
    page.write_text("T\n\n.. generated: fake_results:table rst\n\n| a | rst |\n\n.. end generated\n")
    found = [b for p in published.documents(tmp_path) for b in published.blocks(p)]
    assert [(b.path.name, b.fmt) for b in found] == [("README.md", "md"), ("p.rst", "rst")]
    assert [b.path.name for b, _ in published.stale(tmp_path)] == ["README.md"]
    assert published.write(tmp_path) == 1
    assert "| a | md |" in readme.read_text() and "typed" not in readme.read_text()
    assert published.stale(tmp_path) == []


def test_marker_words_after_the_format_are_passed_to_the_renderer(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    renderer = "def table(fmt, *folders):\n    return f'{fmt}: {\" + \".join(folders)}'\n"
    (tmp_path / "fake_folders.py").write_text(renderer)
    monkeypatch.syspath_prepend(str(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated: fake_folders:table md run-a run.b -->\nold\n<!-- end generated -->\n")
    page = tmp_path / "docs" / "p.rst"
    page.write_text(".. generated: fake_folders:table rst run-c\n\nold\n\n.. end generated\n")
    found = [b for p in published.documents(tmp_path) for b in published.blocks(p)]
    assert [(b.args, b.name) for b in found] == [
        (("run-a", "run.b"), "fake_folders:table run-a run.b"),
        (("run-c",), "fake_folders:table run-c"),
    ]
    assert published.write(tmp_path) == 2
    assert "md: run-a + run.b\n" in readme.read_text() and "rst: run-c\n" in page.read_text()


def test_no_block_is_rendered_by_the_installed_package() -> None:
    """Renderers are repository tooling (scripts/, benchmarks/): the wheel ships none of them."""
    assert BLOCKS
    assert [b.name for b in BLOCKS if b.spec.startswith("torch_dash_optim")] == []
