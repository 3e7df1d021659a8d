"""A text run's settings and methods: :class:`~torch_dash_optim.experiments.text.TextConfig`, ``QUICK``, ``METHODS``.

The methods are the harness's cold, warm, Shrink & Perturb and DASH, under the harness's labels
(:data:`torch_dash_optim.experiments.stats.LABELS`, each built-in method's ``label``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..stats import LABELS as _HARNESS_LABELS

__all__ = ["LABELS", "METHODS", "QUICK", "TextConfig"]

#: The methods, in the order of the tables.
METHODS: tuple[str, ...] = ("cold", "warm", "sp", "dash")
#: How the tables and figures name them (the harness's labels of the same methods).
LABELS: dict[str, str] = {m: _HARNESS_LABELS[m] for m in METHODS}


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
        """Refuse a setting of the wrong type or out of range, naming it and the fix."""
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
_DEFAULT_SEEDS = (0, 1, 2, 3, 4)  # a run's seeds (the published run's), and --quick's
_QUICK_SEEDS = (0, 1)
