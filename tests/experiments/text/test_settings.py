"""The settings of a text run and its methods' labels."""

from __future__ import annotations

import pytest

from torch_dash_optim.experiments.methods import get_method
from torch_dash_optim.experiments.text import LABELS, METHODS, TextConfig


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        TextConfig(width=10, heads=4)
    with pytest.raises(TypeError, match="integer"):
        TextConfig(epochs=2.5)
    with pytest.raises(ValueError, match="shorter than one window"):
        TextConfig(train_bytes=100)


def test_the_methods_carry_the_harness_labels() -> None:
    assert list(LABELS) == list(METHODS) == ["cold", "warm", "sp", "dash"]
    assert LABELS == {m: get_method(m).label for m in METHODS}
    assert LABELS["sp"] == "Shrink & Perturb" and LABELS["dash"] == "DASH"  # as the published tables name them
