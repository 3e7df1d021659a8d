"""The tuning command: one budget per method, choices on held-out data, a report on other seeds."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from torch_dash_optim.experiments import tuning
from torch_dash_optim.experiments.config import ProtocolConfig
from torch_dash_optim.experiments.features import FeatureDraws, FeatureSpec
from torch_dash_optim.experiments.methods import BUILTIN
from torch_dash_optim.experiments.models import build_model


def test_every_tuned_method_gets_the_same_number_of_configurations() -> None:
    sizes = {method: len(entries) for method, entries in tuning.GRID.items()}
    assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 5, sizes
    assert set(tuning.GRID) | set(tuning.UNTUNED) == {"cold", "warm", "sp", "l2_init", "fire", "uniform_global",
                                                      "uniform_matched", "shuffled", "dash"}
    lambdas = [e["dash_lambd"] for e in tuning.GRID["dash"]]
    assert min(lambdas) == 0.05 and max(lambdas) == 0.5 and len(set(lambdas)) == len(lambdas)
    # the controls follow DASH's λ
    assert tuning.GRID["shuffled"] == tuning.GRID["uniform_matched"] == tuning.GRID["dash"]
    # S&P: shrink x sigma
    sp = tuning.GRID["sp"]
    assert len({e["sp_shrink"] for e in sp}) * len({e["sp_sigma"] for e in sp}) == len(sp)
    # every configuration is a valid protocol config, and the default of each method is among its configurations
    base = tuning.base_config()
    fields = {f.name for f in dataclasses.fields(ProtocolConfig)}
    for k in range(len(tuning.GRID["dash"])):
        config = tuning.grid_config(base, k)
        for method, entries in tuning.GRID.items():
            assert set(entries[k]) <= fields
            assert all(getattr(config, f) == v for f, v in entries[k].items()), (method, k)
    for method, entries in tuning.GRID.items():
        assert {f: getattr(base, f) for f in entries[0]} in entries, method


def test_held_out_splits_the_training_pool_and_never_reads_the_test_set() -> None:
    class Untouchable(Dataset):
        def __len__(self) -> int:
            raise AssertionError("the test set was read")

        def __getitem__(self, i: int) -> None:
            raise AssertionError("the test set was read")

    def source(seed: int):
        return TensorDataset(torch.arange(100.0) + 1000 * seed), Untouchable()

    held = tuning.HeldOut(source, 20)
    fit, val = held(3)
    assert len(fit) == 80 and len(val) == 20
    assert sorted(fit.indices + val.indices) == list(range(100))
    again, other = held(3), held(4)
    assert again[1].indices == val.indices and other[1].indices != val.indices
    with pytest.raises(ValueError, match="val_size=100 must be between 1 and 99"):
        tuning.HeldOut(source, 100)(0)


def _rec(method: str, seed: int, acc: float, steps: int = 10, epochs: int = 5) -> dict:
    return {"method": method, "seed": seed, "experiment": 2, "test_acc": acc, "steps": steps, "epochs": epochs,
            "train_acc": 1.0 if epochs < 300 else 0.95}


def test_choose_takes_the_best_mean_validation_accuracy_then_fewer_steps_then_the_default() -> None:
    base = tuning.base_config()
    n = len(tuning.GRID["dash"])
    by_config = [[_rec("dash", s, 0.5) for s in (0, 1)] for _ in range(n)]
    by_config[1] = [_rec("dash", 0, 0.9), _rec("dash", 1, 0.5)]  # mean 0.7: the best
    by_config[4] = [_rec("dash", 0, 0.6), _rec("dash", 1, 0.8)]  # mean 0.7 too, but more steps
    by_config[4] = [{**r, "steps": 20} for r in by_config[4]]
    chosen, table = tuning.choose(by_config, base)
    assert chosen == {"dash": tuning.GRID["dash"][1]}
    assert [round(row["val_acc"], 6) for row in table["dash"]] == [0.5, 0.7, 0.5, 0.5, 0.7, 0.5]
    assert [row["default"] for row in table["dash"]] == [e == {"dash_lambd": base.dash_lambd}
                                                         for e in tuning.GRID["dash"]]
    flat = [[_rec("dash", s, 0.5) for s in (0, 1)] for _ in range(n)]  # all tied: the default wins
    assert tuning.choose(flat, base)[0] == {"dash": {"dash_lambd": base.dash_lambd}}
    # a configuration whose runs stopped at the epoch cap does not compete, however high its accuracy
    capped = [list(runs) for runs in by_config]
    capped[5] = [_rec("dash", 0, 0.99, 9000, epochs=base.max_epochs), _rec("dash", 1, 0.99)]
    chosen, table = tuning.choose(capped, base)
    assert chosen == {"dash": tuning.GRID["dash"][1]} and [row["capped"] for row in table["dash"]] == [0] * 5 + [1]
    every = [[_rec("dash", s, 0.5 + k / 100, epochs=base.max_epochs) for s in (0, 1)] for k in range(n)]
    assert tuning.choose(every, base)[0] == {"dash": tuning.GRID["dash"][-1]}  # all capped: all compete


def test_the_report_runs_defaults_choices_and_the_controls_at_dashs_lambda() -> None:
    base = tuning.base_config()  # λ = 0.3
    chosen = {"dash": {"dash_lambd": 0.1}, "shuffled": {"dash_lambd": 0.3}, "uniform_matched": {"dash_lambd": 0.5},
              "sp": {"sp_shrink": 0.3, "sp_sigma": 0.01}}
    arms = tuning.report_arms(chosen, base)
    names = [a.name for a in arms]
    assert {f"{m}@default" for m in [*tuning.UNTUNED, *tuning.GRID]} <= set(names)
    assert "dash@tuned" in names and "uniform_matched@tuned" in names
    assert "shuffled@tuned" not in names and "sp@tuned" not in names  # they chose their default
    # both controls chose another λ than DASH's 0.1: each also runs at DASH's λ
    at_dash = {a.method: a.settings for a in arms if a.kind == "dash-lambda"}
    assert at_dash == {"uniform_matched": {"dash_lambd": 0.1}, "shuffled": {"dash_lambd": 0.1}}
    groups = tuning._groups(arms, base)
    for config, members in groups:
        assert len({a.method for a in members}) == len(members)  # one arm per method and call
        for arm in members:
            assert all(getattr(config, f) == v for f, v in arm.settings.items()), arm
    assert sorted(a.name for _c, m in groups for a in m) == sorted(names)
    # a control already run at DASH's λ (its choice, or its default when DASH keeps the default) runs no extra arm
    same = tuning.report_arms({"dash": {"dash_lambd": 0.1}, "shuffled": {"dash_lambd": 0.1}}, base)
    assert [a.name for a in same if a.method == "shuffled"] == ["shuffled@default", "shuffled@tuned"]
    kept = tuning.report_arms({"dash": {"dash_lambd": 0.3}, "shuffled": {"dash_lambd": 0.5}}, base)
    assert not [a for a in kept if a.kind == "dash-lambda"] and "dash@tuned" not in [a.name for a in kept]


def test_tuned_records_take_the_choice_or_the_default() -> None:
    report = {"dash@default": [_rec("dash", 0, 0.5)], "dash@tuned": [_rec("dash", 0, 0.6)],
              "sp@default": [_rec("sp", 0, 0.4)], "cold@default": [_rec("cold", 0, 0.3)]}
    tuned = tuning.tuned_records(report, "tuned")
    assert [(r["method"], r["test_acc"]) for r in tuned] == [("cold", 0.3), ("sp", 0.4), ("dash", 0.6)]
    assert [r["test_acc"] for r in tuning.tuned_records(report, "default")] == [0.3, 0.4, 0.5]


SMALL = FeatureSpec(num_train=120, num_test=40, patches=2, patch_dim=48)
CONFIG = ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=3)


def _tune(out: Path, **kw) -> dict:
    factory = build_model("patchcnn", (SMALL.input_length,), SMALL.classes, width=4, patch_dim=SMALL.patch_dim)
    args = {"setup": {"dataset": "features"}, "tune_seeds": [10, 11], "report_seeds": [0, 1], "val_size": 30} | kw
    return tuning.tune(out, FeatureDraws(SMALL), factory, CONFIG, **args)


def test_tune_chooses_on_validation_and_reports_on_other_seeds(tmp_path: Path) -> None:
    out = tmp_path / "tuning"
    result = _tune(out)
    saved = json.loads((out / "tuning.json").read_text())
    assert saved["chosen"] == result["chosen"] and set(result["chosen"]) == set(tuning.GRID)
    for method, rows in result["validation"].items():
        best = max(row["val_acc"] for row in rows)
        chosen = next(row for row in rows if row["settings"] == result["chosen"][method])
        assert chosen["val_acc"] == best and chosen["seeds"] == [10, 11]
    # tuning: the training pool minus the validation set, tested on the validation set (never the test set)
    for k in range(len(tuning.GRID["dash"])):
        records = json.loads((out / "tune" / f"config-{k}" / "experiments.json").read_text())["records"]
        assert {r["seed"] for r in records} == {10, 11} and {r["method"] for r in records} == set(tuning.GRID)
        assert max(r["num_train"] for r in records) == SMALL.num_train - 30
    # report: the report seeds, the whole pool, every arm
    for arm in result["arms"]:
        records = json.loads((out / arm["folder"] / "experiments.json").read_text())["records"]
        mine = [r for r in records if r["method"] == arm["method"]]
        assert {r["seed"] for r in mine} == {0, 1} and max(r["num_train"] for r in mine) == SMALL.num_train
    assert "DASH against each method, every one tuned" in (out / "tuning.md").read_text()
    assert json.loads((out / "provenance.json").read_text())["invocations"][-1]["cpu_seconds"] > 0
    # resume: nothing runs again, the same result
    again = _tune(out, resume=True)
    assert again["chosen"] == result["chosen"] and again["arms"] == result["arms"]


def test_tune_refuses_shared_seeds_and_a_used_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tuning seeds \[1\] are also report seeds"):
        _tune(tmp_path / "a", tune_seeds=[1, 2], report_seeds=[0, 1])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tuning.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds a tuning run; pass --resume"):
        _tune(tmp_path / "b")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tune-seeds", "a"], "--tune-seeds and --report-seeds take seeds such as"),
        (["--jobs", "0"], "--jobs 0 must be >= 1"),
        (["--tune-seeds", "0-2", "--report-seeds", "2,3"], "tuning seeds [2] are also report seeds"),
    ],
)
def test_main_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list, message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        tuning.main(["--out", str(tmp_path / "x"), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_each_tuned_setting_reaches_its_method() -> None:
    """A configuration changes what its method does (so tuning it is not a no-op)."""
    from torch_dash_optim.experiments.methods import Arrival

    torch.manual_seed(0)
    model = build_model("patchcnn", (SMALL.input_length,), SMALL.classes, width=4, patch_dim=SMALL.patch_dim)()
    x, y = torch.randn(16, SMALL.input_length), torch.randint(0, SMALL.classes, (16,))
    for method, field, values in (("fire", "fire_alpha", (0.5, 1.0)), ("uniform_global", "uniform_factor", (0.3, 0.8)),
                                  ("sp", "sp_shrink", (0.1, 0.6)), ("dash", "dash_lambd", (0.05, 0.5))):
        weights = []
        for value in values:
            config = dataclasses.replace(CONFIG, **{field: value})
            twin = type(model)(SMALL.input_length, SMALL.classes, patch_dim=SMALL.patch_dim, width=4)
            twin.load_state_dict(model.state_dict())
            learner = BUILTIN[method].new_learner(twin, "sgd", config)
            torch.manual_seed(1)
            arrival = Arrival("sgd", config, functools.partial(copy.deepcopy, twin), lambda: [(x, y)],
                              torch.device("cpu"))
            BUILTIN[method].on_new_data(learner, arrival)
            weights.append(twin.conv1.weight.detach().clone())
        assert not torch.equal(*weights), method
