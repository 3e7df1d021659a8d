"""The mechanism analysis: DASH's factors against what each unit carries."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from torch_dash_optim.experiments import mechanism
from torch_dash_optim.experiments.config import ProtocolConfig
from torch_dash_optim.experiments.features import FeatureSpec, make_features


def test_spearman_matches_known_values_and_handles_ties() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert mechanism.spearman(x, 10 * x) == pytest.approx(1.0)
    assert mechanism.spearman(x, -x) == pytest.approx(-1.0)
    # ties get their mean rank: ranks of y are (0.5, 0.5, 2, 3)
    assert mechanism.spearman(x, torch.tensor([5.0, 5.0, 6.0, 7.0])) == pytest.approx(0.9486833, abs=1e-6)
    assert math.isnan(mechanism.spearman(torch.ones(3), x[:3]))


def test_stage_measures_split_feature_and_noise_energy() -> None:
    # two inputs, three patches, two channels; feature patches 0 and 2
    acts = torch.tensor([[[3.0, 1.0, 1.0], [0.0, 2.0, 2.0]], [[1.0, 1.0, 3.0], [2.0, 2.0, 0.0]]])
    m = mechanism.stage_measures(acts, torch.tensor([0, 2]), torch.tensor([False, True]))
    assert m["feature"].tolist() == [9.0, 0.0]
    assert m["noise"].tolist() == [1.0, 4.0]
    assert m["rare"].tolist() == [9.0, 0.0]  # the second input alone carries a rare feature
    assert m["share"].tolist() == [0.9, 0.0]


def test_trace_dash_measures_both_layers_at_every_stage(tmp_path: Path) -> None:
    data = make_features(FeatureSpec(num_train=90, num_test=30, patches=3, patch_dim=48))
    rows = mechanism.trace_dash(data, ProtocolConfig(num_chunks=3, lr=0.05, max_epochs=3), seed=1, width=4)
    assert [(r["experiment"], r["layer"], r["units"]) for r in rows] == [
        (2, "conv1", 4),
        (2, "conv2", 16),
        (3, "conv1", 4),
        (3, "conv2", 16),
    ]
    for r in rows:
        assert set(r) == set(mechanism.MECHANISM_FIELDS)
        assert 0.3 - 1e-6 <= r["factor_noise_half"] <= 1 and 0 <= r["at_floor"] <= 1
        assert 0 <= r["test_acc"] <= 1


def test_main_writes_the_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48)
    monkeypatch.setattr(mechanism, "FeatureSpec", lambda: small)
    monkeypatch.setitem(mechanism.DATASET_PRESETS, "features", {"chunks": 2, "lr": 0.05, "max_epochs": 2})
    monkeypatch.setitem(mechanism.MODEL_WIDTHS, "patchcnn", 4)
    assert mechanism.main(["--out", str(tmp_path), "--seeds", "0"]) == 0
    with open(tmp_path / "mechanism.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["layer"] for r in rows] == ["conv1", "conv2"]
    assert "ρ(factor, feature share)" in (tmp_path / "mechanism.md").read_text()
