"""The renderers of the mechanism measurement, on a small ``mechanism.csv`` written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.render import format as render_format
from scripts.render import mechanism

from ._render_folders import CNN_DIR, rst_problems


def test_mechanism_renderers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    folder = tmp_path / "mech"
    folder.mkdir()
    head = "seed,experiment,layer,units,mean_factor,at_floor,rho_feature_share,rho_rare_energy,factor_gap,test_acc\n"
    rows = [
        "0,2,conv1,4,0.3,1.0,nan,nan,0.0,0.5",
        "1,2,conv1,4,0.4,0.5,0.2,0.1,0.02,0.6",
        "0,2,conv2,8,0.5,0.25,-0.1,0.0,0.01,0.5",
        "1,2,conv2,8,0.7,0.75,0.3,0.2,0.03,0.6",
    ]
    (folder / "mechanism.csv").write_text(head + "\n".join(rows) + "\n")
    md = mechanism.mechanism_table("md", "mech")
    assert "| conv1 (4 units) | 2 | 0.35 | 75 | not measured | +0.20 | +0.10 | +0.010 |" in md  # an older file
    assert "| conv2 (8 units) | 2 | 0.60 | 50 | not measured | +0.10 | +0.10 | +0.020 |" in md
    summary = mechanism.mechanism_summary("md", "mech")
    assert "conv1 (4 units): at the floor 75–75 %" in summary
    assert "over the 1 of 2 seed-stage cases where it is defined" in summary and "(undefined in 1," in summary
    assert rst_problems(mechanism.mechanism_table("rst", "mech")) == []
    assert rst_problems(mechanism.mechanism_summary("rst", "mech")) == []
    with pytest.raises(FileNotFoundError, match="torch_dash_optim.experiments.mechanism"):
        mechanism.mechanism_table("md", "mechanism-noise-sweep", "1.0")


def test_mechanism_replay_counts_the_equal_pairs(at: Path) -> None:
    dash = {(r["seed"], r["experiment"]): r["test_acc"] for r in render_format.load(CNN_DIR)["records"]
            if r["method"] == "dash" and r["optimizer"] == "sgd"}
    (at / "mech").mkdir(exist_ok=True)
    lines = ["seed,experiment,layer,test_acc"]
    for i, ((seed, experiment), acc) in enumerate(sorted(dash.items())):
        lines.append(f"{seed},{experiment},conv1,{acc if i else acc + 0.01!r}")  # the first pair differs
    (at / "mech" / "mechanism.csv").write_text("\n".join(lines) + "\n")
    text = mechanism.mechanism_replay("md", "mech", CNN_DIR)
    assert f"at {len(dash) - 1} of the {len(dash)} (seed, stage) pairs of `results/mech/mechanism.csv`" in text
    assert mechanism.mechanism_replay("rst", "mech", CNN_DIR).startswith("The replay's DASH test accuracy")
    with pytest.raises(ValueError, match="fmt='html' must be 'md' or 'rst'"):
        mechanism.mechanism_replay("html", "mech", CNN_DIR)


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small noise sweep (two levels, two seeds), written by the command's own function."""
    import torch

    from torch_dash_optim.experiments import mechanism as experiment
    from torch_dash_optim.experiments.config import ProtocolConfig
    from torch_dash_optim.experiments.features import FeatureSpec

    root = tmp_path_factory.mktemp("results")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiment.sweep(root / "sweep", [0.5, 2.0], [0, 1], methods=["warm", "uniform_matched", "shuffled"],
                         config=ProtocolConfig(num_chunks=2, lr=0.05, max_epochs=3),
                         spec=FeatureSpec(num_train=60, num_test=20, patches=2, patch_dim=48), width=4)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.parametrize("name", ["sweep_table", "sweep_accuracy", "sweep_sentence"])
def test_sweep_renderers_give_valid_markdown_and_rst(
    sweep_results: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from ._render_folders import check_renders

    monkeypatch.setattr(render_format, "RESULTS", sweep_results)
    check_renders(getattr(mechanism, name), ["sweep"])


def test_sweep_tables_have_a_row_per_level_with_the_measured_means(
    sweep_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import statistics

    monkeypatch.setattr(render_format, "RESULTS", sweep_results)
    md = mechanism.sweep_table("md", "sweep")
    rows = md.splitlines()
    assert rows[0].startswith("| Noise std | Noise / feature norm | conv1 at floor (%) | conv1 median \\|cos\\| |")
    assert [r.split(" | ")[0] for r in rows[2:4]] == ["| 0.5", "| 2"]
    with open(sweep_results / "sweep" / "mechanism.csv") as fh:
        conv1 = [r for r in csv.DictReader(fh) if r["layer"] == "conv1" and float(r["noise_std"]) == 2.0]
    share = statistics.fmean(float(r["grad_feature_share"]) for r in conv1)
    assert f" | {100 * share:.1f} | " in rows[3]
    assert "(a random direction: 83.3%)" in md  # 40 features in patches of 48 values
    accuracy = mechanism.sweep_accuracy("md", "sweep").splitlines()
    assert accuracy[0] == (
        "| Noise std | Warm (%) | DASH (%) | Shuffled DASH factors (%) | Uniform shrink (per tensor) (%) "
        "| DASH − Shuffled DASH factors (points) | DASH − Uniform shrink (per tensor) (points) |"
    )
    assert len(accuracy) == 2 + 2 + 2  # two levels and the note
    with pytest.raises(ValueError, match="holds noise levels 0.5, 2; name one"):
        mechanism.mechanism_table("md", "sweep")
    assert "at noise std 2" in mechanism.mechanism_table("md", "sweep", "2.0")
    with pytest.raises(ValueError, match="holds no noise level 1.0"):
        mechanism.mechanism_summary("md", "sweep", "1.0")


def _fake_sweep(root: Path, points: dict[float, tuple[list[float], list[float]]]) -> None:
    """A sweep folder whose DASH leads the shuffled and the matched control by the given points, seed by seed."""
    import json

    folder = root / "fake"
    folder.mkdir()
    features = {"num_train": 60, "num_test": 20, "classes": 10, "rare": 3, "rare_freq": 0.1, "patches": 2,
                "patch_dim": 48, "feature_strength": 1.0}
    protocol = {"num_chunks": 2, "max_epochs": 100, "threshold": 0.999, "dash_lambd": 0.3}
    json.dump({"noise_levels": list(points), "seeds": [0, 1, 2], "protocol": protocol, "features": features,
               "methods": ["dash", "shuffled", "uniform_matched"]}, (folder / "sweep.json").open("w"))
    head = "noise_std,seed,experiment,layer,grad_feature_share,best_feature_cos,median_abs_cos,at_floor," \
           "rho_feature_share\n"
    lines = [f"{level},{s},2,conv1,0.02,0.14,0.1,0.9,0.0" for level in points for s in range(3)]
    (folder / "mechanism.csv").write_text(head + "\n".join(lines) + "\n")
    for level, (shuffled, matched) in points.items():
        records = []
        for seed, (a, b) in enumerate(zip(shuffled, matched, strict=True)):
            for method, acc in (("dash", 0.8), ("shuffled", 0.8 - a / 100), ("uniform_matched", 0.8 - b / 100)):
                records.append({"method": method, "optimizer": "sgd", "seed": seed, "experiment": 2, "test_acc": acc,
                                "steps": 50, "epochs": 3, "train_acc": 1.0})
        sub = folder / f"noise-{level:.1f}"
        sub.mkdir()
        json.dump({"protocol": protocol, "setup": {}, "records": records}, (sub / "experiments.json").open("w"))


def test_the_sweep_credits_the_direction_only_where_dash_beats_both_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    _fake_sweep(tmp_path, {0.5: ([2.0, 2.2, 1.8], [1.0, 1.1, 0.9]), 1.0: ([2.0, 2.2, 1.8], [1.0, -1.0, 0.5])})
    lines = mechanism.sweep_sentence("md", "fake").splitlines()
    assert lines[0].startswith(
        "- At noise std 0.5 (a noise patch about 1.4 times a feature's norm), 2.0% of the energy"
    )  # 8 noise dimensions
    assert "reach a cosine of about 0.14, below the floor λ = 0.3" in lines[0]
    assert lines[0].endswith("(3 seeds): **DASH's direction is credited**: DASH beats both controls.")
    assert lines[1].endswith("(3 seeds): DASH's direction is not credited.")
    assert "DASH − Uniform shrink (per tensor) +0.17 points [" in lines[1]
