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
    assert "| conv1 (4 units) | 2 | 0.35 | 75 | +0.20 | +0.10 | +0.010 |" in md
    assert "| conv2 (8 units) | 2 | 0.60 | 50 | +0.10 | +0.10 | +0.020 |" in md
    summary = mechanism.mechanism_summary("md", "mech")
    assert "conv1 (4 units): at the floor 75–75 %" in summary
    assert "over the 1 of 2 seed-stage cases where it is defined" in summary and "(undefined in 1," in summary
    assert rst_problems(mechanism.mechanism_table("rst", "mech")) == []
    assert rst_problems(mechanism.mechanism_summary("rst", "mech")) == []
    with pytest.raises(FileNotFoundError, match="torch_dash_optim.experiments.mechanism"):
        mechanism.mechanism_table("md", "mechanism-features-patchcnn")


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
