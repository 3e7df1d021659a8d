"""Paired comparisons at the last stage: the verdict follows the t interval."""

from __future__ import annotations

from torch_dash_optim.experiments.text import compare_last


def test_last_stage_verdicts_follow_the_interval() -> None:
    def recs(diffs: list[float]) -> list[dict]:
        return [r for s, d in enumerate(diffs) for r in (
            {"seed": s, "method": "dash", "stage": 3, "heldout_loss": 2.0 + d},
            {"seed": s, "method": "warm", "stage": 3, "heldout_loss": 2.0},
            {"seed": s, "method": "warm", "stage": 2, "heldout_loss": 9.0},  # earlier stages are ignored
        )]

    assert compare_last(recs([-0.1, -0.12, -0.09]))[0].verdict() == "DASH lower (better)"
    assert compare_last(recs([0.1, 0.12, 0.09]))[0].verdict() == "DASH higher (worse)"
    spanning = compare_last(recs([-0.1, 0.12, 0.01]))[0]
    assert spanning.verdict() == "not distinguishable" and spanning.interval.low < 0 < spanning.interval.high
    assert "not distinguishable (3 seeds)" in spanning.line()
    assert compare_last(recs([-0.1]))[0].verdict() == "one seed: no interval"

