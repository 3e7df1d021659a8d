"""The staged protocol: methods share stage 1 and differ after; runs are reproducible; bad arguments refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments.text import METHODS, TextConfig, run_text, windows


def test_methods_share_the_first_stage_and_differ_after(folder: Path, small: TextConfig) -> None:
    records = run_text(small, seeds=[0], root=folder)
    first = {r["method"]: r["heldout_loss"] for r in records if r["stage"] == 1}
    last = {r["method"]: r["heldout_loss"] for r in records if r["stage"] == 2}
    assert len(set(first.values())) == 1 and set(first) == set(METHODS)
    assert len(set(last.values())) == 4  # cold, warm, S&P and DASH start stage 2 from different weights
    dash = [r for r in records if r["method"] == "dash"]
    assert dash[0]["dash_mean_factor"] is None and 0.3 <= dash[1]["dash_mean_factor"] <= 1.0
    assert [r["windows"] for r in dash] == [len(windows(b"x" * 300, 8)), 2 * len(windows(b"x" * 300, 8))]


def test_a_run_is_reproducible_and_does_not_touch_the_global_generator(folder: Path, small: TextConfig) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = run_text(small, seeds=[1], methods=["cold", "sp"], root=folder)
    assert torch.equal(torch.get_rng_state(), state)
    b = run_text(small, seeds=[1], methods=["cold", "sp"], root=folder)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in a]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in b]



def test_run_text_refuses_bad_arguments(folder: Path, small: TextConfig) -> None:
    with pytest.raises(ValueError, match="unknown method 'fire'; use some of cold, warm, sp, dash"):
        run_text(small, seeds=[0], methods=["dash", "fire"], root=folder)
    with pytest.raises(ValueError, match=r"seeds \[0, 0\] lists one twice"):
        run_text(small, seeds=[0, 0], root=folder)
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        run_text(small, seeds=[0], root=folder, jobs=0)


def test_worker_processes_give_the_same_records(folder: Path, small: TextConfig) -> None:
    """``run_text(jobs=2)`` (through ``experiments.workers``) gives the records of ``jobs=1``."""
    one = run_text(small, seeds=[0], methods=["warm", "dash"], root=folder, jobs=1)
    two = run_text(small, seeds=[0], methods=["warm", "dash"], root=folder, jobs=2)
    drop = ("seconds", "cpu_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in one] == [
        {k: v for k, v in r.items() if k not in drop} for r in two
    ]
