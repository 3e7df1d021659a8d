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

The modules, one role each: ``settings`` (the settings and the methods), ``corpus`` (the text
and each seed's split), ``model`` (the transformer and its losses), ``protocol`` (the staged
training and the records; worker processes in ``parallel``), ``compare`` (paired comparisons at
the last stage), ``tables`` (the tables of ``summary.md``), ``figure`` (the figure) and ``cli``
(the command line, also ``__main__``). Import the names below from the package:
``from torch_dash_optim.experiments.text import CausalLM, TextConfig``.
"""

from .cli import SMOKE_NOTE, build_parser, main
from .compare import LastStage, compare_last
from .corpus import Corpus, Split, draw_split, read_corpus, stdlib_dir, windows
from .figure import figure_title, plot_text
from .model import CausalLM, heldout_loss, next_token_loss
from .protocol import RECORD_FIELDS, run_seed_method, run_text
from .settings import LABELS, METHODS, QUICK, TextConfig
from .tables import stage_table, summary_markdown

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
