"""A data set per seed: ``run_protocol(data=...)``, ``data_seed``, workers that load their own data, resume."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, run_protocol
from torch_dash_optim.experiments.datasets import DataSource, load_dataset
from torch_dash_optim.experiments.models import CNN1d
from torch_dash_optim.experiments.protocol import SettingsMismatchError

CONFIG = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=2, threshold=0.95)
FACTORY = functools.partial(CNN1d, 12, 2, width=3, kernels=(3,))
KWARGS = dict(config=CONFIG, methods=["warm", "dash"], progress=False)
TIMING = ("seconds", "cpu_seconds", "diagnostics_seconds")


def draw(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """A data set drawn from ``seed`` (module level: worker processes import it)."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(80, 12, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    return TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])


def _strip(records: list[dict], drop: tuple[str, ...] = TIMING) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def test_each_seed_trains_and_is_tested_on_its_own_draw() -> None:
    asked: list[int] = []

    def counting(seed: int) -> tuple[TensorDataset, TensorDataset]:
        asked.append(seed)
        return draw(seed)

    records = run_protocol(model_factory=FACTORY, data=counting, seeds=[3, 5], **KWARGS)
    assert {(r["seed"], r["data_seed"]) for r in records} == {(3, 3), (5, 5)}
    assert set(asked) == {3, 5}
    for seed in (3, 5):  # exactly what the fixed datasets of that draw give
        alone = run_protocol(*draw(seed), FACTORY, seeds=[seed], **KWARGS)
        assert [r["data_seed"] for r in alone] == [None] * len(alone)  # the old call: datasets, no data seed
        mine = [r for r in records if r["seed"] == seed]
        assert _strip(mine, (*TIMING, "data_seed")) == _strip(alone, (*TIMING, "data_seed"))


def test_a_data_seed_fixes_the_data_of_every_seed() -> None:
    records = run_protocol(model_factory=FACTORY, data=draw, data_seed=7, seeds=[0, 1], **KWARGS)
    assert {r["data_seed"] for r in records} == {7}
    fixed = run_protocol(*draw(7), FACTORY, seeds=[0, 1], **KWARGS)
    assert _strip(records, (*TIMING, "data_seed")) == _strip(fixed, (*TIMING, "data_seed"))


def test_workers_load_their_seeds_data_and_match_one_process(tmp_path: Path) -> None:
    sequential = run_protocol(model_factory=FACTORY, data=draw, seeds=[0, 1], **KWARGS)
    parallel = run_protocol(model_factory=FACTORY, data=draw, seeds=[0, 1], jobs=2, out=tmp_path, **KWARGS)
    assert _strip(parallel) == _strip(sequential)
    with pytest.raises(ValueError, match="picklable data"):
        run_protocol(model_factory=FACTORY, data=lambda s: draw(s), seeds=[0, 1], jobs=2, **KWARGS)


def test_the_data_seed_rule_is_saved_and_resume_refuses_another(tmp_path: Path) -> None:
    run_protocol(model_factory=FACTORY, data=draw, seeds=[0], out=tmp_path, **KWARGS)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["data"] == {"per_seed": True, "data_seed": None}
    with pytest.raises(SettingsMismatchError, match=r"data.data_seed: saved None, now 4"):
        run_protocol(model_factory=FACTORY, data=draw, data_seed=4, seeds=[0], out=tmp_path, resume=True, **KWARGS)
    assert len(run_protocol(model_factory=FACTORY, data=draw, seeds=[0], out=tmp_path, resume=True, **KWARGS)) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": draw, "train_set": draw(0)[0], "test_set": draw(0)[1]}, "not both"),
        ({}, "give the data"),
        ({"train_set": draw(0)[0], "test_set": draw(0)[1], "data_seed": 1}, "drop data_seed"),
        ({"data": draw, "data_seed": -1}, "data_seed=-1 must be an integer >= 0"),
        ({"data": lambda s: draw(s)[0]}, r"must give a \(train_set, test_set\) pair"),
    ],
)
def test_bad_data_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        run_protocol(model_factory=FACTORY, **kwargs, **KWARGS)


@pytest.mark.parametrize("name", ["features", "mnist1d"])
def test_every_generated_data_set_is_drawn_per_data_seed(name: str) -> None:
    a, b = load_dataset(name, train_size=50, seed=0), load_dataset(name, train_size=50, seed=1)
    again = load_dataset(name, train_size=50, seed=0)
    fixed = load_dataset(name, train_size=50, seed=1, data_seed=0)
    for split in ("train", "test"):
        first, other = getattr(a, split), getattr(b, split)
        xs = [torch.stack([d[i][0] for i in range(len(d))]) for d in (first, other)]
        assert not torch.equal(*xs)  # another seed, other data: training and test sets both
        same = getattr(again, split), getattr(fixed, split)
        for d in same:
            assert torch.equal(torch.stack([d[i][0] for i in range(len(d))]), xs[0])
    source = DataSource(name, train_size=50)
    train, test = source(1)
    assert torch.equal(train[0][0], b.train[0][0]) and len(test) == len(b.test)
