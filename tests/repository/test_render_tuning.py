"""scripts/render/tuning.py: the renderers of the tuning run, on a small tuning folder written here."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from scripts.render import format as render_format
from scripts.render import tuning as render
from torch_dash_optim.experiments import tuning
from torch_dash_optim.experiments.config import ProtocolConfig
from torch_dash_optim.experiments.features import FeatureDraws, FeatureSpec
from torch_dash_optim.experiments.models import build_model

from ._render_folders import check_renders

SMALL = FeatureSpec(num_train=120, num_test=40, patches=2, patch_dim=48)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tuning folder (two tuning seeds, two report seeds), written by the command's own function."""
    root = tmp_path_factory.mktemp("results")
    factory = build_model("patchcnn", (SMALL.input_length,), SMALL.classes, width=4, patch_dim=SMALL.patch_dim)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tuning.tune(root / "tuning-small", FeatureDraws(SMALL), factory, ProtocolConfig(num_chunks=2, lr=0.05,
                    max_epochs=3), setup={"dataset": "features"}, tune_seeds=[10, 11], report_seeds=[0, 1],
                    val_size=30, command="python -m torch_dash_optim.experiments.tuning --out tuning-small")
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def at(tuned: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(render_format, "RESULTS", tuned)
    return tuned


@pytest.mark.parametrize("name", ["tuning_grid", "tuning_results", "tuning_verdicts", "tuning_cost", "tuning_sentence"])
def test_tuning_renderers_give_valid_markdown_and_rst(at: Path, name: str) -> None:
    check_renders(getattr(render, name), ["tuning-small"])


def test_the_grid_marks_the_default_and_the_choice_of_every_method(at: Path) -> None:
    saved = json.loads((at / "tuning-small" / "tuning.json").read_text())
    md = render.tuning_grid("md", "tuning-small").splitlines()
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| Method")]
    assert len(rows) == sum(len(v) for v in tuning.GRID.values())
    assert sum("chosen" in row for row in rows) == len(tuning.GRID)
    assert sum("default" in row for row in rows) == len(tuning.GRID)
    dash = saved["validation"]["dash"][0]
    assert any(row.startswith(f"| DASH | λ 0.05 | {100 * dash['val_acc']:.2f} | {dash['steps']:.0f} |") for row in md)


def test_results_and_verdicts_come_from_the_report_arms(at: Path) -> None:
    saved = json.loads((at / "tuning-small" / "tuning.json").read_text())
    arm = next(a for a in saved["arms"] if a["name"] == "cold@default")
    records = json.loads((at / "tuning-small" / arm["folder"] / "experiments.json").read_text())["records"]
    cold = statistics.fmean(100 * r["test_acc"] for r in records if r["method"] == "cold" and r["experiment"] == 2)
    md = render.tuning_results("md", "tuning-small")
    assert f"| Cold (random init) | no hyperparameter | {cold:.2f} | - | - | - |" in md
    verdicts = render.tuning_verdicts("md", "tuning-small")
    assert verdicts.startswith("- DASH − Cold (random init): ") and "(2 seeds" in verdicts
    assert render.tuning_verdicts("md", "tuning-small", "default").startswith("- DASH − Cold")
    with pytest.raises(ValueError, match="kind='best' must be 'tuned' or 'default'"):
        render.tuning_verdicts("md", "tuning-small", "best")
    cost = render.tuning_cost("md", "tuning-small")
    runs = 2 * sum(len(v) for v in tuning.GRID.values())
    assert cost.startswith(f"The tuning command (`python -m torch_dash_optim.experiments.tuning --out tuning-small`) "
                           f"ran {runs} tuning runs")


def test_a_missing_tuning_folder_names_its_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="torch_dash_optim.experiments.tuning --out results/tuning-features"):
        render.tuning_grid("md", "tuning-features")


def test_the_sentence_groups_the_tuned_verdicts_and_names_choices_at_an_end_of_the_grid(
    at: Path, tmp_path: Path
) -> None:
    from torch_dash_optim.experiments.stats import LABELS, compare

    saved = json.loads((at / "tuning-small" / "tuning.json").read_text())
    _result, report = render._load("tuning-small")
    comparisons = compare(tuning.tuned_records(report, "tuned"), "dash")
    text = render.tuning_sentence("md", "tuning-small")
    assert text.startswith("With every method tuned on one budget (6 configurations each, chosen on validation data "
                           "held out of tuning seeds 10, 11) and reported on 2 other seeds")
    for c in comparisons:
        assert f"{LABELS[c.other]} ({render.with_interval(c.accuracy, ' points')})" in text
    assert text.endswith(f"From `results/tuning-small`. {render._edges(saved)}".rstrip())
    chosen = {"dash": {"dash_lambd": 0.5}, "fire": {"fire_alpha": 0.5}, "uniform_global": {"uniform_factor": None},
              "sp": {"sp_shrink": 0.1, "sp_sigma": 0.05}}
    grid = {"dash": [{"dash_lambd": v} for v in (0.05, 0.3, 0.5)], "fire": [{"fire_alpha": v} for v in (0.1, 0.5, 1)],
            "uniform_global": [{"uniform_factor": None}, {"uniform_factor": 0.2}, {"uniform_factor": 0.8}],
            "sp": [{"sp_shrink": a, "sp_sigma": b} for a in (0.1, 0.6) for b in (0.01, 0.05)]}
    fake = {"chosen": chosen, "grid": grid}
    assert render._edges(fake) == (
        "Chosen at an end of the grid (a setting beyond it was not tried, and might do better): DASH (λ 0.5, the "
        "largest tried); Shrink & Perturb (shrink 0.1, the smallest tried; σ 0.05, the largest tried).")
