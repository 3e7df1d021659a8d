"""The plasticity diagnostics of each experiment (dormant share, feature rank): right, and free of side effects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torch_dash_optim.diagnostics import diagnose
from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments.protocol import DIAGNOSTIC_SAMPLES, DIAGNOSTIC_TAU
from torch_dash_optim.experiments.summary import diagnostics_markdown, steps_markdown

CONFIG = ProtocolConfig(num_chunks=3, lr=0.05, batch_size=16, max_epochs=3, threshold=0.95)
TIMING = ("seconds", "cpu_seconds", "diagnostics_seconds")


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])


class HalfDead(nn.Module):
    """A hidden layer of 16 ReLU units whose first 8 can never fire (zero weights, bias -100: no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            self.hidden.weight[:8] = 0.0
            self.hidden.bias[:8] = -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x)))


def _strip(records: list[dict], drop: tuple[str, ...]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def test_the_dormant_share_and_feature_rank_are_measured_after_every_experiment() -> None:
    records = run_protocol(*_data(), HalfDead, config=CONFIG, methods=["warm", "cold"], progress=False)
    for r in records:
        assert r["dormant"] == 0.5  # the head reads 16 features, 8 of them dead (the hidden layer reads data)
        assert 1 <= r["feature_rank"] <= 8  # the penultimate features span at most the 8 live units
        assert 0 <= r["diagnostics_seconds"] <= r["seconds"]


def test_the_figures_are_diagnose_on_the_fixed_subsample() -> None:
    """One warm run, replayed by hand: the same model, diagnosed on the seed's subsample, gives the record."""
    train, test = _data()
    config = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=2, threshold=0.95)
    models: list[nn.Module] = []

    class Kept(nn.Sequential):
        def __init__(self) -> None:
            super().__init__(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2))
            models.append(self)

    record = run_protocol(train, test, Kept, config=config, methods=["warm"], seeds=[2], progress=False)[-1]
    model = models[-1]  # the run's model (the check's throwaway model came first)
    from torch.utils.data import ConcatDataset, Subset

    from torch_dash_optim.experiments.loaders import split_chunks
    from torch_dash_optim.experiments.protocol import _experiment_seed

    chunks = split_chunks(train, 2, torch.Generator().manual_seed(2))
    pool = ConcatDataset(chunks)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(_experiment_seed(2, 2)))
    sample = Subset(pool, order[:DIAGNOSTIC_SAMPLES].tolist())
    x = torch.stack([sample[i][0] for i in range(len(sample))])
    found = diagnose(model, [(x, None)], tau=DIAGNOSTIC_TAU, max_feature_rows=DIAGNOSTIC_SAMPLES)
    assert record["dormant"] == pytest.approx(found.dormant, abs=1e-6)
    assert record["feature_rank"] == found.features.rank


def test_the_diagnostics_change_nothing_else_and_can_be_turned_off(tmp_path: Path) -> None:
    kwargs = dict(config=CONFIG, methods=["warm", "dash", "sp"], seeds=[0, 1], progress=False)
    with_them = run_protocol(*_data(), HalfDead, **kwargs)
    without = run_protocol(*_data(), HalfDead, diagnostics=False, out=tmp_path, **kwargs)
    assert all(r["dormant"] is None and r["feature_rank"] is None for r in without)
    diag = ("dormant", "feature_rank", *TIMING)
    assert _strip(with_them, diag) == _strip(without, diag)  # the same training, to the last bit
    assert json.loads((tmp_path / "config.json").read_text())["harness"]["diagnostics"] is None


def test_the_summary_tables_show_steps_and_plasticity_per_experiment() -> None:
    records = run_protocol(*_data(), HalfDead, config=CONFIG, methods=["warm", "cold"], progress=False)
    steps = steps_markdown(records, CONFIG.batch_size)
    lines = steps.splitlines()
    assert lines[0] == "| Method | 1 | 2 | 3 |"
    assert lines[2] == "| Batches per epoch (smallest batch) | 2 (15) | 4 (15) | 6 (15) |"  # 30, 60, 90 examples
    cold = [r["steps"] for r in sorted(records, key=lambda r: r["experiment"]) if r["method"] == "cold"]
    assert lines[3] == "| Cold (random init) | " + " | ".join(map(str, cold)) + " |"  # one seed: its steps
    assert lines[4].startswith("| Warm |") and "none holds less than half a batch" in steps
    plasticity = diagnostics_markdown(records, DIAGNOSTIC_TAU)
    assert "| Feature rank | 1 | 2 | 3 |" in plasticity and "| Dormant units (%) | 1 | 2 | 3 |" in plasticity
    assert "| Warm | 50.0 | 50.0 | 50.0 |" in plasticity
    zero = [{**r, "dormant": 0.0} for r in records]
    assert "No unit was dormant (τ = 0.025)" in diagnostics_markdown(zero, DIAGNOSTIC_TAU)
    assert diagnostics_markdown([{**r, "dormant": None, "feature_rank": None} for r in records]) == ""


def test_the_plot_gains_the_plasticity_panel(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from torch_dash_optim.experiments.plot import plot_results

    records = run_protocol(*_data(), HalfDead, config=CONFIG, methods=["warm", "dash"], progress=False)
    import matplotlib.pyplot as plt

    created = []
    real = plt.figure
    plt_figure = lambda *a, **k: created.append(real(*a, **k)) or created[-1]  # noqa: E731
    try:
        plt.figure = plt_figure
        plot_results(records, tmp_path / "with.png")
        plot_results([{**r, "dormant": None, "feature_rank": None} for r in records], tmp_path / "without.png")
    finally:
        plt.figure = real
    labels = [{ax.get_ylabel() for ax in fig.axes} for fig in created]
    assert {"dormant units (%)", "feature rank (srank)"} <= labels[0]
    assert not {"dormant units (%)", "feature rank (srank)"} & labels[1]
    assert (tmp_path / "with.png").read_bytes()[:4] == b"\x89PNG"
