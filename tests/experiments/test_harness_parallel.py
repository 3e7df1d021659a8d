"""``jobs > 1``: runs in worker processes give the records of a sequential run, and resume works."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments import protocol as protocol_module
from torch_dash_optim.experiments.models import CNN1d

CONFIG = ProtocolConfig(num_chunks=3, lr=0.05, batch_size=16, max_epochs=3, threshold=0.95)
# A picklable factory (worker processes import it by name): the default model, tiny.
FACTORY = functools.partial(CNN1d, 12, 2, width=3, kernels=(3, 3))
KWARGS = dict(config=CONFIG, methods=["cold", "sp", "fire", "dash"], seeds=[0, 1], progress=False)


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(120, 12, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    return TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in records]


@pytest.fixture(scope="module")
def sequential() -> list[dict]:
    return run_protocol(*_data(), FACTORY, **KWARGS)


def test_parallel_records_are_bit_identical_to_sequential(sequential: list[dict], tmp_path: Path) -> None:
    parallel = run_protocol(*_data(), FACTORY, jobs=2, out=tmp_path, **KWARGS)
    assert _strip(parallel) == _strip(sequential)  # floats compared exactly
    saved = json.loads((tmp_path / "experiments.json").read_text())["records"]
    assert [(r["method"], r["seed"], r["experiment"]) for r in saved] == [
        (r["method"], r["seed"], r["experiment"]) for r in sequential
    ]
    assert any(r["dash_factors"] for r in saved)


def test_parallel_resume_continues_a_crashed_run_exactly(
    sequential: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_evaluate = protocol_module.evaluate

    def crashing(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 11:  # seed 0: cold, sp, fire done (9 experiments); dash's second one crashes
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(protocol_module, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(*_data(), FACTORY, out=tmp_path, **KWARGS)
    assert (tmp_path / "runs" / "dash_sgd_seed0.pt").exists()
    monkeypatch.setattr(protocol_module, "evaluate", real_evaluate)
    resumed = run_protocol(*_data(), FACTORY, out=tmp_path, resume=True, jobs=2, **KWARGS)
    assert _strip(resumed) == _strip(sequential)
    assert not list((tmp_path / "runs").glob("*.pt"))
    assert len(json.loads((tmp_path / "experiments.json").read_text())["records"]) == len(sequential)


def test_jobs_need_a_picklable_factory_and_a_positive_count() -> None:
    with pytest.raises(ValueError, match="picklable model_factory.*use jobs=1"):
        run_protocol(*_data(), lambda: CNN1d(12, 2, width=3), jobs=2, **KWARGS)
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        run_protocol(*_data(), FACTORY, jobs=0, **KWARGS)
