"""The Avalanche recipe of the integrations guide, run as shown, with the real avalanche-lib.

avalanche-lib has an extra of its own, ``avalanche``, in no other extra (it brings about 40
packages: wandb, tensorboard, scikit-learn, ...). CI installs it in a job of its own
(``scripts/test-avalanche.sh``), where ``DASH_REQUIRE_AVALANCHE=1`` makes its absence a failure;
elsewhere this module is skipped without it."""

from __future__ import annotations

import os
import runpy
import warnings
from pathlib import Path

import pytest
import torch

if os.environ.get("DASH_REQUIRE_AVALANCHE") == "1":
    import avalanche  # noqa: F401  (a missing package is a failure here)
else:
    pytest.importorskip("avalanche", reason="avalanche-lib is not installed (pip install -e .[avalanche])")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "integrations" / "avalanche_plugin.py"


def test_the_plugin_shrinks_before_each_grown_experience_over_all_the_data_new_last(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Avalanche's own (no QP solver, no loggers)
        ns = runpy.run_path(str(EXAMPLE), run_name="__main__")
    plugin, optimizer, strategy = ns["plugin"], ns["optimizer"], ns["strategy"]
    assert [r.call for r in plugin.reports] == [1, 2, 3] and optimizer.num_dash_calls == 3
    assert all(0 < r.mean_factor < 1 for r in plugin.reports)
    # Cumulative's data set, which the plugin read: every experience in order, the newest last.
    stream = ns["benchmark"].train_stream
    experiences = [torch.stack([e.dataset[i][0] for i in range(len(e.dataset))]) for e in stream]
    everything = strategy.dataset
    torch.testing.assert_close(torch.stack([everything[i][0] for i in range(len(everything))]), torch.cat(experiences))
    assert "call 3: 20 batches" in capsys.readouterr().out
