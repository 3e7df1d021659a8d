"""The mechanism analysis: DASH's factors against what each unit carries."""

from __future__ import annotations

import csv
import json
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


SMALL = FeatureSpec(num_train=90, num_test=30, patches=3, patch_dim=48)
CONFIG = ProtocolConfig(num_chunks=3, lr=0.05, max_epochs=3)


def test_trace_dash_measures_both_layers_at_every_stage() -> None:
    data = make_features(SMALL)
    rows = mechanism.trace_dash(data, CONFIG, seed=1, width=4)
    assert [(r["experiment"], r["layer"], r["units"]) for r in rows] == [
        (2, "conv1", 4),
        (2, "conv2", 16),
        (3, "conv1", 4),
        (3, "conv2", 16),
    ]
    for r in rows:
        assert set(r) == set(mechanism.MECHANISM_FIELDS)
        assert 0.3 - 1e-6 <= r["factor_noise_half"] <= 1 and 0 <= r["at_floor"] <= 1
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["median_abs_cos"] <= 1
        if r["layer"] == "conv1":
            assert 0 <= r["grad_feature_share"] <= 1 and 0 <= r["weight_feature_share"] <= 1
            assert 0 <= r["best_feature_cos"] <= 1
        else:
            assert r["grad_feature_share"] is None and r["best_feature_cos"] is None


def test_the_measured_dash_is_dash_record_for_record() -> None:
    from torch_dash_optim.experiments import run_protocol
    from torch_dash_optim.experiments.models import build_model

    data = make_features(SMALL)
    factory = build_model("patchcnn", (SMALL.input_length,), SMALL.classes, width=4, patch_dim=SMALL.patch_dim)
    plain = run_protocol(data.train, data.test, factory, config=CONFIG, methods=["dash"], seeds=[2], progress=False)
    traced = mechanism.TracedDash(data, SMALL.noise_std, 2)
    measured = run_protocol(data.train, data.test, factory, config=CONFIG, methods=[traced], seeds=[2],
                            progress=False)
    assert len(traced.rows) == 2 * (CONFIG.num_chunks - 1)
    for a, b in zip(plain, measured, strict=True):
        for key in ("test_acc", "test_loss", "train_loss", "steps", "dash_mean_factor", "dash_factors"):
            assert a[key] == b[key], key


def test_what_each_input_carries_is_read_off_the_input() -> None:
    data = make_features(FeatureSpec(num_train=200, num_test=10, noise_std=2.0, seed=3))
    patch, rare = mechanism._carried(data.train.tensors[0], data)
    assert torch.equal(patch, data.train_patch)
    assert torch.equal(rare, data.is_rare(data.train_feature)) and bool(rare.any())


def test_subspace_measures_of_aligned_and_random_directions() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=g, dtype=torch.float64))[0].T[:8]  # 8 of 32 dims
    inside = torch.randn(6, 8, generator=g, dtype=torch.float64) @ basis
    m = mechanism.subspace_measures(inside, 2 * inside, basis)
    assert m["grad_feature_share"] == pytest.approx(1.0) and m["weight_feature_share"] == pytest.approx(1.0)
    assert m["best_feature_cos"] == pytest.approx(1.0) and m["median_abs_cos"] == pytest.approx(1.0)
    noise = torch.randn(4000, 32, generator=g, dtype=torch.float64)
    m = mechanism.subspace_measures(noise, noise.roll(1, 0), basis)
    assert m["grad_feature_share"] == pytest.approx(8 / 32, abs=0.01)  # a random direction: k / dim
    assert m["best_feature_cos"] == pytest.approx((8 / 32) ** 0.5, abs=0.03)
    assert m["median_abs_cos"] < 0.2


def test_sweep_writes_every_level_and_resumes(tmp_path: Path) -> None:
    spec = FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48)
    config = ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=2)
    out = tmp_path / "sweep"
    rows = mechanism.sweep(out, [0.5, 2.0], [0, 1], methods=["shuffled"], config=config, spec=spec, width=4)
    assert sorted({(r["noise_std"], r["seed"]) for r in rows}) == [(0.5, 0), (0.5, 1), (2.0, 0), (2.0, 1)]
    with open(out / "mechanism.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4 * 2  # one stage, two layers
    for level in ("noise-0.5", "noise-2.0"):
        saved = json.loads((out / level / "experiments.json").read_text())
        assert {r["method"] for r in saved["records"]} == {"dash", "shuffled"}
        assert saved["setup"]["features"]["noise_std"] == float(level.split("-")[1])
    low, high = (json.loads((out / f"noise-{v}" / "experiments.json").read_text())["records"] for v in ("0.5", "2.0"))
    assert [r["test_loss"] for r in low] != [r["test_loss"] for r in high]  # each level draws its own data
    assert "Noise 0.5, DASH against each method" in (out / "mechanism.md").read_text()
    assert json.loads((out / "provenance.json").read_text())["invocations"][0]["command"].startswith("python -m")
    units, table = (out / "units.jsonl").read_text(), (out / "mechanism.csv").read_text()
    with pytest.raises(FileExistsError, match="already holds a sweep; pass --resume"):
        mechanism.sweep(out, [0.5, 2.0], [0, 1], methods=["shuffled"], config=config, spec=spec, width=4)
    with pytest.raises(ValueError, match="cannot resume .* other settings"):
        mechanism.sweep(out, [0.5], [0, 1], methods=["shuffled"], config=config, spec=spec, width=4, resume=True)
    again = mechanism.sweep(out, [0.5, 2.0], [0, 1], methods=["shuffled"], config=config, spec=spec, width=4,
                            resume=True)
    assert len(again) == len(rows) and (out / "units.jsonl").read_text() == units  # nothing ran again
    assert (out / "mechanism.csv").read_text() == table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--noise", "0.5,x"], "--noise takes comma-separated numbers such as 0.5,1.0 and --seeds seeds such as"),
        (["--seeds", "0-x"], "--noise takes comma-separated numbers"),
        (["--methods", "dash"], "--methods: unknown or DASH itself: dash"),
        (["--noise", "0.5,0.5"], "must be distinct numbers >= 0"),
    ],
)
def test_main_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list, message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        mechanism.main(["--out", str(tmp_path / "x"), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_main_writes_the_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48)
    monkeypatch.setattr(mechanism, "FeatureSpec", lambda **kw: FeatureSpec(**{**small.__dict__, **kw}))
    monkeypatch.setattr(mechanism, "_default_config", lambda: ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=2))
    monkeypatch.setitem(mechanism.MODEL_WIDTHS, "patchcnn", 4)
    assert mechanism.main(["--out", str(tmp_path), "--seeds", "0", "--methods", "warm"]) == 0
    with open(tmp_path / "mechanism.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["layer"] for r in rows] == ["conv1", "conv2"] and rows[0]["noise_std"] == "1.0"
    assert "ρ(factor, feature share)" in (tmp_path / "mechanism.md").read_text()
