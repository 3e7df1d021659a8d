"""scripts/render/experiments.py: the renderers of the ``dash-warmstart`` results, on small results folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.render import experiments
from scripts.render import format as render_format
from torch_dash_optim.experiments.provenance import add_invocation

from ._render_folders import CNN2D_DIR, CNN_DIR, check_renders, rst_problems


@pytest.mark.parametrize(
    ("render", "folders"),
    [
        (experiments.table, [CNN_DIR]),
        (experiments.table, [CNN2D_DIR]),
        (experiments.factor_table, [CNN_DIR, CNN2D_DIR]),
        (experiments.seed_table, [CNN_DIR]),
        (experiments.results_sentence, [CNN_DIR]),
        (experiments.verdicts, [CNN_DIR]),
        (experiments.builds, [CNN_DIR, CNN_DIR]),
        (experiments.provenance_note, []),
        (experiments.commands, []),
        (experiments.cost, [CNN_DIR, CNN2D_DIR]),
        (experiments.same_records, [CNN_DIR, CNN_DIR]),
        (experiments.verdicts_differ, [CNN_DIR, CNN_DIR]),
        (experiments.seed_robustness, [CNN_DIR]),
        (experiments.direction_sentence, [CNN_DIR]),
        (experiments.setting, [CNN_DIR]),
        (experiments.steps_table, [CNN_DIR]),
        (experiments.plasticity, [CNN_DIR]),
        (experiments.headline, [CNN_DIR]),
        (experiments.headline, [CNN2D_DIR]),
        (experiments.run_times, [CNN_DIR, CNN2D_DIR]),
        (experiments.paper_aim, [CNN_DIR]),
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
    assert f"| 1 | {100 * last[('dash', 1)]:.2f} | {render_format.signed_number(diff)} |" in md
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
    md = experiments.factor_table("md", CNN_DIR, CNN2D_DIR)
    rows = [line.split(" | ")[:2] for line in md.splitlines()[2:] if line.startswith("| ")]
    assert ["| 1-D CNN", "Conv kernels"] in rows and ["| 2-D CNN", "Conv kernels"] in rows
    assert ["| 2-D CNN", "Linear weights"] in rows and ["| 2-D CNN", "Biases"] in rows  # the head's bias
    assert rows.index(["| 1-D CNN", "Conv kernels"]) < rows.index(["| 2-D CNN", "Conv kernels"])


def test_a_missing_folder_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="dash-warmstart --dataset mnist1d --seeds 0,1,2,3,4 --out results/"
                       "experiments-mnist1d-cnn1d"):
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
    assert "DASH against Cold (random init), accuracy: A DASH higher (3 seeds), B not distinguishable (3 seeds)" in text
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
    assert "3 seeds), B not distinguishable (" in text


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


def _controls(tmp_path: Path, name: str, shuffled: list[float], matched: list[float]) -> str:
    """A results folder where DASH leads the shuffled and the matched control by the given points, seed by seed."""
    folder = tmp_path / name
    folder.mkdir()
    records = []
    for seed, (a, b) in enumerate(zip(shuffled, matched, strict=True)):
        for method, acc in (("dash", 0.8), ("shuffled", 0.8 - a / 100), ("uniform_matched", 0.8 - b / 100),
                            ("cold", 0.7)):
            records.append({"method": method, "optimizer": "sgd", "seed": seed, "experiment": 2, "test_acc": acc,
                            "steps": 50, "epochs": 3, "train_acc": 1.0})
    protocol = {"num_chunks": 2, "max_epochs": 100, "threshold": 0.999, "dash_lambd": 0.3}
    (folder / "experiments.json").write_text(
        json.dumps({"protocol": protocol, "setup": {"dataset": "features", "model": "patchcnn"}, "records": records})
    )
    return name


@pytest.mark.parametrize(
    ("shuffled", "matched", "says"),
    [
        ([2.0, 2.2, 1.8], [1.0, 1.1, 0.9], "**DASH's direction is credited**: at the last experiment DASH's test "
         "accuracy is higher than that of both controls, Shuffled DASH factors (+2.00 points ["),
        ([2.0, 2.2, 1.8], [1.0, -1.0, 0.5], "**DASH's direction is not credited**: at the last experiment DASH's "
         "test accuracy is not distinguishable from that of Uniform shrink (per tensor) (+0.17 points ["),
        ([-2.0, -2.2, -1.8], [1.0, -1.0, 0.5], "**lower than** that of Shuffled DASH factors (−2.00 points ["),
        ([1.0, -1.0, 0.5], [1.0, -1.0, 0.5], "not distinguishable from that of Shuffled DASH factors (+0.17 points"),
    ],
)
def test_the_direction_is_credited_only_when_dash_beats_both_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffled: list[float], matched: list[float], says: str
) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    name = _controls(tmp_path, "ctl", shuffled, matched)
    text = experiments.direction_sentence("md", name)
    assert says in text and text.startswith("In `results/ctl` (3 seeds), ")
    assert ("is credited" in text) == (min(shuffled) > 0 and min(matched) > 0)
    assert "3 seeds" in text and "holds without any one seed" in text or "without seed" in text
    assert rst_problems(experiments.direction_sentence("rst", name)) == []


def test_the_direction_sentence_of_one_seed_or_no_control_claims_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    one = experiments.direction_sentence("md", _controls(tmp_path, "one", [2.0], [2.0]))
    assert "one seed gives no interval, so it says nothing on whether DASH's direction matters" in one
    assert "credited" not in one
    _fake(tmp_path, [1.0, 2.0])
    none = experiments.direction_sentence("md", "fake")
    assert none.startswith("`results/fake` has no run of Shuffled DASH factors and Uniform shrink (per tensor)")
    both = experiments.direction_sentence("md", "one", "fake")
    assert both.startswith("- In `results/one` (one seed)") and "\n- `results/fake` has no run" in both
    with pytest.raises(ValueError, match="at least one results folder"):
        experiments.direction_sentence("md")


def test_seed_robustness_flags_a_verdict_one_seed_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    # shuffled: DASH ahead on 4 seeds, far behind on seed 4; matched: ahead on every seed
    name = _controls(tmp_path, "ctl", [2.0, 2.2, 1.8, 2.1, -9.0], [1.0, 1.1, 0.9, 1.0, 1.05])
    md = experiments.seed_robustness("md", name, "shuffled", "uniform_matched")
    rows = md.splitlines()
    assert rows[0] == "| DASH against | Seeds | DASH − other (points) | Verdict | Without one seed |"
    assert rows[2].startswith("| Shuffled DASH factors | 5 | ") and rows[2].endswith(
        "| not distinguishable | without 4: DASH higher |")
    assert rows[3].startswith("| Uniform shrink (per tensor) | 5 | ") and rows[3].endswith(
        "| DASH higher | the same verdict |")
    assert "1 of the 2 verdicts keep their reading whichever seed is left out." in md
    assert len(experiments.seed_robustness("md", name).splitlines()) == 2 + 3 + 2  # every method by default
    assert rst_problems(experiments.seed_robustness("rst", name)) == []
    with pytest.raises(ValueError, match="has no comparison of DASH with fire"):
        experiments.seed_robustness("md", name, "fire")


def test_setting_names_the_methods_seeds_and_data(at: Path) -> None:
    text = experiments.setting("md", CNN_DIR)
    assert text.startswith("MNIST-1D, 1-D CNN, 2 chunks, SGD: 5 methods (`cold`, `warm`, `sp`, `fire` and `dash`) on 2 "
                           "seeds (0, 1), every seed on the same data; 20 experiments in all")
    assert "epoch cap 2" in text and "λ = 0.3" in text


def test_steps_table_shows_the_batches_and_the_most_epochs(at: Path) -> None:
    from torch_dash_optim.experiments.summary import per_experiment

    records = render_format.load(CNN_DIR)["records"]
    md = experiments.steps_table("md", CNN_DIR).splitlines()
    assert md[0] == "| Method | 1 | 2 | Most epochs (experiment) |"
    assert md[2] == "| Batches per epoch (smallest batch) | 3 (15) | 6 (15) |  |"  # 45 and 90 examples at batch 16
    warm = per_experiment(records, "steps")[("warm", "sgd")]
    most = max(r["epochs"] for r in records if r["method"] == "warm" and r["experiment"] == 2)
    assert md[4] == f"| Warm | {warm[1]:.0f} | {warm[2]:.0f} | {most} (2) |"


def test_plasticity_reads_the_diagnostics(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch_dash_optim.experiments.summary import per_experiment

    records = render_format.load(CNN_DIR)["records"]
    rank = per_experiment(records, "feature_rank")[("dash", "sgd")]
    md = experiments.plasticity("md", CNN_DIR)
    assert f"| DASH | {rank[1]:.1f} | {rank[2]:.1f} |" in md and "% of the experiments' wall time." in md
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    _fake(tmp_path, [1.0])  # records without diagnostics
    none = experiments.plasticity("md", "fake")
    assert none.endswith("holds no plasticity diagnostics (it ran with --no-diagnostics).")


def test_run_times_compare_the_measured_time_with_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    for name, seconds in (("fast", 100.0), ("slow", 1000.0), ("free", 5.0)):
        folder = _fake(tmp_path, [1.0]).rename(tmp_path / name)
        add_invocation(folder, f"dash-warmstart --out {name}", 2, 1, seconds, seconds)
    monkeypatch.setattr(render_format, "BUDGETS", {"fast": 120.0, "slow": 900.0})
    monkeypatch.setattr(experiments, "BUDGETS", render_format.BUDGETS)
    rows = experiments.run_times("md", "fast", "slow", "free").splitlines()
    assert rows[2].startswith("| `dash-warmstart --out fast` | 100 s | 100 s | 2 workers on ")
    assert rows[2].endswith("| 2 min | yes |") and rows[3].endswith("| 15 min | **no** |")
    assert rows[4].endswith("| - | - |")
    with pytest.raises(FileNotFoundError, match="provenance.json is missing"):
        experiments.run_times("md", _fake(tmp_path, [1.0]).name)
    with pytest.raises(ValueError, match="at least one results folder"):
        experiments.run_times("md")


def test_headline_says_whether_warm_starting_hurts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    folder = tmp_path / "gap"
    folder.mkdir()
    records = []
    for seed, (cold, warm, dash) in enumerate([(0.80, 0.70, 0.85), (0.82, 0.71, 0.86), (0.81, 0.69, 0.84)]):
        for method, acc in (("cold", cold), ("warm", warm), ("dash", dash)):
            records.append({"method": method, "optimizer": "sgd", "seed": seed, "experiment": 2, "test_acc": acc,
                            "steps": 50, "epochs": 3, "train_acc": 1.0})
    protocol = {"num_chunks": 2, "max_epochs": 100, "threshold": 0.999, "dash_lambd": 0.3}
    (folder / "experiments.json").write_text(json.dumps({
        "protocol": protocol, "setup": {"dataset": "mnist", "model": "cnn2d"}, "records": records,
        "data": {"per_seed": True, "data_seed": None}}))
    text = experiments.headline("md", "gap")
    assert text.startswith("On MNIST (real digits), 2-D CNN, 2 chunks, SGD (3 seeds, each seed with its own data draw")
    assert "the cold start ends above the warm start (cold − warm +11.00 points [" in text
    assert "DASH ends above the cold start (DASH − cold +4.00 points [" in text
    assert "DASH ends above the warm start" in text and text.endswith("is DASH's (85.00%).")


@pytest.mark.parametrize(
    ("points", "ratio", "accuracy", "steps"),
    [
        ([2.0, 2.2, 1.8], 0.5, "**yes** (+2.00 points [", "**yes** (0.50× [0.50, 0.50]"),
        ([-2.0, -2.2, -1.8], 0.7, "**no** (−2.00 points [", "**no** (0.70× [0.70, 0.70]"),
        ([1.0, -1.0, 0.5], 0.6, "**not shown** (+0.17 points [", "**yes** (0.60× [0.60, 0.60]"),
    ],
)
def test_paper_aim_reads_each_item_off_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, points: list[float], ratio: float, accuracy: str, steps: str
) -> None:
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    folder = _fake(tmp_path, points)
    data = json.loads((folder / "experiments.json").read_text())
    for r in data["records"]:
        r["steps"] = 100 if r["method"] == "cold" else round(100 * ratio)
    (folder / "experiments.json").write_text(json.dumps(data))
    lines = experiments.paper_aim("md", "fake").splitlines()
    assert lines[0].startswith("- DASH above Cold (random init): " + accuracy)
    assert lines[1] == "- DASH above Warm: not run in `results/fake`"
    assert lines[3].startswith("- DASH in at most 0.6× the cold start's steps: " + steps)
