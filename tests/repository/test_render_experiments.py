"""scripts/render/experiments.py: the renderers of the ``dash-warmstart`` results, on small results folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.render import experiments
from scripts.render import format as render_format
from torch_dash_optim.experiments.provenance import add_invocation

from ._render_folders import CNN_DIR, MLP_DIR, check_renders


@pytest.mark.parametrize(
    ("render", "folders"),
    [
        (experiments.table, [CNN_DIR]),
        (experiments.table, [MLP_DIR]),
        (experiments.factor_table, [CNN_DIR, MLP_DIR]),
        (experiments.seed_table, [CNN_DIR]),
        (experiments.results_sentence, [CNN_DIR]),
        (experiments.verdicts, [CNN_DIR]),
        (experiments.builds, [CNN_DIR, CNN_DIR]),
        (experiments.provenance_note, []),
        (experiments.commands, []),
        (experiments.cost, [CNN_DIR, MLP_DIR]),
        (experiments.same_records, [CNN_DIR, CNN_DIR]),
        (experiments.verdicts_differ, [CNN_DIR, CNN_DIR]),
    ],
)
def test_renderers_give_valid_markdown_and_rst(at: Path, render, folders: list[str]) -> None:
    check_renders(render, folders)


def test_results_table_numbers_come_from_the_folder(at: Path) -> None:
    from torch_dash_optim.experiments.summary import summarize

    records = render_format.load(CNN_DIR)["records"]
    row = summarize(records)[("dash", "sgd")]
    mean, std = row["last_acc"]
    md = experiments.table("md", CNN_DIR)
    assert f"| **DASH** | {100 * mean:.2f} ± {100 * std:.2f} |" in md
    assert [line.split(" | ")[0] for line in md.splitlines()[2:7]] == [
        "| Cold (random init)",
        "| Warm",
        "| Shrink & Perturb",
        "| FIRE",
        "| **DASH**",
    ]
    assert "seeds 0, 1" in md
    rst = experiments.table("rst", CNN_DIR)
    assert rst.startswith(".. list-table:: ") and "   * - **DASH**" in rst
    assert "\n     - -\n" not in rst  # no cell that renders as a bullet


def test_seed_table_and_sentence_agree_with_the_records(at: Path) -> None:
    from torch_dash_optim.experiments.stats import compare
    from torch_dash_optim.experiments.summary import per_run

    records = render_format.load(CNN_DIR)["records"]
    last = {(m, s): v["last_acc"] for (m, _o, s), v in per_run(records).items()}
    md = experiments.seed_table("md", CNN_DIR)
    diff = 100 * (last[("dash", 1)] - last[("cold", 1)])
    assert f"| 1 | {100 * last[('dash', 1)]:.2f} | {diff:+.2f} |" in md
    sentence = experiments.results_sentence("md", CNN_DIR)
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
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    _fake(tmp_path, points)
    sentence = experiments.results_sentence("md", "fake")
    assert claim in sentence
    assert ("higher" in sentence) == (claim.startswith("**higher"))
    if len(points) > 1:
        assert "0.50× [0.50, 0.50] the training steps of a cold start (fewer)" in sentence


def test_factor_table_covers_both_models(at: Path) -> None:
    md = experiments.factor_table("md", CNN_DIR, MLP_DIR)
    assert "| 1-D CNN | Conv kernels |" in md and "| MLP | Linear weights |" in md
    assert "| MLP | Conv kernels |" not in md


def test_a_missing_folder_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="dash-warmstart --out results/experiments-mnist1d-cnn1d"):
        experiments.table("md", CNN_DIR)


def test_builds_lists_the_verdicts_that_differ(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    same = _fake(tmp_path, [2.0, 2.2, 1.8])
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((same / "experiments.json").read_text())
    for r in data["records"]:
        if r["method"] == "dash" and r["seed"] == 1:
            r["test_acc"] -= 0.05  # seed 1 now loses: the interval spans 0
    (other / "experiments.json").write_text(json.dumps(data))
    assert experiments.builds("md", "fake", "fake").endswith("Verdicts that differ: none.")
    text = experiments.builds("md", "fake", "other")
    assert "DASH against Cold (random init), accuracy: A DASH higher, B not distinguishable" in text
    assert "| **DASH** |" not in text and "| DASH | 82.00 | 80.33 | -1.67 | 50 | 50 |" in text


def test_cost_reads_the_provenance(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert experiments.cost("md", CNN_DIR).startswith(
        f"- `{render_format.FOLDERS[CNN_DIR]}`: 1 s of CPU time in the experiments, 1 s of wall time with 1 worker on "
    )
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    folder = _fake(tmp_path, [1.0, 2.0])
    add_invocation(folder, "dash-warmstart --out fake", 2, 1, 1500.0, 200.0)
    add_invocation(folder, "dash-warmstart --resume --out fake", 1, 1, 100.0, 250.0)
    text = experiments.cost("md", "fake")
    # CPU time: the last entry's (it counts every experiment); wall time: the sum of the invocations.
    assert "4 min 10 s of CPU time in the experiments, 26 min 40 s of wall time with 1 or 2 workers" in text
    assert text.endswith("over 2 invocations.")


def test_same_records_and_verdicts_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    same = _fake(tmp_path, [2.0, 2.2, 1.8])
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((same / "experiments.json").read_text())
    data["records"][2]["test_acc"] -= 0.05  # seed 1's cold
    data["records"][3]["test_acc"] -= 0.10  # seed 1's DASH: now below cold, the interval spans 0
    (other / "experiments.json").write_text(json.dumps(data))
    assert "share, 6 have the same test accuracy" in experiments.same_records("md", "fake", "fake")
    assert "share, 4 have the same test accuracy" in experiments.same_records("md", "fake", "other")
    assert experiments.verdicts_differ("md", "fake", "fake").endswith("agree on every method.")
    text = experiments.verdicts_differ("md", "fake", "other")
    assert "DASH against Cold (random init), accuracy: A DASH higher (+2.00 points [" in text
    assert "B not distinguishable (" in text


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ({"commit": "0123456789abcdef", "dirty": True}, "code at 0123456789 with uncommitted changes;"),
        ({"commit": "0123456789abcdef", "dirty": False}, "code at 0123456789;"),
        ({"commit": None, "dirty": None}, "code at unknown;"),  # written before "installed" was recorded
        ({"commit": None, "dirty": None, "installed": "torch-dash-optim 0.2.0"},
         "installed package torch-dash-optim 0.2.0, no revision;"),
    ],
)
def test_the_provenance_note_names_the_code_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: dict, says: str
) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    folder = _fake(tmp_path, [1.0, 2.0])
    entry = {"command": "dash-warmstart --out fake", "torch": "2.14.1", "python": "3.11.7", "cpu": "CPU",
             "cpu_count": 2, "jobs": 1, "wall_seconds": 3.0, "cpu_seconds": 2.0, **code}
    (folder / "provenance.json").write_text(json.dumps({"invocations": [entry]}))
    note = experiments.provenance_note("md", "fake")
    assert note.startswith("- `results/fake`: `dash-warmstart --out fake`; torch 2.14.1, Python 3.11.7, " + says)
    assert ("code at" in note) != ("installed" in code)
