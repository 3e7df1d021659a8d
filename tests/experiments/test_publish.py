"""The published-number renderers, on a small results folder written here."""

from __future__ import annotations

from pathlib import Path

import docutils.core
import pytest
import torch
from torch.utils.data import TensorDataset

from torch_dash_optim.experiments import ProtocolConfig, publish, run_protocol
from torch_dash_optim.experiments.models import MLP, CNN1d
from torch_dash_optim.experiments.provenance import add_invocation

CONFIG = ProtocolConfig(num_chunks=2, lr=0.05, batch_size=16, max_epochs=2)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 12, generator=g)
    y = (x[:, :2].sum(1) > 0).long()
    train, test = TensorDataset(x[:90], y[:90]), TensorDataset(x[90:], y[90:])
    for name, factory, methods in (
        (
            "experiments-mnist1d-cnn1d",
            lambda: CNN1d(12, 2, width=3, kernels=(3,)),
            ["cold", "warm", "sp", "fire", "dash"],
        ),
        ("experiments-mnist1d-mlp", lambda: MLP(12, 2, width=8, depth=2), ["cold", "sp", "dash"]),
    ):
        run_protocol(
            train, test, factory, config=CONFIG, methods=methods, seeds=[0, 1], out=root / name, progress=False
        )
        add_invocation(root / name, publish.FOLDERS[name], 1, 1, 1.0, 1.0)
    return root


@pytest.fixture
def at(results: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(publish, "RESULTS", results)
    return results


def _rst_problems(text: str) -> list[str]:
    """Warnings and errors docutils reports on ``text`` (an empty list for valid reST)."""
    doc = docutils.core.publish_doctree(text, settings_overrides={"report_level": 5, "halt_level": 5})
    return [node.astext() for node in doc.findall() if node.tagname == "system_message" and node["level"] >= 2]


@pytest.mark.parametrize(
    "render",
    [
        publish.results_table,
        publish.mlp_table,
        publish.factor_table,
        publish.seed_table,
        publish.results_sentence,
        publish.provenance_note,
        publish.commands,
    ],
)
def test_renderers_give_valid_markdown_and_rst(at: Path, render) -> None:
    md, rst = render("md"), render("rst")
    assert md.strip() and rst.strip()
    assert _rst_problems(rst) == []
    assert "nan" not in md and "nan" not in rst


def test_results_table_numbers_come_from_the_folder(at: Path) -> None:
    from torch_dash_optim.experiments.summary import summarize

    records = publish.load("experiments-mnist1d-cnn1d")["records"]
    row = summarize(records)[("dash", "sgd")]
    mean, std = row["last_acc"]
    md = publish.results_table("md")
    assert f"| **DASH** | {100 * mean:.2f} ± {100 * std:.2f} |" in md
    assert [line.split(" | ")[0] for line in md.splitlines()[2:7]] == [
        "| Cold (random init)",
        "| Warm",
        "| Shrink & Perturb",
        "| FIRE",
        "| **DASH**",
    ]
    assert "seeds 0, 1" in md
    rst = publish.results_table("rst")
    assert rst.startswith(".. list-table:: ") and "   * - **DASH**" in rst
    assert "\n     - -\n" not in rst  # no cell that renders as a bullet


def test_seed_table_and_sentence_agree_with_the_records(at: Path) -> None:
    from torch_dash_optim.experiments.summary import per_run

    last = {
        (m, s): v["last_acc"] for (m, _o, s), v in per_run(publish.load("experiments-mnist1d-cnn1d")["records"]).items()
    }
    md = publish.seed_table("md")
    diff = 100 * (last[("dash", 1)] - last[("cold", 1)])
    assert f"| 1 | {100 * last[('dash', 1)]:.2f} | {diff:+.2f} |" in md
    sentence = publish.results_sentence("md")
    assert "DASH reaches" in sentence and "FIRE" in sentence and "cold start" in sentence


def test_factor_table_covers_both_models(at: Path) -> None:
    md = publish.factor_table("md")
    assert "| 1-D CNN | Conv kernels |" in md and "| MLP | Linear weights |" in md
    assert "| MLP | Conv kernels |" not in md


def test_a_missing_folder_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="dash-warmstart --out results/experiments-mnist1d-cnn1d"):
        publish.results_table("md")


def test_figures_are_drawn(at: Path, tmp_path: Path) -> None:
    paths = publish.draw_figures(tmp_path)
    assert [p.name for p in paths] == ["warmstart-results.png", "warmstart-factors.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
