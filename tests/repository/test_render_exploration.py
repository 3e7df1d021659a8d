"""The renderers of the exploration runs and the warm-start gap, on small results folders written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.render import exploration
from scripts.render import format as render_format

from ._render_folders import CNN2D_DIR, CNN_DIR, check_renders, rst_problems


@pytest.mark.parametrize(
    ("render", "folders"),
    [
        (exploration.warm_gap, [CNN_DIR]),
        (exploration.warm_gap_sentence, [CNN_DIR, CNN_DIR]),
    ],
)
def test_renderers_give_valid_markdown_and_rst(at: Path, render, folders: list[str]) -> None:
    check_renders(render, folders)


def test_warm_gap_numbers_come_from_the_records(at: Path) -> None:
    from torch_dash_optim.experiments.summary import per_run

    last = {(m, s): v["last_acc"] for (m, _o, s), v in per_run(render_format.load(CNN_DIR)["records"]).items()}
    md = exploration.warm_gap("md", CNN_DIR)
    gaps = [100 * (last[("cold", s)] - last[("warm", s)]) for s in (0, 1)]
    for s, gap in zip((0, 1), gaps, strict=True):
        row = f"| {s} | {100 * last[('cold', s)]:.2f} | {100 * last[('warm', s)]:.2f} | "
        assert row + f"{gap:+.2f}".replace("-", "−") + " |" in md
    mean = f"{sum(gaps) / 2:+.2f}".replace("-", "−")
    assert f"**{mean}**" in md and f"positive on {sum(g > 0 for g in gaps)} of 2 seeds" in md
    sentence = exploration.warm_gap_sentence("md", CNN_DIR)
    assert sentence.startswith(f"- `results/{CNN_DIR}` (seeds 0, 1): cold − warm")
    with pytest.raises(ValueError, match="no cold and warm runs"):
        exploration.warm_gap("md", CNN2D_DIR)


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
    monkeypatch.setattr(render_format, "RESULTS", tmp_path)
    _exploration(tmp_path)
    md = exploration.exploration("md", "explore", "default")
    rows = md.splitlines()[2:4]
    assert rows[0] == "| `a` | patch length 64, noise std 0.5 | 0 | 90.00 | 91.00 | −1.00 | — | — | — | no |"
    assert rows[1] == "| `b` | default | 0, 1 | 81.00 | 79.00 | +2.00 (1 of 2) | +6.00 | +2.00 | — | 1 |"
    assert "2 runs from" in md and "1 run(s) hit the cap" in md and "2 min 30 s of CPU time" in md
    rst = exploration.exploration("rst", "explore", "default")
    assert rst_problems(rst) == []
    with pytest.raises(FileNotFoundError, match="scripts/explore_features.py"):
        exploration.exploration("md", "exploration-features", "default")


def test_explore_features_parses_and_summarises() -> None:
    import importlib.util

    path = render_format.ROOT / "scripts" / "explore_features.py"
    spec = importlib.util.spec_from_file_location("explore_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    args = module.parse_args(["--tag", "t", "--out", "x.jsonl", "--noise-std", "1.5", "--seeds", "0,1"])
    assert (args.tag, args.noise_std, args.out) == ("t", 1.5, Path("x.jsonl"))
    text = module.summary({"tag": "t", "wall": 3, "cpu": 2, "last": {"cold": [80.0, 82.0], "warm": [75.0, 83.0]},
                           "steps": {"cold": [1, 1], "warm": [1, 1]}, "capped": []})
    assert "cold − warm: mean +2.00, positive on 1 of 2" in text
