"""The published-number renderers, on a small results folder written here."""

from __future__ import annotations

import json
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
            train, test, factory, config=CONFIG, methods=methods, seeds=[0, 1], out=root / name, progress=False,
            setup={"dataset": "mnist1d", "model": name.split("-")[-1]},
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


CNN_DIR, MLP_DIR = "experiments-mnist1d-cnn1d", "experiments-mnist1d-mlp"


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
    ],
)
def test_renderers_give_valid_markdown_and_rst(at: Path, render, folders: list[str]) -> None:
    md, rst = render("md", *folders), render("rst", *folders)
    assert md.strip() and rst.strip()
    assert _rst_problems(rst) == []
    assert "nan" not in md and "nan" not in rst
    with pytest.raises(ValueError, match="fmt='html' must be 'md' or 'rst'"):
        render("html", *folders)


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


@pytest.mark.parametrize(
    ("render", "folders"),
    [
        (publish.warm_gap, [CNN_DIR]),
        (publish.warm_gap_sentence, [CNN_DIR, CNN_DIR]),
        (publish.cost, [CNN_DIR, MLP_DIR]),
        (publish.same_records, [CNN_DIR, CNN_DIR]),
        (publish.verdicts_differ, [CNN_DIR, CNN_DIR]),
    ],
)
def test_the_new_renderers_give_valid_markdown_and_rst(at: Path, render, folders: list[str]) -> None:
    test_renderers_give_valid_markdown_and_rst(at, render, folders)


def test_warm_gap_numbers_come_from_the_records(at: Path) -> None:
    from torch_dash_optim.experiments.summary import per_run

    last = {(m, s): v["last_acc"] for (m, _o, s), v in per_run(publish.load(CNN_DIR)["records"]).items()}
    md = publish.warm_gap("md", CNN_DIR)
    gaps = [100 * (last[("cold", s)] - last[("warm", s)]) for s in (0, 1)]
    for s, gap in zip((0, 1), gaps, strict=True):
        row = f"| {s} | {100 * last[('cold', s)]:.2f} | {100 * last[('warm', s)]:.2f} | "
        assert row + f"{gap:+.2f}".replace("-", "−") + " |" in md
    mean = f"{sum(gaps) / 2:+.2f}".replace("-", "−")
    assert f"**{mean}**" in md and f"positive on {sum(g > 0 for g in gaps)} of 2 seeds" in md
    assert publish.warm_gap_sentence("md", CNN_DIR).startswith(f"- `results/{CNN_DIR}` (seeds 0, 1): cold − warm")
    with pytest.raises(ValueError, match="no cold and warm runs"):
        publish.warm_gap("md", MLP_DIR)


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


def _exploration(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    config = {"protocol": {"num_chunks": 10, "lr": 0.01, "max_epochs": 300, "batch_size": 128},
              "setup": {"width": 64, "features": {"patch_dim": 128, "noise_std": 1.0, "rare_freq": 0.1, "rare": 3,
                                                  "patches": 8, "feature_strength": 1.0, "num_train": 2000,
                                                  "num_test": 2000}}}
    (tmp_path / "default" / "config.json").write_text(json.dumps(config))
    base = {"chunks": 10, "lr": 0.01, "max_epochs": 300, "batch": 128, "width": 64, "patch_dim": 128,
            "noise_std": 1.0, "rare_freq": 0.1, "rare": 3, "patches": 8, "feature_strength": 1.0,
            "num_train": 2000, "num_test": 2000, "jobs": 2}
    runs = [
        {"tag": "a", "args": {**base, "seeds": "0", "patch_dim": 64, "noise_std": 0.5}, "cpu": 60,
         "last": {"cold": [90.0], "warm": [91.0]}, "capped": []},
        {"tag": "b", "args": {**base, "seeds": "0,1"}, "cpu": 90,
         "last": {"cold": [80.0, 82.0], "warm": [75.0, 83.0], "sp": [85.0, 85.0], "dash": [86.0, 88.0]},
         "capped": [["cold", 1, 3]]},
    ]
    (tmp_path / "explore").mkdir()
    (tmp_path / "explore" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))


def test_exploration_renders_every_run_against_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
    _exploration(tmp_path)
    md = publish.exploration("md", "explore", "default")
    rows = md.splitlines()[2:4]
    assert rows[0] == "| `a` | patch length 64, noise std 0.5 | 0 | 90.00 | 91.00 | −1.00 | — | — | — | no |"
    assert rows[1] == "| `b` | default | 0, 1 | 81.00 | 79.00 | +2.00 (1 of 2) | +6.00 | +2.00 | — | 1 |"
    assert "2 runs from" in md and "1 run(s) hit the cap" in md and "2 min 30 s of CPU time" in md
    rst = publish.exploration("rst", "explore", "default")
    assert _rst_problems(rst) == []
    with pytest.raises(FileNotFoundError, match="scripts/explore_features.py"):
        publish.exploration("md", "exploration-features", "default")


def test_reproduced_counts_equal_seeds(at: Path, tmp_path: Path) -> None:
    records = publish.load(CNN_DIR)["records"]
    last = {(r["method"], r["seed"]): round(100 * r["test_acc"], 2) for r in records if r["experiment"] == 2}
    run = {"tag": "x", "args": {"seeds": "0,1"},
           "last": {"cold": [last[("cold", 0)], last[("cold", 1)]], "dash": [last[("dash", 0)], 1.0]}}
    (at / "explore").mkdir(exist_ok=True)
    (at / "explore" / "runs.jsonl").write_text(json.dumps(run) + "\n")
    text = publish.reproduced("md", "explore", "x", CNN_DIR)
    assert "Cold (random init) 2 of 2; DASH 1 of 2 (mean" in text
    with pytest.raises(ValueError, match="tag='y' is not in"):
        publish.reproduced("md", "explore", "y", CNN_DIR)


def test_mechanism_renderers(at: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "RESULTS", tmp_path)
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
    md = publish.mechanism_table("md", "mech")
    assert "| conv1 (4 units) | 2 | 0.35 | 75 | +0.20 | +0.10 | +0.010 |" in md
    assert "| conv2 (8 units) | 2 | 0.60 | 50 | +0.10 | +0.10 | +0.020 |" in md
    summary = publish.mechanism_summary("md", "mech")
    assert "conv1 (4 units): at the floor 75–75 %" in summary
    assert "over the 1 of 2 seed-stage cases where it is defined" in summary and "(undefined in 1," in summary
    assert _rst_problems(publish.mechanism_table("rst", "mech")) == []
    assert _rst_problems(publish.mechanism_summary("rst", "mech")) == []
    with pytest.raises(FileNotFoundError, match="torch_dash_optim.experiments.mechanism"):
        publish.mechanism_table("md", "mechanism-features-patchcnn")


def test_explore_features_parses_and_summarises() -> None:
    import importlib.util

    path = Path(publish.__file__).resolve().parents[2] / "scripts" / "explore_features.py"
    spec = importlib.util.spec_from_file_location("explore_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    args = module.parse_args(["--tag", "t", "--out", "x.jsonl", "--noise-std", "1.5", "--seeds", "0,1"])
    assert (args.tag, args.noise_std, args.out) == ("t", 1.5, Path("x.jsonl"))
    text = module.summary({"tag": "t", "wall": 3, "cpu": 2, "last": {"cold": [80.0, 82.0], "warm": [75.0, 83.0]},
                           "steps": {"cold": [1, 1], "warm": [1, 1]}, "capped": []})
    assert "cold − warm: mean +2.00, positive on 1 of 2" in text
