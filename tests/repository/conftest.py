"""Fixtures of the checks of the repository itself: the repository root on ``sys.path`` (so that
``scripts.render`` imports as ``scripts/published.py`` imports it), and small results folders for
the renderers of the published numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from torch.utils.data import TensorDataset  # noqa: E402

from scripts.render import format as render_format  # noqa: E402
from torch_dash_optim.experiments import run_protocol  # noqa: E402
from torch_dash_optim.experiments.models import CNN1d, CNN2d  # noqa: E402
from torch_dash_optim.experiments.provenance import add_invocation  # noqa: E402

from ._render_folders import CNN2D_DIR, CNN_DIR, CONFIG  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small results folders written by ``run_protocol`` (a 1-D and a 2-D CNN, two seeds)."""
    root = tmp_path_factory.mktemp("results")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 16, generator=g)
    y = (x[:, :2].sum(1) > 0).long()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest on one thread (and CI shares its cores)
    try:
        for name, dataset, inputs, factory, methods in (
            (CNN_DIR, "mnist1d", x, lambda: CNN1d(16, 2, width=3, kernels=(3,)),
             ["cold", "warm", "sp", "fire", "dash"]),
            (CNN2D_DIR, "mnist", x.view(-1, 1, 4, 4), lambda: CNN2d((1, 4, 4), 2, width=2), ["cold", "sp", "dash"]),
        ):
            train, test = TensorDataset(inputs[:90], y[:90]), TensorDataset(inputs[90:], y[90:])
            run_protocol(
                train, test, factory, config=CONFIG, methods=methods, seeds=[0, 1], out=root / name, progress=False,
                setup={"dataset": dataset, "model": name.split("-")[-1]},
            )
            add_invocation(root / name, render_format.FOLDERS[name], 1, 1, 1.0, 1.0)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def at(results: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small results folders, as the folder every renderer reads (``scripts.render.format.RESULTS``)."""
    monkeypatch.setattr(render_format, "RESULTS", results)
    return results
