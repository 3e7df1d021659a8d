"""The corpus (the top-level .py files of a folder, hashed) and each seed's split: disjoint, exact budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments.text import Corpus, TextConfig, draw_split, read_corpus, windows


def test_the_stdlib_corpus_is_read_the_same_way_twice() -> None:
    a, b = read_corpus(), read_corpus()
    assert a.names == b.names == tuple(sorted(a.names))
    assert a.sha256 == b.sha256 and a.texts == b.texts
    assert "os.py" in a.names and all(n.endswith(".py") and "/" not in n for n in a.names)
    assert a.describe()["files"] == len(a.names) and a.describe()["python"] == a.python


def test_only_top_level_non_empty_py_files_are_read_sorted(folder: Path) -> None:
    corpus = read_corpus(folder)
    assert corpus.names == tuple(f"mod{i:02d}.py" for i in range(12))
    assert corpus.texts[3] == (folder / "mod03.py").read_bytes()


def test_the_hash_changes_with_a_file_and_names_which_text_was_used(folder: Path) -> None:
    before = read_corpus(folder).sha256
    (folder / "mod05.py").write_bytes(b"# changed\n" * 10)
    assert read_corpus(folder).sha256 != before
    # the same bytes under another split of names is another corpus
    one, other = Corpus.from_texts({"a.py": b"xy", "b.py": b"z"}), Corpus.from_texts({"a.py": b"x", "b.py": b"yz"})
    assert one.sha256 != other.sha256


def test_a_folder_without_python_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no non-empty .py file"):
        read_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_corpus(tmp_path / "missing")


def test_a_split_is_deterministic_per_seed_and_differs_between_seeds(folder: Path, small: TextConfig) -> None:
    corpus = read_corpus(folder)
    a, b, c = draw_split(corpus, 3, small), draw_split(corpus, 3, small), draw_split(corpus, 4, small)
    assert a == b
    assert (a.heldout_segments, a.train_segments) != (c.heldout_segments, c.train_segments)


@pytest.mark.parametrize("seed", range(6))
def test_held_out_files_are_never_trained_on_and_the_budgets_are_exact(
    folder: Path, small: TextConfig, seed: int
) -> None:
    corpus = read_corpus(folder)
    split = draw_split(corpus, seed, small)
    assert not set(split.heldout_files) & set(split.train_files)
    assert len(split.train) == small.train_bytes and len(split.heldout) == small.heldout_bytes
    texts = dict(zip(corpus.names, corpus.texts))
    rebuilt = b"".join(texts[n][o : o + k] for n, o, k in split.train_segments)
    assert rebuilt == split.train and all(k <= small.segment_bytes for *_, k in split.train_segments)
    # every held-out byte comes from held-out files only: each file's letter appears on one side
    letters = {bytes([65 + int(n[3:5])]) for n in split.heldout_files}
    assert all(letter not in split.train for letter in letters)


def test_the_stdlib_split_holds_out_whole_files() -> None:
    split = draw_split(read_corpus(), 0, TextConfig())
    assert not set(split.heldout_files) & set(split.train_files)
    assert len(split.train) == TextConfig().train_bytes and len(split.heldout) == TextConfig().heldout_bytes
    assert [len(c) for c in split.chunks(4)] == [TextConfig().train_bytes // 4] * 4


def test_a_corpus_too_small_for_the_budgets_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        draw_split(read_corpus(folder), 0, TextConfig(train_bytes=10_000, heldout_bytes=500, segment_bytes=100,
                                                       context=8))


def test_windows_are_disjoint_byte_tokens() -> None:
    w = windows(bytes(range(20)), 4)
    assert w.dtype == torch.long and w.shape == (4, 5)
    assert w.flatten().tolist() == list(range(20))

