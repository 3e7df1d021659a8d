r"""Warm starting a small causal transformer on real text, offline: the standard library's own source.

Every machine with Python holds real text: the ``.py`` files of its standard library. This
module trains a byte-level causal language model on them as the text arrives in chunks, and
compares four ways of starting each stage: ``cold`` (a fresh model), ``warm`` (keep the
model), ``sp`` (Shrink & Perturb, :func:`~torch_dash_optim.baselines.shrink_perturb_` with
λ = 0.3, σ = 0.01) and ``dash`` (:class:`~torch_dash_optim.DASHWrapper`'s
:meth:`~torch_dash_optim.DASHWrapper.on_new_data` over all the text so far, new text last).

The corpus (:func:`read_corpus`)
    Every ``*.py`` file directly in ``sysconfig.get_paths()["stdlib"]`` (the top-level
    modules: no packages, so no test suite and no ``site-packages``), sorted by name and read
    as bytes. Tokens are bytes (a vocabulary of 256). The Python version and a SHA-256 of the
    names and contents are recorded, so results say which text they used.

Each seed's data (:func:`draw_split`)
    A seeded permutation of the files. Walking it, each file gives one segment of at most
    ``segment_bytes`` at a seeded offset: the first files fill the held-out budget, the next
    ones the training budget (the last segment of each is cut to fit). A file is either held
    out or trained on, never both, so the held-out text is disjoint from training. The
    training stream is the training segments in drawn order, cut into ``chunks`` equal parts
    that arrive one per stage.

The model (:class:`CausalLM`)
    Token and position embeddings, pre-norm blocks with separate ``q``/``k``/``v``/``out``
    :class:`~torch.nn.Linear` projections and an MLP (``fc``, GELU, ``proj``), a final
    LayerNorm and an untied ``head`` Linear; GPT-2's initialisation. DASH and S&P act on its
    Linear layers; embeddings and norms are left alone.

The protocol (:func:`run_text`)
    At stage :math:`k = 1..K` every method trains on the first :math:`k` chunks for
    ``epochs`` epochs (so the budget grows with the text, as a run to convergence would),
    in windows of ``context + 1`` bytes, with a *fresh* AdamW and its own schedule (linear
    warm-up over ``warmup`` of the stage's steps, cosine decay to ``lr_final`` of the peak),
    gradient norm clipped at ``clip``. The methods differ only in the weights they start a
    stage from. AdamW, not SGD: it is how transformers are trained, and SGD needs far more
    steps or tuning to train one at all; with a fresh optimizer per stage DASH's treatment of
    the optimizer state does not enter. After each stage the held-out loss (nats per byte),
    perplexity and bits per byte are recorded. Every seed trains its methods on the same
    batches in the same order and starts them from the same initial model, so differences are
    paired.

Outputs (:func:`main`, ``--out``)
    ``records.csv``/``records.json`` (one row per seed x method x stage), ``splits.json``
    (each seed's held-out files and training segments), ``config.json``, ``summary.md`` and
    ``summary.json`` (mean ± std per method and stage; DASH minus each method at the last
    stage, paired by seed, with 95% t intervals from :mod:`.stats`), ``provenance.json``
    (command, versions, machine, wall and CPU time) and ``text-results.png``.

Run it::

    python -m torch_dash_optim.experiments.text --out results/text-stdlib
    python -m torch_dash_optim.experiments.text --quick --out /tmp/text-quick   # a smoke run

On one machine, results are bit-reproducible for a given seed, torch build, Python version (it
fixes the corpus) and ``--threads``, whatever ``--jobs`` is.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import sys
import sysconfig
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._interrupts import deferred_interrupts, sigint_blocked
from ..baselines import shrink_perturb_
from ..wrapper import DASHWrapper
from .provenance import add_invocation
from .stats import LEVEL, Interval, t_interval
from .store import atomic_write

__all__ = [
    "LABELS",
    "METHODS",
    "QUICK",
    "RECORD_FIELDS",
    "SMOKE_NOTE",
    "CausalLM",
    "Corpus",
    "LastStage",
    "Split",
    "TextConfig",
    "build_parser",
    "compare_last",
    "draw_split",
    "figure_title",
    "heldout_loss",
    "main",
    "next_token_loss",
    "plot_text",
    "read_corpus",
    "run_seed_method",
    "run_text",
    "stage_table",
    "stdlib_dir",
    "summary_markdown",
    "windows",
]

#: The methods, in the order of the tables.
METHODS: tuple[str, ...] = ("cold", "warm", "sp", "dash")
#: How the tables and figures name them.
LABELS: dict[str, str] = {"cold": "Cold (random init)", "warm": "Warm", "sp": "Shrink & Perturb", "dash": "DASH"}
#: Columns of ``records.csv`` and keys of each record.
RECORD_FIELDS: tuple[str, ...] = (
    "seed",
    "method",
    "stage",
    "train_bytes",
    "windows",
    "steps",
    "train_loss",
    "heldout_loss",
    "heldout_ppl",
    "heldout_bpb",
    "dash_mean_factor",
    "dash_at_floor",
    "dash_units",
    "seconds",
    "cpu_seconds",
)
#: What ``--quick`` prints and writes at the top of ``summary.md``.
SMOKE_NOTE = (
    "SMOKE RUN (--quick): a tiny model on a few KiB of text, to check that everything works. Its "
    "numbers are not evidence about any method; run without --quick for that."
)


@dataclass(frozen=True)
class TextConfig:
    """Every setting of a text run (the defaults are the published run's).

    Attributes
    ----------
    chunks:
        :math:`K`, stages; the training text arrives in ``chunks`` equal parts.
    train_bytes, heldout_bytes:
        Bytes of training text (all chunks) and of held-out text, per seed.
    segment_bytes:
        The most one file contributes (one segment at a seeded offset).
    context:
        Bytes of context the model sees; training windows are ``context + 1`` bytes.
    width, heads, layers:
        Model width, attention heads and blocks (the MLP is ``4 * width`` wide).
    batch_size:
        Windows per training step (and per batch of DASH's gradient pass and of evaluation).
    epochs:
        Epochs per stage over all the text so far.
    lr, lr_final, warmup, weight_decay, clip:
        AdamW's peak learning rate, the final rate as a fraction of it, the warm-up as a
        fraction of the stage's steps, AdamW's weight decay, the gradient-norm clip.
    dash_lambd, dash_alpha:
        DASH's floor and EMA weight (the paper's 0.3 and 0.3).
    sp_shrink, sp_sigma:
        Shrink & Perturb's factor and noise (the paper's 0.3 and 0.01).

    Examples
    --------
    >>> TextConfig().train_bytes, TextConfig(chunks=2).chunks
    (65536, 2)
    >>> TextConfig(heads=3)
    Traceback (most recent call last):
    ...
    ValueError: width=64 must be a multiple of heads=3, e.g. heads=4
    """

    chunks: int = 4
    train_bytes: int = 65536
    heldout_bytes: int = 32768
    segment_bytes: int = 2048
    context: int = 64
    width: int = 64
    heads: int = 4
    layers: int = 2
    batch_size: int = 32
    epochs: int = 8
    lr: float = 2e-3
    lr_final: float = 0.1
    warmup: float = 0.05
    weight_decay: float = 0.01
    clip: float = 1.0
    dash_lambd: float = 0.3
    dash_alpha: float = 0.3
    sp_shrink: float = 0.3
    sp_sigma: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name}={value!r} must be a number")
            if f.type in ("int", int) and not isinstance(value, int):
                raise TypeError(f"{f.name}={value!r} must be an integer")
        for name in ("chunks", "train_bytes", "heldout_bytes", "segment_bytes", "context", "width", "heads",
                     "layers", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        if self.width % self.heads:
            raise ValueError(f"width={self.width} must be a multiple of heads={self.heads}, e.g. heads=4")
        size = self.train_bytes // self.chunks
        if size < self.context + 1:
            raise ValueError(
                f"train_bytes={self.train_bytes} in chunks={self.chunks} gives chunks of {size} bytes, shorter than "
                f"one window of context + 1 = {self.context + 1} bytes; raise train_bytes, or lower chunks or context"
            )
        if self.heldout_bytes < self.context + 1:
            raise ValueError(
                f"heldout_bytes={self.heldout_bytes} is shorter than one window of context + 1 = {self.context + 1} "
                "bytes; raise heldout_bytes or lower context"
            )
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be a number > 0, such as 0.01")
        for name in ("lr_final", "warmup"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a number in [0, 1], such as 0.3")


#: ``--quick``: a smoke run of a few seconds (2 seeds, a tiny model, a few KiB of text).
QUICK = TextConfig(
    chunks=2, train_bytes=4096, heldout_bytes=2048, segment_bytes=1024, context=16, width=16, heads=2, layers=1,
    batch_size=16, epochs=1,
)
_DEFAULT_SEEDS = (0, 1, 2, 3, 4)
_QUICK_SEEDS = (0, 1)


# --------------------------------------------------------------------------- the corpus


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


# --------------------------------------------------------------------------- the model


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate ``q``, ``k``, ``v`` and ``out`` Linear layers."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (m(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """``proj(gelu(fc(x)))``, four times as wide inside."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CausalLM(nn.Module):
    """A small GPT-style causal language model in plain PyTorch (byte tokens by default).

    Token and position embeddings, ``layers`` pre-norm blocks (attention with separate q, k, v
    and out Linear layers, then an MLP), a final LayerNorm and an untied ``head`` Linear. Weights start as GPT-2's: normal with std 0.02 (the residual
    projections ``out`` and ``proj`` divided by :math:`\\sqrt{2 L}`), biases zero, norms one.

    Parameters
    ----------
    vocab:
        Vocabulary size (256 for bytes).
    context:
        The longest input.
    width, heads, layers:
        Model width, attention heads per block, blocks.

    Examples
    --------
    >>> model = CausalLM(context=8, width=16, heads=2, layers=1)
    >>> model(torch.randint(0, 256, (3, 8))).shape
    torch.Size([3, 8, 256])
    """

    def __init__(self, vocab: int = 256, context: int = 64, width: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out.weight", "proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(batch, time, vocab)`` of the next token at every position."""
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"input of {t} tokens is longer than the model's context={self.context}; cut it")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def next_token_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean cross-entropy of predicting ``batch[:, 1:]`` from ``batch[:, :-1]`` (a DASH ``batch_loss``).

    Examples
    --------
    >>> model = CausalLM(context=4, width=8, heads=2, layers=1)
    >>> next_token_loss(model, torch.randint(0, 256, (2, 5))).item() > 0
    True
    """
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def heldout_loss(model: nn.Module, data: Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats per byte) over every position of the windows ``data``.

    The model is put in eval mode for the pass and its mode restored.

    Examples
    --------
    >>> model = CausalLM(context=4, width=8, heads=2, layers=1)
    >>> round(heldout_loss(model, windows(b"print('hello')" * 4, 4)), 1)  # about log(256) at init
    5.5
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(data), batch_size):
            batch = data[i : i + batch_size]
            logits = model(batch[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                           reduction="sum"))
            count += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / count


# --------------------------------------------------------------------------- the protocol


def _seed_of(*parts: int) -> int:
    """A seed for one purpose of one run, e.g. ``(seed, stage, 1)``, stable across runs and methods."""
    value = 0
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**63 - 1)
    return value


def _new_model(config: TextConfig, seed: int, stage: int) -> CausalLM:
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's generator left as it was
        torch.manual_seed(_seed_of(seed, stage, 0))
        return CausalLM(256, config.context, config.width, config.heads, config.layers)


def _lr_at(step: int, total: int, config: TextConfig) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to ``lr_final * lr``."""
    warm = max(1, round(config.warmup * total)) if config.warmup > 0 else 0
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return config.lr * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def _batches(data: Tensor, batch_size: int) -> list[Tensor]:
    return [data[i : i + batch_size] for i in range(0, len(data), batch_size)]


def run_seed_method(
    method: str, seed: int, config: TextConfig, split: Split, threads: int | None = None
) -> list[dict[str, Any]]:
    """Run one method on one seed's text through every stage; return one record per stage.

    Parameters
    ----------
    method:
        One of :data:`METHODS`.
    seed:
        The seed (it fixes the initial models, the batch order and the S&P noise).
    config:
        The settings.
    split:
        The seed's text (:func:`draw_split`).
    threads:
        Set ``torch.set_num_threads`` first (``None``: leave it).

    Returns
    -------
    list of dict
        One record per stage, with the keys of :data:`RECORD_FIELDS`.

    Examples
    --------
    >>> split = draw_split(read_corpus(), 0, QUICK)
    >>> [(r["stage"], r["steps"]) for r in run_seed_method("sp", 0, QUICK, split)]
    [(1, 8), (2, 15)]
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {', '.join(METHODS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    heldout = windows(split.heldout, config.context)
    chunk_windows = [windows(c, config.context) for c in split.chunks(config.chunks)]
    model = _new_model(config, seed, 1)
    records = []
    for stage in range(1, config.chunks + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        seen = torch.cat(chunk_windows[:stage])  # the text so far, in arrival order: new text last
        info: dict[str, Any] = {}
        if stage > 1:
            if method == "cold":
                model = _new_model(config, seed, stage)
            elif method == "sp":
                g = torch.Generator().manual_seed(_seed_of(seed, stage, 2))
                shrink_perturb_(model, config.sp_shrink, config.sp_sigma, generator=g)
        base = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        opt: torch.optim.Optimizer = base
        if method == "dash":
            opt = DASHWrapper(base, model=model, batch_loss=next_token_loss, lambd=config.dash_lambd,
                              alpha=config.dash_alpha)
            if stage > 1:
                report = opt.on_new_data(_batches(seen, config.batch_size))
                info = {"dash_mean_factor": report.mean_factor, "dash_at_floor": report.at_floor,
                        "dash_units": report.units}
        g = torch.Generator().manual_seed(_seed_of(seed, stage, 1))  # the same batches for every method
        per_epoch = math.ceil(len(seen) / config.batch_size)
        total = config.epochs * per_epoch
        model.train()
        step, last_epoch = 0, []
        for _epoch in range(config.epochs):
            order = torch.randperm(len(seen), generator=g)
            last_epoch = []
            for i in range(0, len(seen), config.batch_size):
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, config)
                loss = next_token_loss(model, seen[order[i : i + config.batch_size]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                opt.step()
                last_epoch.append(float(loss.detach()))
                step += 1
        test = heldout_loss(model, heldout, config.batch_size * 2)
        records.append({
            "seed": seed,
            "method": method,
            "stage": stage,
            "train_bytes": stage * len(split.train) // config.chunks,
            "windows": len(seen),
            "steps": step,
            "train_loss": sum(last_epoch) / len(last_epoch),
            "heldout_loss": test,
            "heldout_ppl": math.exp(test),
            "heldout_bpb": test / math.log(2),
            "dash_mean_factor": info.get("dash_mean_factor"),
            "dash_at_floor": info.get("dash_at_floor"),
            "dash_units": info.get("dash_units"),
            "seconds": round(time.perf_counter() - start, 3),
            "cpu_seconds": round(time.process_time() - cpu_start, 3),
        })
    return records


def _work(job: tuple[str, int, TextConfig, str | None, int]) -> list[dict[str, Any]]:
    """One worker's run: read the corpus, draw the seed's split, run the method."""
    method, seed, config, root, threads = job
    split = draw_split(read_corpus(root), seed, config)
    return run_seed_method(method, seed, config, split, threads)


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers on Ctrl-C


def run_text(
    config: TextConfig = TextConfig(),
    seeds: Sequence[int] = _DEFAULT_SEEDS,
    methods: Sequence[str] = METHODS,
    root: Path | str | None = None,
    jobs: int = 1,
    threads: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run every (seed, method) of the staged protocol and return the records, sorted.

    Parameters
    ----------
    config:
        The settings (:class:`TextConfig`).
    seeds:
        The seeds; each draws its own text (:func:`draw_split`).
    methods:
        Some of :data:`METHODS`.
    root:
        The folder of ``.py`` files (default: the standard library).
    jobs:
        Worker processes (``spawn``), one (seed, method) run each; 1 runs in this process.
        The records do not depend on it.
    threads:
        ``torch`` threads per run.
    progress:
        Print one line per finished run to stderr.

    Returns
    -------
    list of dict
        One record per seed, method and stage (:data:`RECORD_FIELDS`), sorted by seed,
        method (in :data:`METHODS` order) and stage.

    Examples
    --------
    >>> recs = run_text(QUICK, seeds=[0], methods=["warm", "dash"])
    >>> [(r["method"], r["stage"]) for r in recs]
    [('warm', 1), ('warm', 2), ('dash', 1), ('dash', 2)]
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use some of {', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"methods={list(methods)!r}; use some of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods {list(methods)!r} lists one twice")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds={list(seeds)!r} must be one or more integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {list(seeds)!r} lists one twice")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be an integer >= 1 (1: run everything in this process)")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1")
    root = None if root is None else str(root)
    corpus = read_corpus(root)
    for s in seeds:
        draw_split(corpus, s, config)  # a corpus too small fails here, before any training
    todo = [(m, int(s), config, root, threads) for s in seeds for m in methods]
    results: list[list[dict[str, Any]]] = []

    def done(recs: list[dict[str, Any]]) -> None:
        if progress:
            r = recs[-1]
            print(f"  seed {r['seed']} {r['method']:>4}: held-out loss {r['heldout_loss']:.4f} at stage {r['stage']}, "
                  f"{sum(x['cpu_seconds'] for x in recs):.0f} s CPU", file=sys.stderr, flush=True)
        results.append(recs)

    if jobs == 1:
        previous = torch.get_num_threads()
        try:
            for m, s, c, _r, t in todo:
                done(run_seed_method(m, s, c, draw_split(corpus, s, c), t))
        finally:
            torch.set_num_threads(previous)
    else:
        results += _run_parallel(todo, jobs, done)
    order = {m: i for i, m in enumerate(METHODS)}
    flat = [r for recs in results for r in recs]
    return sorted(flat, key=lambda r: (r["seed"], order[r["method"]], r["stage"]))


def _run_parallel(todo: list[Any], jobs: int, done: Any) -> list[list[dict[str, Any]]]:
    """Run the jobs in ``spawn`` workers; hand each run's records to ``done`` as it finishes.

    Ctrl-C is recorded, never raised inside ``multiprocessing`` (whose locks it could leave
    taken), and acted on between polls: the workers (which ignore it) are stopped.
    """
    with deferred_interrupts() as ctrl_c:
        pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=mp.get_context("spawn"), initializer=_init_worker)
        try:
            with sigint_blocked():  # workers start with SIGINT blocked, then ignore it
                futures = {pool.submit(_work, job): i for i, job in enumerate(todo)}
            finished: dict[int, list[dict[str, Any]]] = {}
            pending = set(futures)
            while pending:
                if ctrl_c:
                    ctrl_c.clear()
                    raise KeyboardInterrupt
                ready, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in ready:
                    finished[futures[future]] = future.result()
                    done(finished[futures[future]])
            pool.shutdown(wait=True)
        except BaseException:
            _stop(pool)
            raise
    return []  # ``done`` kept every run's records


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (``ProcessPoolExecutor`` has no public way before Python 3.14)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
        process.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- the summary


@dataclass(frozen=True)
class LastStage:
    """DASH (or another reference) against one method at the last stage, paired by seed.

    Attributes
    ----------
    method, other:
        The reference and the other method.
    seeds:
        The seeds that ran both.
    differences:
        Per seed, the reference's held-out loss minus the other's (nats per byte; below 0:
        the reference predicts the held-out text better).
    interval:
        Their mean with its 95% t interval (:func:`~torch_dash_optim.experiments.stats.t_interval`).

    Examples
    --------
    >>> c = LastStage("dash", "warm", (0, 1, 2), (-0.02, -0.03, -0.01), t_interval([-0.02, -0.03, -0.01]))
    >>> print(c.line())
    DASH − Warm: −0.020 [−0.045, +0.005] nats/byte, not distinguishable (3 seeds)
    """

    method: str
    other: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    interval: Interval

    def verdict(self) -> str:
        """``DASH lower (better)`` (interval below 0), ``DASH higher (worse)``, ``not distinguishable`` or none."""
        inside = self.interval.contains(0.0)
        if inside is None:
            return "one seed: no interval"
        if inside:
            return "not distinguishable"
        label = LABELS.get(self.method, self.method)
        return f"{label} lower (better)" if self.interval.mean < 0 else f"{label} higher (worse)"

    def line(self) -> str:
        """One line: ``DASH − Warm: −0.012 [−0.020, −0.004] nats/byte, DASH lower (better) (5 seeds)``."""
        iv = self.interval
        bracket = "" if iv.low is None else f" [{_signed(iv.low)}, {_signed(iv.high)}]"
        n = f"{iv.n} seed{'s' if iv.n != 1 else ''}"
        return (f"{LABELS.get(self.method, self.method)} − {LABELS.get(self.other, self.other)}: "
                f"{_signed(iv.mean)}{bracket} nats/byte, {self.verdict()} ({n})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {"method": self.method, "other": self.other, "seeds": list(self.seeds),
                "differences": list(self.differences), **asdict(self.interval), "verdict": self.verdict()}


def _signed(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}".replace("-", "−")


def compare_last(records: Sequence[dict[str, Any]], method: str = "dash", others: Sequence[str] | None = None
                 ) -> list[LastStage]:
    """Pair ``method`` with each other method at the last stage: held-out loss differences per seed.

    Parameters
    ----------
    records:
        Records of :func:`run_text`.
    method:
        The reference (default DASH).
    others:
        The methods to compare with (default: every other one present, in :data:`METHODS` order).

    Returns
    -------
    list of LastStage
        One per other method that shares at least one seed with ``method``.

    Examples
    --------
    >>> recs = [{"seed": s, "method": m, "stage": 2, "heldout_loss": v}
    ...         for s, m, v in [(0, "dash", 1.0), (1, "dash", 1.1), (0, "warm", 1.2), (1, "warm", 1.2)]]
    >>> c = compare_last(recs)[0]
    >>> c.other, c.differences, c.verdict()
    ('warm', (-0.2, -0.1), 'not distinguishable')
    """
    last_stage = max((int(r["stage"]) for r in records), default=0)
    last = {(r["method"], int(r["seed"])): float(r["heldout_loss"]) for r in records if r["stage"] == last_stage}
    present = [m for m in METHODS if any(k[0] == m for k in last)]
    present += sorted({k[0] for k in last} - set(present))
    out = []
    for other in others if others is not None else [m for m in present if m != method]:
        seeds = tuple(sorted(s for m, s in last if m == method and (other, s) in last))
        if not seeds:
            continue
        diffs = tuple(round(last[(method, s)] - last[(other, s)], 12) for s in seeds)
        out.append(LastStage(method, other, seeds, diffs, t_interval(diffs)))
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def stage_table(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per method, per stage: the mean and std (ddof=0) over seeds of held-out loss, perplexity and train loss.

    Examples
    --------
    >>> recs = [{"seed": s, "method": "warm", "stage": 1, "heldout_loss": v, "heldout_ppl": 2.0,
    ...          "train_loss": 1.0, "train_bytes": 8} for s, v in [(0, 1.0), (1, 3.0)]]
    >>> stage_table(recs)["warm"][0]["heldout_loss"]
    (2.0, 1.0)
    """
    out: dict[str, list[dict[str, Any]]] = {}
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    for m in methods:
        rows = []
        for stage in sorted({int(r["stage"]) for r in records if r["method"] == m}):
            rs = [r for r in records if r["method"] == m and r["stage"] == stage]
            rows.append({"stage": stage, "train_bytes": rs[0]["train_bytes"], "n": len(rs),
                         **{k: _mean_std([float(r[k]) for r in rs]) for k in ("heldout_loss", "heldout_ppl",
                                                                                "train_loss")}})
        out[m] = rows
    return out


def summary_markdown(records: Sequence[dict[str, Any]]) -> str:
    """The tables and verdicts of ``summary.md``: held-out loss per stage, the last stage, DASH against each.

    Examples
    --------
    >>> recs = [{"seed": s, "method": m, "stage": 1, "heldout_loss": v, "heldout_ppl": 2.0, "train_loss": 1.0,
    ...          "train_bytes": 8} for s in (0, 1) for m, v in (("warm", 1.0), ("dash", 0.9 + s / 100))]
    >>> print(summary_markdown(recs).splitlines()[-1])
    - DASH − Warm: −0.095 [−0.159, −0.031] nats/byte, DASH lower (better) (2 seeds)
    """
    table = stage_table(records)
    stages = sorted({int(r["stage"]) for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    lines = ["## Held-out loss (nats per byte) after each stage", "",
             "| Method | " + " | ".join(f"stage {s}" for s in stages) + " |", "|---|" + "---|" * len(stages)]
    for m, rows in table.items():
        cells = [f"{row['heldout_loss'][0]:.4f} ± {row['heldout_loss'][1]:.4f}" for row in rows]
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± std over seeds {', '.join(map(str, seeds))} (std with ddof=0).", "",
              "## The last stage", "",
              "| Method | Held-out loss (nats/byte) | Perplexity | Bits per byte | Train loss, last epoch |",
              "|---|---|---|---|---|"]
    for m, rows in table.items():
        row = rows[-1]
        (loss, sd), (ppl, psd), (tr, tsd) = row["heldout_loss"], row["heldout_ppl"], row["train_loss"]
        lines.append(f"| {LABELS.get(m, m)} | {loss:.4f} ± {sd:.4f} | {ppl:.3f} ± {psd:.3f} | "
                     f"{loss / math.log(2):.4f} | {tr:.4f} ± {tsd:.4f} |")
    comparisons = compare_last(records)
    if comparisons:
        lines += ["", "## DASH against each method at the last stage", "",
                  f"Held-out loss of DASH minus the other method's, paired by seed, mean with its {100 * LEVEL:.0f}% "
                  "t interval over seeds. Below 0: DASH predicts the held-out text better. An interval that contains "
                  "0 is not distinguishable.", ""]
        lines += [f"- {c.line()}" for c in comparisons]
    warm_cold = compare_last(records, "warm", ["cold"])
    if warm_cold:
        lines += ["", "The warm-start gap, for context:", "", f"- {warm_cold[0].line()}"]
    return "\n".join(lines) + "\n"


def _csv(records: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in RECORD_FIELDS} for r in records)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the figure


def figure_title(python: str, chunks: int, seeds: int) -> str:
    """The figure's title, on two lines.

    Examples
    --------
    >>> print(figure_title("3.11.7", 4, 5))
    A byte-level transformer on Python 3.11.7's standard library
    4 chunks, 5 seeds
    """
    return f"A byte-level transformer on Python {python}'s standard library\n{chunks} chunks, {seeds} seeds"


def plot_text(records: Sequence[dict[str, Any]], path: Path | str, title: str = "") -> Path:
    """Draw held-out loss per stage per method (mean ± std over seeds) and DASH's paired differences.

    Needs matplotlib (the ``experiments`` extra).

    Parameters
    ----------
    records:
        Records of :func:`run_text`.
    path:
        The PNG to write.
    title:
        A title over the figure.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> recs = run_text(QUICK, seeds=[0, 1], methods=["cold", "dash"])
    >>> plot_text(recs, Path(tempfile.mkdtemp()) / "text.png").name
    'text.png'
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        from .._extras import install_hint

        raise ImportError(f'the plot needs matplotlib, from the "experiments" extra: {install_hint("experiments")}'
                          ) from err
    from .plot import COLORS

    markers = {"cold": "o", "warm": "v", "sp": "s", "dash": "*"}
    table = stage_table(records)
    comparisons = compare_last(records)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.2, 7.0), gridspec_kw={"height_ratios": [3, 2]})
    for m, rows in sorted(table.items(), key=lambda kv: kv[0] == "dash"):
        xs = [row["train_bytes"] / 1024 for row in rows]
        mean = [row["heldout_loss"][0] for row in rows]
        sd = [row["heldout_loss"][1] for row in rows]
        thick = m == "dash"
        ax.plot(xs, mean, color=COLORS.get(m, "k"), marker=markers.get(m, "o"), lw=2.6 if thick else 1.5,
                ms=9 if thick else 5, label=LABELS.get(m, m), zorder=3 if thick else 2)
        ax.fill_between(xs, [a - b for a, b in zip(mean, sd)], [a + b for a, b in zip(mean, sd)],
                        color=COLORS.get(m, "k"), alpha=0.12, lw=0)
    stages = sorted({row["train_bytes"] / 1024 for rows in table.values() for row in rows})
    ax.set_xticks(stages, [f"{x:g}" for x in stages])
    ax.set(xlabel="training text so far (KiB), one point per stage", ylabel="held-out loss (nats per byte)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    for i, c in enumerate(comparisons):
        color = COLORS.get(c.other, "k")
        bx.scatter(c.differences, [i] * len(c.differences), color=color, alpha=0.8, s=24, zorder=4)
        iv = c.interval
        if iv.low is not None:
            bx.plot([iv.low, iv.high], [i, i], color="k", lw=2, zorder=3)
        bx.plot([iv.mean], [i], marker="|", color="k", ms=14, mew=2, zorder=3)
    bx.axvline(0, color="k", lw=0.8, ls=":")
    bx.set_ylim(len(comparisons) - 0.5, -0.5)
    bx.set_yticks(range(len(comparisons)), [LABELS.get(c.other, c.other) for c in comparisons])
    bx.set_title(f"DASH minus each method at the last stage, paired by seed\n(dots: seeds; bar: {100 * LEVEL:.0f}% t "
                 "interval)", fontsize=9)
    bx.set(xlabel="held-out loss difference (nats per byte); < 0: DASH better")
    bx.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- the command line


def _seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be comma-separated integers such as 0,1,2; got {text!r}"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, such as 0,1,2; got {text!r}")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise argparse.ArgumentTypeError(
            f"{text!r} names seed {', '.join(map(str, twice))} twice; give each seed once, e.g. 0,1,2"
        )
    return seeds


def _methods_arg(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(bad) or repr(text)}; use some of {','.join(METHODS)}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} names {', '.join(twice)} twice; give each method once")
    return names


_OVERRIDES = ("chunks", "epochs", "train_bytes", "heldout_bytes", "context", "width", "layers", "lr")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m torch_dash_optim.experiments.text``.

    Examples
    --------
    >>> build_parser().parse_args(["--out", "x", "--seeds", "0,1,2"]).seeds
    [0, 1, 2]
    """
    d = TextConfig()
    p = argparse.ArgumentParser(
        prog="python -m torch_dash_optim.experiments.text",
        description="A small causal transformer trained as the standard library's source text arrives in chunks: "
        "cold, warm, Shrink & Perturb and DASH, held-out loss per stage, paired per-seed comparisons.",
    )
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--seeds", type=_seeds_arg, help="comma-separated (default 0,1,2,3,4; --quick: 0,1)")
    p.add_argument("--methods", type=_methods_arg, default=list(METHODS), help=f"default {','.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds; its numbers are not evidence")
    p.add_argument("--stdlib", type=Path, help="read the .py files of this folder instead of the standard library")
    g = p.add_argument_group("settings (defaults: the published run's)")
    for name in _OVERRIDES:
        g.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(d, name)), help=f"default {getattr(d, name)}")
    p.add_argument("--jobs", type=int, help="worker processes, one (seed, method) run each (default: one per CPU core; "
                   "1 runs everything in this process); the numbers do not depend on it")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the text experiment from the command line; return the exit status.

    Parameters
    ----------
    argv:
        The arguments, without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 130 when interrupted (nothing is written then).

    Raises
    ------
    SystemExit
        With status 2 for a bad argument, naming it and the fix.

    Examples
    --------
    >>> import tempfile
    >>> main(["--quick", "--seeds", "0", "--methods", "warm,dash", "--jobs", "1", "--no-plot",
    ...       "--out", tempfile.mkdtemp()])  # doctest: +ELLIPSIS
    # A causal transformer on the standard library's source, 2 chunks
    ...
    0
    >>> main(["--out", tempfile.mkdtemp(), "--chunks", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    base = QUICK if args.quick else TextConfig()
    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    try:
        config = replace(base, **given)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    seeds = args.seeds or list(_QUICK_SEEDS if args.quick else _DEFAULT_SEEDS)
    if args.jobs is None:
        args.jobs = min(_cores(), len(seeds) * len(args.methods))
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be >= 1 (1 runs everything in this process)")
    if args.threads < 1:
        parser.error(f"--threads {args.threads} must be >= 1")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder; choose a folder path")
    if (out / "records.json").exists() and not args.overwrite:
        parser.error(f"--out {out} already holds a text run (records.json); add --overwrite to replace it, or choose "
                     "another --out")
    try:
        corpus = read_corpus(args.stdlib)
        for s in seeds:
            draw_split(corpus, s, config)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if args.quick:
        print(SMOKE_NOTE, file=sys.stderr)
    print(f"{len(seeds)} seeds x {len(args.methods)} methods x {config.chunks} stages on {corpus.total_bytes} bytes "
          f"of Python {corpus.python}'s standard library ({len(corpus.names)} files)", file=sys.stderr)
    start = time.perf_counter()
    try:
        records = run_text(config, seeds, args.methods, args.stdlib, jobs=args.jobs, threads=args.threads,
                           progress=True)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    cpu = sum(r["cpu_seconds"] for r in records)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("provenance.json", "text-results.png"):
        (out / stale).unlink(missing_ok=True)
    command = " ".join(["python -m torch_dash_optim.experiments.text", *raw])
    setup = {"config": asdict(config), "seeds": seeds, "methods": list(args.methods), "quick": args.quick,
             "corpus": corpus.describe(), "optimizer": "AdamW", "tokens": "bytes"}
    atomic_write(out / "config.json", json.dumps(setup, indent=2, sort_keys=True) + "\n")
    atomic_write(out / "splits.json", json.dumps(
        {"corpus": corpus.describe(), "splits": [draw_split(corpus, s, config).describe() for s in seeds]},
        indent=1) + "\n")
    atomic_write(out / "records.csv", _csv(records))
    atomic_write(out / "records.json", json.dumps({**setup, "records": records}, indent=1) + "\n")
    comparisons = compare_last(records)
    summary = {
        "stages": stage_table(records),
        "last_stage": [c.to_dict() for c in comparisons],
        "warm_minus_cold": [c.to_dict() for c in compare_last(records, "warm", ["cold"])],
    }
    atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    add_invocation(out, command, args.jobs, args.threads, wall, cpu)
    text = (
        f"# A causal transformer on the standard library's source, {config.chunks} chunks\n\n"
        + (f"**{SMOKE_NOTE}**\n\n" if args.quick else "")
        + f"Command: `{command}`  \nCorpus: Python {corpus.python}, {len(corpus.names)} files, "
        f"{corpus.total_bytes} bytes, sha256 {corpus.sha256[:16]}…  \nWall time: {wall:.0f} s ({args.jobs} job(s)); "
        f"CPU time of the runs: {cpu:.0f} s\n\n" + summary_markdown(records)
    )
    atomic_write(out / "summary.md", text)
    if not args.no_plot:
        try:
            plot_text(records, out / "text-results.png", title=figure_title(corpus.python, config.chunks, len(seeds)))
        except ImportError as err:
            print(f"no plot: {err}", file=sys.stderr)
    print(text)
    if args.quick:
        print(SMOKE_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
