"""The text: the standard library's ``.py`` files, each seed's held-out text and training stream, byte windows.

:func:`~torch_dash_optim.experiments.text.read_corpus` reads the files into a
:class:`~torch_dash_optim.experiments.text.Corpus`; :func:`~torch_dash_optim.experiments.text.draw_split`
draws one seed's :class:`~torch_dash_optim.experiments.text.Split`; and
:func:`~torch_dash_optim.experiments.text.windows` cuts text into the model's byte tokens.
"""

from __future__ import annotations

import hashlib
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .settings import TextConfig

__all__ = ["Corpus", "Split", "draw_split", "read_corpus", "stdlib_dir", "windows"]


@dataclass(frozen=True)
class Corpus:
    """The text: named files, in sorted order, as bytes.

    Attributes
    ----------
    root:
        The folder read.
    names:
        File names, sorted.
    texts:
        Their contents, as bytes.
    python:
        The Python version whose standard library it is (``platform.python_version()``).
    sha256:
        SHA-256 over every name and content (with their lengths), in order.

    Examples
    --------
    >>> c = Corpus.from_texts({"b.py": b"y = 2\\n", "a.py": b"x = 1\\n"})
    >>> c.names, c.total_bytes, len(c.sha256)
    (('a.py', 'b.py'), 12, 64)
    """

    root: str
    names: tuple[str, ...]
    texts: tuple[bytes, ...]
    python: str
    sha256: str

    @classmethod
    def from_texts(cls, texts: dict[str, bytes], root: str = "", python: str | None = None) -> Corpus:
        """A corpus of the given files (sorted by name), with its hash."""
        names = tuple(sorted(texts))
        h = hashlib.sha256()
        for name in names:
            data = texts[name]
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
        return cls(root, names, tuple(texts[n] for n in names), python or platform.python_version(), h.hexdigest())

    @property
    def total_bytes(self) -> int:
        """Bytes of all the files."""
        return sum(len(t) for t in self.texts)

    def describe(self) -> dict[str, Any]:
        """What ``provenance`` needs to say which text was used: Python, folder, files, bytes, hash."""
        return {"python": self.python, "root": self.root, "files": len(self.names), "bytes": self.total_bytes,
                "sha256": self.sha256}


def stdlib_dir() -> Path:
    """The standard library's folder, ``sysconfig.get_paths()["stdlib"]``.

    Examples
    --------
    >>> (stdlib_dir() / "os.py").is_file()
    True
    """
    return Path(sysconfig.get_paths()["stdlib"])


def read_corpus(root: Path | str | None = None) -> Corpus:
    """Read every ``*.py`` file directly in ``root`` (default: the standard library), sorted by name.

    Sub-folders are not read (in the standard library they are packages, its test suite and
    ``site-packages``); empty files are left out.

    Parameters
    ----------
    root:
        The folder; ``None`` reads ``sysconfig.get_paths()["stdlib"]``.

    Returns
    -------
    Corpus
        The files, their bytes and the hash.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder or holds no non-empty ``.py`` file.

    Examples
    --------
    >>> corpus = read_corpus()
    >>> "os.py" in corpus.names and corpus.names == tuple(sorted(corpus.names))
    True
    """
    folder = stdlib_dir() if root is None else Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds the .py files to read")
    texts = {p.name: p.read_bytes() for p in sorted(folder.glob("*.py")) if p.is_file()}
    texts = {n: t for n, t in texts.items() if t}
    if not texts:
        raise FileNotFoundError(f"{folder} holds no non-empty .py file; pass a folder of Python sources")
    return Corpus.from_texts(texts, str(folder))


@dataclass(frozen=True)
class Split:
    """One seed's text: the held-out segments and the training stream.

    Attributes
    ----------
    seed:
        The seed that drew it.
    heldout, train:
        The held-out text and the training stream (in arrival order), as bytes.
    heldout_segments, train_segments:
        ``(file, offset, length)`` of every segment, in order.

    Examples
    --------
    >>> c = Corpus.from_texts({f"m{i}.py": bytes(range(65, 91)) * 8 for i in range(6)})
    >>> s = draw_split(c, 0, TextConfig(chunks=2, train_bytes=400, heldout_bytes=200, segment_bytes=100,
    ...                                 context=8))
    >>> len(s.train), len(s.heldout), set(s.train_files) & set(s.heldout_files)
    (400, 200, set())
    """

    seed: int
    heldout: bytes
    train: bytes
    heldout_segments: tuple[tuple[str, int, int], ...]
    train_segments: tuple[tuple[str, int, int], ...]

    @property
    def heldout_files(self) -> tuple[str, ...]:
        """The files held out."""
        return tuple(s[0] for s in self.heldout_segments)

    @property
    def train_files(self) -> tuple[str, ...]:
        """The files trained on, in arrival order."""
        return tuple(s[0] for s in self.train_segments)

    def chunks(self, k: int) -> list[bytes]:
        """The training stream cut into ``k`` equal parts (the remainder of the division is dropped)."""
        size = len(self.train) // k
        return [self.train[i * size : (i + 1) * size] for i in range(k)]

    def describe(self) -> dict[str, Any]:
        """The segments, for ``splits.json``."""
        return {"seed": self.seed, "heldout": [list(s) for s in self.heldout_segments],
                "train": [list(s) for s in self.train_segments]}


def draw_split(corpus: Corpus, seed: int, config: TextConfig) -> Split:
    """Draw one seed's held-out text and training stream from ``corpus``.

    A permutation of the files is drawn from ``torch.Generator().manual_seed(seed)``. Walking
    it, each file gives one segment of at most ``config.segment_bytes`` bytes, at an offset
    drawn uniformly from the same generator; the first files fill ``config.heldout_bytes``,
    the next ones ``config.train_bytes`` (the last segment of each is cut to fit). Held-out
    and training files are disjoint.

    Parameters
    ----------
    corpus:
        The text (:func:`read_corpus`).
    seed:
        The seed of the draw.
    config:
        The budgets.

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        If the corpus is too small for the budgets.

    Examples
    --------
    >>> split = draw_split(read_corpus(), 0, TextConfig())
    >>> len(split.train), len(split.heldout), bool(set(split.train_files) & set(split.heldout_files))
    (65536, 32768, False)
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(corpus.names), generator=g).tolist()
    parts: list[list[tuple[str, int, int]]] = [[], []]
    budgets = [config.heldout_bytes, config.train_bytes]
    which = 0
    for i in order:
        if which == 2:
            break
        text = corpus.texts[i]
        length = min(len(text), config.segment_bytes, budgets[which])
        offset = int(torch.randint(0, len(text) - length + 1, (1,), generator=g))
        parts[which].append((corpus.names[i], offset, length))
        budgets[which] -= length
        if budgets[which] == 0:
            which += 1
    if which < 2:
        raise ValueError(
            f"the corpus ({len(corpus.names)} files, {corpus.total_bytes} bytes) is too small for heldout_bytes="
            f"{config.heldout_bytes} and train_bytes={config.train_bytes} at segment_bytes={config.segment_bytes} "
            "per file; lower the budgets or raise segment_bytes"
        )
    texts = dict(zip(corpus.names, corpus.texts))

    def join(segments: list[tuple[str, int, int]]) -> bytes:
        """The segments' bytes, in order."""
        return b"".join(texts[n][o : o + n_] for n, o, n_ in segments)

    return Split(seed, join(parts[0]), join(parts[1]), tuple(parts[0]), tuple(parts[1]))


def windows(text: bytes, context: int) -> Tensor:
    """Cut ``text`` into disjoint windows of ``context + 1`` byte tokens (``(n, context + 1)`` int64).

    Examples
    --------
    >>> windows(b"abcdefg", 2).tolist()
    [[97, 98, 99], [100, 101, 102]]
    """
    n = len(text) // (context + 1)
    flat = torch.frombuffer(bytearray(text[: n * (context + 1)]), dtype=torch.uint8) if n else torch.zeros(0)
    return flat.long().view(n, context + 1)

