"""The statistics: t quantiles, intervals, paired comparisons, capped runs and the verdict lines."""

from __future__ import annotations

import math

import pytest

from torch_dash_optim.experiments.stats import (
    capped,
    compare,
    firmness,
    ratio_interval,
    t_interval,
    t_quantile,
    verdict_lines,
    verdicts_markdown,
)

# Student's t two-sided 95% quantiles from printed tables (df: value).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 30: 2.042, 120: 1.980}


@pytest.mark.parametrize(("df", "value"), sorted(T95.items()))
def test_t_quantile_matches_the_printed_table(df: int, value: float) -> None:
    assert t_quantile(0.95, df) == pytest.approx(value, abs=6e-4)


def test_t_quantile_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 6, 7, 25, 200):
        for level in (0.8, 0.95, 0.99):
            assert t_quantile(level, df) == pytest.approx(scipy_stats.t.ppf(0.5 + level / 2, df), rel=1e-9)


@pytest.mark.parametrize(("level", "df"), [(0.0, 3), (1.0, 3), (0.95, 0), (0.95, 2.5)])
def test_t_quantile_refuses_bad_arguments(level: float, df: float) -> None:
    with pytest.raises(ValueError, match="level=|df="):
        t_quantile(level, df)  # type: ignore[arg-type]


def test_interval_by_hand_and_for_one_or_equal_values() -> None:
    iv = t_interval([1.0, 2.0, 4.0, 5.0])  # mean 3, sd sqrt(10/3), t(3)
    half = t_quantile(0.95, 3) * math.sqrt(10 / 3) / 2
    assert (iv.mean, iv.n) == (3.0, 4)
    assert iv.low == pytest.approx(3 - half) and iv.high == pytest.approx(3 + half)
    one = t_interval([0.7])
    assert (one.low, one.high, one.contains(0.0)) == (None, None, None)
    same = t_interval([0.5, 0.5, 0.5])
    assert same.low == same.high == 0.5 and same.contains(0.0) is False
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])


def _rec(method: str, seed: int, acc: float, steps: int, experiment: int = 3, epochs: int = 5,
         train_acc: float = 1.0, optimizer: str = "sgd") -> dict:
    return {"method": method, "optimizer": optimizer, "seed": seed, "experiment": experiment, "test_acc": acc,
            "steps": steps, "epochs": epochs, "train_acc": train_acc}


def test_compare_pairs_by_seed_at_the_last_experiment() -> None:
    records = [
        _rec("dash", 0, 0.5, 999, experiment=2),  # not the last experiment: ignored
        _rec("dash", 0, 0.90, 50),
        _rec("dash", 1, 0.80, 60),
        _rec("dash", 2, 0.85, 40),  # seed 2 has no cold run: not paired
        _rec("cold", 0, 0.88, 100),
        _rec("cold", 1, 0.81, 120),
        _rec("cold", 3, 0.99, 100),
    ]
    (c,) = compare(records)
    assert (c.method, c.other, c.seeds) == ("dash", "cold", (0, 1))
    assert c.points == pytest.approx((2.0, -1.0)) and c.step_ratios == pytest.approx((0.5, 0.5))
    assert c.accuracy.mean == pytest.approx(0.5) and c.accuracy_verdict() == "not distinguishable"
    assert c.steps_verdict() == "DASH fewer" and c.capped == {}
    assert compare([r for r in records if r["method"] == "cold"]) == []


def test_verdicts_follow_the_interval() -> None:
    higher = [_rec("dash", s, 0.9 + d, 50) for s, d in enumerate((0.020, 0.021, 0.019))]
    higher += [_rec("warm", s, 0.9, 40 + s) for s in range(3)]
    (c,) = compare(higher)
    assert c.accuracy_verdict() == "DASH higher" and c.steps_verdict() == "DASH more"
    lines = verdict_lines([c])
    assert lines[0].startswith("DASH − Warm: +2.00 [+") and lines[0].endswith(
        "points, DASH higher (3 seeds, holds without any one seed)"
    )
    assert lines[1].startswith("DASH/Warm steps: 1.22× [") and "DASH more" in lines[1]
    lower = [{**r, "test_acc": 1.8 - r["test_acc"]} if r["method"] == "dash" else r for r in higher]
    assert compare(lower)[0].accuracy_verdict() == "DASH lower"
    one = compare(higher[:1] + higher[3:4])[0]
    assert one.accuracy_verdict() == "one seed: no interval"
    assert verdict_lines([one])[0] == "DASH − Warm: +2.00 points, one seed: no interval (1 seed)"


def test_capped_runs_are_flagged_in_the_verdicts() -> None:
    assert capped(_rec("cold", 0, 0.5, 10, epochs=100, train_acc=0.9), 100, 0.999)
    assert not capped(_rec("cold", 0, 0.5, 10, epochs=100, train_acc=0.9995), 100, 0.999)
    assert not capped(_rec("cold", 0, 0.5, 10, epochs=99, train_acc=0.9), 100, 0.999)
    assert not capped(_rec("cold", 0, 0.5, 10, epochs=100, train_acc=0.9), None, None)
    records = [_rec("dash", s, 0.9, 50) for s in range(3)]
    records += [_rec("cold", s, 0.9, 500, epochs=100 if s else 7, train_acc=0.95) for s in range(3)]
    (c,) = compare(records, max_epochs=100, threshold=0.999)
    assert c.capped == {"cold": (1, 2)}
    lines = verdict_lines([c], max_epochs=100)
    assert all("CAPPED: Cold (random init) on 2 of 3 seeds stopped at the 100-epoch cap" in line for line in lines)
    assert compare(records)[0].capped == {}  # no cap given: nothing flagged


def test_optimizers_are_compared_apart_and_named() -> None:
    records = [_rec(m, s, 0.9, 50, optimizer=o) for m in ("dash", "sp") for s in range(2) for o in ("sgd", "sam")]
    comparisons = compare(records)
    assert [(c.optimizer, c.other) for c in comparisons] == [("sgd", "sp"), ("sam", "sp")]
    assert verdict_lines(comparisons)[0].startswith("DASH − Shrink & Perturb (SGD): +0.00")
    text = verdicts_markdown(records)
    assert text.count("\n- ") == 4 and "95% t interval" in text


def test_step_ratios_get_a_geometric_mean_and_a_positive_interval() -> None:
    iv = ratio_interval([0.1, 0.2, 0.4])  # log-symmetric around 0.2
    assert iv.mean == pytest.approx(0.2) and 0 < iv.low < 0.1 and iv.high > 0.4
    assert iv.low * iv.high == pytest.approx(0.2**2)  # symmetric on the log scale
    assert ratio_interval([0.5]).low is None
    with pytest.raises(ValueError, match="must all be > 0"):
        ratio_interval([0.5, 0.0])


def test_the_labels_are_each_methods_label_and_stats_needs_no_summary() -> None:
    """stats names the methods by their ``Method.label`` without importing summary (which imports stats)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from torch_dash_optim.experiments import stats\n"
        "from torch_dash_optim.experiments.methods import BUILTIN\n"
        "from torch_dash_optim.experiments.methods import ALIASES\n"
        "assert stats.LABELS == {**{n: m.label for n, m in BUILTIN.items()},"
        " **{o: BUILTIN[n].label for o, n in ALIASES.items()}}\n"
        "assert stats.LABELS['uniform'] == stats.LABELS['uniform_global']\n"
        "recs = [dict(method=m, optimizer='sgd', seed=s, experiment=2, test_acc=0.9, steps=10, epochs=1,"
        " train_acc=1.0) for m in ('dash', 'sp', 'mine') for s in (0, 1)]\n"
        "lines = stats.verdict_lines(stats.compare(recs))\n"
        "assert lines[0].startswith('DASH − Shrink & Perturb: ') and lines[2].startswith('DASH − mine: '), lines\n"
        "assert 'torch_dash_optim.experiments.summary' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_verdict_that_one_seed_decides_says_so() -> None:
    # seeds 0-3 put DASH about 2 points up; seed 4 alone puts it far down
    points = {0: 0.020, 1: 0.021, 2: 0.019, 3: 0.022, 4: -0.09}
    records = [_rec("dash", s, 0.9 + d, 50) for s, d in points.items()] + [_rec("cold", s, 0.9, 100) for s in points]
    (c,) = compare(records)
    assert c.accuracy_verdict() == "not distinguishable"
    assert c.flips() == {4: "DASH higher"}  # without seed 4 DASH would be higher
    assert c.flips("steps") == {}  # steps: 0.5x on every seed
    assert firmness(c) == "5 seeds; without seed 4: DASH higher"
    assert firmness(c, "steps") == "5 seeds, holds without any one seed"
    line = verdict_lines([c])[0]
    assert line.endswith("not distinguishable (5 seeds; without seed 4: DASH higher)")
    # a firm one: every subset of four seeds gives the same verdict
    firm = [r for r in records if r["seed"] != 4]
    (f,) = compare(firm)
    assert f.accuracy_verdict() == "DASH higher" and f.flips() == {}
    with pytest.raises(ValueError, match="what='loss' must be 'accuracy' or 'steps'"):
        f.flips("loss")


def test_two_seeds_rest_on_each_and_one_seed_has_nothing_to_drop() -> None:
    records = [_rec("dash", s, 0.92 + 0.001 * s, 50) for s in (0, 1)] + [_rec("warm", s, 0.9, 50) for s in (0, 1)]
    (c,) = compare(records)
    assert c.accuracy_verdict() == "DASH higher"
    assert c.flips() == {0: "one seed: no interval", 1: "one seed: no interval"}
    assert firmness(c) == "2 seeds; leaving either out leaves no interval"
    (one,) = compare([r for r in records if r["seed"] == 0])
    assert one.flips() == {} and firmness(one) == "1 seed"


def test_leave_one_out_matches_a_recomputation_by_hand() -> None:
    import random

    rng = random.Random(5)
    for _ in range(50):
        n = rng.randint(3, 7)
        diffs = [rng.gauss(0.01, 0.02) for _ in range(n)]
        records = [_rec("dash", s, 0.5 + d, 50) for s, d in enumerate(diffs)]
        records += [_rec("sp", s, 0.5, 50) for s in range(n)]
        (c,) = compare(records)
        for seed in range(n):
            rest = [100 * d for i, d in enumerate(diffs) if i != seed]
            iv = t_interval(rest)
            verdict = (
                "not distinguishable" if iv.low <= 0 <= iv.high else "DASH higher" if iv.mean > 0 else "DASH lower"
            )
            assert (seed in c.flips()) == (verdict != c.accuracy_verdict())
            if seed in c.flips():
                assert c.flips()[seed] == verdict


def test_several_seeds_that_each_decide_a_verdict_are_named_together() -> None:
    # DASH barely higher on six seeds: leaving out any of the five that favour DASH spans 0, seed 5 (a tie) does not
    points = [0.02, 0.021, 0.019, 0.06, 0.061, 0.0]
    records = [_rec("dash", s, 0.5 + d, 50) for s, d in enumerate(points)]
    records += [_rec("fire", s, 0.5, 50) for s in range(6)]
    (c,) = compare(records)
    assert c.accuracy_verdict() == "DASH higher"
    assert c.flips() == dict.fromkeys(range(5), "not distinguishable")
    assert firmness(c) == "6 seeds; without seed 0, 1, 2, 3 or 4 (any one of them): not distinguishable"
