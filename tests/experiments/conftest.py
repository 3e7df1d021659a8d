"""Fixtures of the experiment harness's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _publish_folders import CNN_DIR, CONFIG, MLP_DIR
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import publish, run_protocol
from torch_dash_optim.experiments.models import MLP, CNN1d
from torch_dash_optim.experiments.provenance import add_invocation


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread (and CI shares its cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small results folders written by ``run_protocol`` (a CNN and an MLP, two seeds)."""
    root = tmp_path_factory.mktemp("results")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 12, generator=g)
    y = (x[:, :2].sum(1) > 0).long()
    train, test = TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])
    for name, factory, methods in (
        (
            CNN_DIR,
            lambda: CNN1d(12, 2, width=3, kernels=(3,)),
            ["cold", "warm", "sp", "fire", "dash"],
        ),
        (MLP_DIR, lambda: MLP(12, 2, width=8, depth=2), ["cold", "sp", "dash"]),
    ):
        run_protocol(
            train, test, factory, config=CONFIG, methods=methods, seeds=[0, 1], out=root / name, progress=False,
            setup={"dataset": "mnist1d", "model": name.split("-")[-1]},
        )
        add_invocation(root / name, publish.FOLDERS[name], 1, 1, 1.0, 1.0)
    return root


@pytest.fixture
def at(results: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small results folders, as the folder every renderer reads (``publish.RESULTS``)."""
    monkeypatch.setattr(publish, "RESULTS", results)
    return results
