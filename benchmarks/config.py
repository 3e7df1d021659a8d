"""Sizes of a full run and of a quick (smoke) run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """How big and how often.

    Attributes
    ----------
    quick:
        A smoke run: tiny models, one or two repeats. Its numbers mean nothing.
    repeats:
        Timed repeats per measurement (the median is reported).
    warmup:
        Untimed runs before the timed ones.
    device:
        ``"cpu"`` or ``"cuda"``.
    """

    quick: bool = False
    repeats: int = 7
    warmup: int = 1
    device: str = "cpu"

    @classmethod
    def make(cls, quick: bool, device: str = "cpu", repeats: int | None = None) -> Config:
        """The default config of a full or a quick run.

        Examples
        --------
        >>> Config.make(quick=True).repeats
        2
        """
        default = 2 if quick else 7
        return cls(quick=quick, repeats=repeats or default, warmup=1, device=device)
