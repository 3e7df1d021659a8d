"""The renderers of the ``dash-warmstart`` results, on small results folders written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _publish_folders import CNN_DIR, MLP_DIR, check_renders

from torch_dash_optim.experiments import publish
from torch_dash_optim.experiments.provenance import add_invocation


@pytest.mark.parametrize(
    ("render", "folders"),
    [
        (publish.table, [CNN_DIR]),
        (publish.table, [MLP_DIR]),
        (publish.factor_table, [CNN_DIR, MLP_DIR]),
        (publish.seed_table, [CNN_DIR]),
        (publish.results_sentence, [CNN_DIR]),
        (publish.verdicts, [CNN_DIR]),
        (publish.builds, [CNN_DIR, CNN_DIR]),
        (publish.provenance_note, []),
        (publish.commands, []),
        (publish.cost, [CNN_DIR, MLP_DIR]),
        (publish.same_records, [CNN_DIR, CNN_DIR]),
        (publish.verdicts_differ, [CNN_DIR, CNN_DIR]),
    ],
)
def test_renderers_give_valid_markdown_and_rst(at: Path, render, folders: list[str]) -> None:
    check_renders(render, folders)


def test_results_table_numbers_come_from_the_folder(at: Path) -> None:
    from torch_dash_optim.experiments.summary import summarize

    records = publish.load(CNN_DIR)["records"]
    row = summarize(records)[("dash", "sgd")]
    mean, std = row["last_acc"]
    md = publish.table("md", CNN_DIR)
    assert f"| **DASH** | {100 * mean:.2f} ± {100 * std:.2f} |" in md
    assert [line.split(" | ")[0] for line in md.splitlines()[2:7]] == [
        "| Cold (random init)",
        "| Warm",
        "| Shrink & Perturb",
        "| FIRE",
        "| **DASH**",
    ]
    assert "seeds 0, 1" in md
    rst = publish.table("rst", CNN_DIR)
    assert rst.startswith(".. list-table:: ") and "   * - **DASH**" in rst
    assert "\n     - -\n" not in rst  # no cell that renders as a bullet


def test_seed_table_and_sentence_agree_with_the_records(at: Path) -> None:
    from torch_dash_optim.experiments.stats import compare
    from torch_dash_optim.experiments.summary import per_run

    records = publish.load(CNN_DIR)["records"]
    last = {(m, s): v["last_acc"] for (m, _o, s), v in per_run(records).items()}
    md = publish.seed_table("md", CNN_DIR)
    diff = 100 * (last[("dash", 1)] - last[("cold", 1)])
    assert f"| 1 | {100 * last[('dash', 1)]:.2f} | {diff:+.2f} |" in md
    sentence = publish.results_sentence("md", CNN_DIR)
    assert sentence.startswith("At the last experiment (2 seeds;") and "cold start" in sentence
    cold = next(c for c in compare(records) if c.other == "cold")
    assert f"{cold.accuracy.low:+.2f}".replace("-", "−") in sentence  # the interval, as stats computes it


def _fake(tmp_path: Path, points: list[float]) -> Path:
    """A results folder where DASH beats cold by ``points`` (one seed each) and takes half its steps."""
    folder = tmp_path / "fake"
    folder.mkdir()
    records = []
    for seed, p in enumerate(points):
        for method, acc, steps in (("cold", 0.8, 100), ("dash", 0.8 + p / 100, 50)):
            records.append({"method": method, "optimizer": "sgd", "seed": seed, "experiment": 2, "test_acc": acc,
                            "steps": steps, "epochs": 3, "train_acc": 1.0})
    protocol = {"num_chunks": 2, "max_epochs": 100, "threshold": 0.999, "dash_lambd": 0.3}
    (folder / "experiments.json").write_text(
        json.dumps({"protocol": protocol, "setup": {"dataset": "mnist1d", "model": "cnn1d"}, "records": records})
    )
    return folder


@pytest.mark.parametrize(
    ("points", "claim"),
    [
        ([1.0, -1.0, 0.5], "not distinguishable from that of Cold (random init)"),
        ([2.0, 2.2, 1.8], "**higher than** that of Cold (random init)"),
        ([-2.0, -2.2, -1.8], "**lower than** that of Cold (random init)"),
        ([2.0], "one seed gives no interval, so these numbers rank nothing"),
    ],
)
def test_the_sentence_claims_only_what_the_interval_supports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, points: list[float], claim: str
) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    _fake(tmp_path, points)
    sentence = publish.results_sentence("md", "fake")
    assert claim in sentence
    assert ("higher" in sentence) == (claim.startswith("**higher"))
    if len(points) > 1:
        assert "0.50× [0.50, 0.50] the training steps of a cold start (fewer)" in sentence


def test_factor_table_covers_both_models(at: Path) -> None:
    md = publish.factor_table("md", CNN_DIR, MLP_DIR)
    assert "| 1-D CNN | Conv kernels |" in md and "| MLP | Linear weights |" in md
    assert "| MLP | Conv kernels |" not in md


def test_a_missing_folder_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="dash-warmstart --out results/experiments-mnist1d-cnn1d"):
        publish.table("md", CNN_DIR)


def test_figures_are_drawn(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "FIGURES", {"results": CNN_DIR, "factors": {"CNN": CNN_DIR, "MLP": MLP_DIR}})
    paths = publish.draw_figures(tmp_path)
    assert [p.name for p in paths] == ["warmstart-results.png", "warmstart-factors.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_builds_lists_the_verdicts_that_differ(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    same = _fake(tmp_path, [2.0, 2.2, 1.8])
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((same / "experiments.json").read_text())
    for r in data["records"]:
        if r["method"] == "dash" and r["seed"] == 1:
            r["test_acc"] -= 0.05  # seed 1 now loses: the interval spans 0
    (other / "experiments.json").write_text(json.dumps(data))
    assert publish.builds("md", "fake", "fake").endswith("Verdicts that differ: none.")
    text = publish.builds("md", "fake", "other")
    assert "DASH against Cold (random init), accuracy: A DASH higher, B not distinguishable" in text
    assert "| **DASH** |" not in text and "| DASH | 82.00 | 80.33 | -1.67 | 50 | 50 |" in text


def test_cost_reads_the_provenance(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert publish.cost("md", CNN_DIR).startswith(
        f"- `{publish.FOLDERS[CNN_DIR]}`: 1 s of CPU time in the experiments, 1 s of wall time with 1 worker on "
    )
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    folder = _fake(tmp_path, [1.0, 2.0])
    add_invocation(folder, "dash-warmstart --out fake", 2, 1, 1500.0, 200.0)
    add_invocation(folder, "dash-warmstart --resume --out fake", 1, 1, 100.0, 250.0)
    text = publish.cost("md", "fake")
    # CPU time: the last entry's (it counts every experiment); wall time: the sum of the invocations.
    assert "4 min 10 s of CPU time in the experiments, 26 min 40 s of wall time with 1 or 2 workers" in text
    assert text.endswith("over 2 invocations.")


def test_same_records_and_verdicts_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    same = _fake(tmp_path, [2.0, 2.2, 1.8])
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((same / "experiments.json").read_text())
    data["records"][2]["test_acc"] -= 0.05  # seed 1's cold
    data["records"][3]["test_acc"] -= 0.10  # seed 1's DASH: now below cold, the interval spans 0
    (other / "experiments.json").write_text(json.dumps(data))
    assert "share, 6 have the same test accuracy" in publish.same_records("md", "fake", "fake")
    assert "share, 4 have the same test accuracy" in publish.same_records("md", "fake", "other")
    assert publish.verdicts_differ("md", "fake", "fake").endswith("agree on every method.")
    text = publish.verdicts_differ("md", "fake", "other")
    assert "DASH against Cold (random init), accuracy: A DASH higher (+2.00 points [" in text
    assert "B not distinguishable (" in text
