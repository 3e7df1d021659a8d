"""The protocol end to end on a tiny configuration: records, method semantics, files, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import METHODS, ProtocolConfig, run_protocol
from torch_dash_optim.experiments import protocol as protocol_module
from torch_dash_optim.experiments.store import RECORD_FIELDS

CONFIG = ProtocolConfig(num_chunks=3, lr=0.05, batch_size=16, max_epochs=4, threshold=0.95)


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(120, generator=g) > 0).long()
    return TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])


def _factory() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds", "diagnostics_seconds")} for r in records]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("full")
    train, test = _data()
    records = run_protocol(
        train,
        test,
        _factory,
        config=CONFIG,
        methods=METHODS,
        optimizers=["sgd", "sam"],
        seeds=[0, 1],
        out=out,
        progress=False,
    )
    return out, records


def test_every_method_optimizer_seed_and_experiment_is_recorded(full_run: tuple[Path, list[dict]]) -> None:
    _, records = full_run
    assert len(records) == len(METHODS) * 2 * 2 * 3
    keys = {(r["method"], r["optimizer"], r["seed"], r["experiment"]) for r in records}
    assert len(keys) == len(records)
    for r in records:
        assert set(r) == set(RECORD_FIELDS) | {"dash_factors"}
        assert r["num_train"] == 30 * r["experiment"]
        assert 1 <= r["epochs"] <= CONFIG.max_epochs
        assert r["steps"] == r["epochs"] * -(-r["num_train"] // CONFIG.batch_size)
        assert 0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["train_acc"] <= 1.0
        assert (r["epochs"] == CONFIG.max_epochs) or r["train_acc"] >= CONFIG.threshold
        has_factor = r["method"] == "dash" and r["experiment"] > 1
        controls = ("uniform_global", "uniform_matched", "shuffled")  # DASH's pass, factors changed
        assert (r["dash_mean_factor"] is not None) == (has_factor or (r["method"] in controls and r["experiment"] > 1))
        assert (r["dash_factors"] is not None) == has_factor
        if has_factor:
            assert CONFIG.dash_lambd <= r["dash_mean_factor"] <= 1.0
            assert set(r["dash_factors"]) == {"linear", "bias"}
            units = {"linear": 16 + 2, "bias": 2}  # rows of the two Linear weights; one unit per bias
            for kind, stats in r["dash_factors"].items():
                assert stats["units"] == units[kind] == sum(stats["hist"])
                assert CONFIG.dash_lambd - 1e-6 <= stats["q10"] <= stats["q50"] <= stats["q90"] <= 1.0
            total = sum(s["units"] * s["at_floor"] for s in r["dash_factors"].values()) / 20
            assert total == pytest.approx(r["dash_at_floor"], abs=1e-5)  # stats are rounded to 6 digits


def test_methods_share_the_first_experiment_and_differ_after(full_run: tuple[Path, list[dict]]) -> None:
    _, records = full_run

    def get(method: str, exp: int, opt: str = "sgd", seed: int = 0) -> dict:
        return next(
            r
            for r in records
            if (r["method"], r["experiment"], r["optimizer"], r["seed"]) == (method, exp, opt, seed)
        )

    # Same initial model, chunks and batch order: experiment 1 is identical except for l2_init's penalty.
    first = _strip([get(m, 1) for m in METHODS if m != "l2_init"])
    assert all(r == {**first[0], "method": r["method"]} for r in first)
    later = {(get(m, 3)["test_loss"], get(m, 3)["train_loss"]) for m in METHODS}
    assert len(later) == len(METHODS)  # each method acted differently when data arrived
    assert get("warm", 1, seed=1)["test_loss"] != get("warm", 1, seed=0)["test_loss"]
    assert get("warm", 1, opt="sam")["train_loss"] != get("warm", 1)["train_loss"]


def test_csv_and_json_schema(full_run: tuple[Path, list[dict]]) -> None:
    out, records = full_run
    with open(out / "experiments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(RECORD_FIELDS)
    assert len(rows) == len(records)
    assert float(rows[0]["test_acc"]) == pytest.approx(records[0]["test_acc"])
    data = json.loads((out / "experiments.json").read_text())
    assert set(data) == {"protocol", "setup", "data", "harness", "records"}
    assert data["protocol"] == CONFIG.to_dict()
    assert data["data"] == {"per_seed": False, "data_seed": None}  # datasets given as such: one for every seed
    assert data["harness"]["batches"].startswith("balanced")
    assert _strip(data["records"]) == _strip(records)
    with open(out / "dash-factors.csv", newline="") as f:
        factors = list(csv.DictReader(f))
    assert len(factors) == 2 * 2 * 2 * 2  # optimizers x seeds x experiments 2-3 x kinds
    types = {
        "method": str,
        "optimizer": str,
        "seed": int,
        "experiment": int,
        "num_train": int,
        "epochs": int,
        "steps": int,
        "train_acc": float,
        "test_acc": float,
        "diverged": bool,
        "dormant": float,
        "feature_rank": int,
        "seconds": float,
        "cpu_seconds": float,
        "diagnostics_seconds": float,
    }
    for r in data["records"]:
        for key, kind in types.items():
            assert isinstance(r[key], kind), (key, r[key])
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"]["num_chunks"] == 3
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == len(METHODS) * 2 * 2 and all(p.endswith(".json") for p in runs)  # no checkpoint left


def test_a_crash_mid_run_loses_no_finished_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = _data()
    kwargs = dict(
        config=CONFIG, methods=["warm", "dash", "l2_init"], optimizers=["sam"], seeds=[0], progress=False
    )
    reference = run_protocol(train, test, _factory, **kwargs)

    calls = {"n": 0}
    real_evaluate = protocol_module.evaluate

    def crashing(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 5:  # in dash's second experiment, after its DASH shrink and training
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(protocol_module, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(train, test, _factory, out=tmp_path, **kwargs)
    done = json.loads((tmp_path / "runs" / "dash_sam_seed0.json").read_text())
    assert [r["experiment"] for r in done["records"]] == [1] and not done["complete"]
    assert (tmp_path / "runs" / "dash_sam_seed0.pt").exists()
    assert json.loads((tmp_path / "runs" / "warm_sam_seed0.json").read_text())["complete"]

    monkeypatch.setattr(protocol_module, "evaluate", real_evaluate)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        run_protocol(train, test, _factory, out=tmp_path, **kwargs)
    resumed = run_protocol(train, test, _factory, out=tmp_path, resume=True, **kwargs)
    assert _strip(resumed) == _strip(reference)
    assert not list((tmp_path / "runs").glob("*.pt"))


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    train, test = _data()
    run_protocol(train, test, _factory, config=CONFIG, methods=["warm"], out=tmp_path, progress=False)
    other = ProtocolConfig(num_chunks=3, lr=0.1, batch_size=16, max_epochs=4, threshold=0.95)
    with pytest.raises(ValueError, match=r"protocol.lr: saved 0.05, now 0.1"):
        run_protocol(
            train, test, _factory, config=other, methods=["warm"], out=tmp_path, resume=True, progress=False
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["warm", "bogus"]}, "unknown methods"),
        ({"optimizers": ["adam"]}, "unknown optimizers"),
        ({"seeds": [-1]}, "seeds"),
        ({"methods": ["warm", "warm"]}, "lists one twice"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    train, test = _data()
    with pytest.raises(ValueError, match=message):
        run_protocol(train, test, _factory, config=CONFIG, progress=False, **kwargs)


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="threshold=1.5"):
        ProtocolConfig(threshold=1.5)
    with pytest.raises(ValueError, match="lr=0"):
        ProtocolConfig(lr=0)
    with pytest.raises(ValueError, match="unknown protocol settings"):
        ProtocolConfig.from_dict({"learning_rate": 0.1})


def test_unreadable_run_files_are_named_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch_dash_optim.experiments.store import CorruptRunError

    train, test = _data()
    kwargs = dict(config=CONFIG, methods=["warm"], seeds=[0], progress=False, out=tmp_path)
    calls = {"n": 0}
    real_evaluate = protocol_module.evaluate

    def crashing(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # after the first experiment was saved with its checkpoint
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(protocol_module, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(train, test, _factory, **kwargs)
    monkeypatch.setattr(protocol_module, "evaluate", real_evaluate)
    ckpt = tmp_path / "runs" / "warm_sgd_seed0.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CorruptRunError, match=f"{ckpt} cannot be read .*delete it and warm_sgd_seed0.json"):
        run_protocol(train, test, _factory, resume=True, **kwargs)
    (tmp_path / "config.json").write_text('{"protocol": ')
    with pytest.raises(CorruptRunError, match="config.json cannot be read"):
        run_protocol(train, test, _factory, resume=True, **kwargs)


def test_resume_with_fewer_methods_keeps_the_others_in_the_tables(tmp_path: Path) -> None:
    train, test = _data()
    kwargs = dict(config=CONFIG, seeds=[0], progress=False, out=tmp_path)
    first = run_protocol(train, test, _factory, methods=["warm", "sp"], **kwargs)
    again = run_protocol(train, test, _factory, methods=["sp"], resume=True, **kwargs)
    assert again == [r for r in first if r["method"] == "sp"]  # returns what was asked for
    saved = json.loads((tmp_path / "experiments.json").read_text())["records"]
    key = lambda r: (r["method"], r["experiment"])  # noqa: E731
    assert sorted(map(key, saved)) == sorted(map(key, first))
