"""The tables of a text run: mean ± std per method and stage, and the tables and verdicts of ``summary.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..stats import LEVEL
from .compare import compare_last
from .settings import LABELS, METHODS

__all__ = ["stage_table", "summary_markdown"]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the standard deviation (ddof=0) of ``values``."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def stage_table(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per method, per stage: the mean and std (ddof=0) over seeds of held-out loss, perplexity and train loss.

    Examples
    --------
    >>> recs = [{"seed": s, "method": "warm", "stage": 1, "heldout_loss": v, "heldout_ppl": 2.0,
    ...          "train_loss": 1.0, "train_bytes": 8} for s, v in [(0, 1.0), (1, 3.0)]]
    >>> stage_table(recs)["warm"][0]["heldout_loss"]
    (2.0, 1.0)
    """
    out: dict[str, list[dict[str, Any]]] = {}
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    for m in methods:
        rows = []
        for stage in sorted({int(r["stage"]) for r in records if r["method"] == m}):
            rs = [r for r in records if r["method"] == m and r["stage"] == stage]
            rows.append({"stage": stage, "train_bytes": rs[0]["train_bytes"], "n": len(rs),
                         **{k: _mean_std([float(r[k]) for r in rs]) for k in ("heldout_loss", "heldout_ppl",
                                                                                "train_loss")}})
        out[m] = rows
    return out


def summary_markdown(records: Sequence[dict[str, Any]]) -> str:
    """The tables and verdicts of ``summary.md``: held-out loss per stage, the last stage, DASH against each.

    Examples
    --------
    >>> recs = [{"seed": s, "method": m, "stage": 1, "heldout_loss": v, "heldout_ppl": 2.0, "train_loss": 1.0,
    ...          "train_bytes": 8} for s in (0, 1) for m, v in (("warm", 1.0), ("dash", 0.9 + s / 100))]
    >>> print(summary_markdown(recs).splitlines()[-1])
    - DASH − Warm: −0.095 [−0.159, −0.031] nats/byte, DASH lower (better) (2 seeds)
    """
    table = stage_table(records)
    stages = sorted({int(r["stage"]) for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    lines = ["## Held-out loss (nats per byte) after each stage", "",
             "| Method | " + " | ".join(f"stage {s}" for s in stages) + " |", "|---|" + "---|" * len(stages)]
    for m, rows in table.items():
        cells = [f"{row['heldout_loss'][0]:.4f} ± {row['heldout_loss'][1]:.4f}" for row in rows]
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± std over seeds {', '.join(map(str, seeds))} (std with ddof=0).", "",
              "## The last stage", "",
              "| Method | Held-out loss (nats/byte) | Perplexity | Bits per byte | Train loss, last epoch |",
              "|---|---|---|---|---|"]
    for m, rows in table.items():
        row = rows[-1]
        (loss, sd), (ppl, psd), (tr, tsd) = row["heldout_loss"], row["heldout_ppl"], row["train_loss"]
        lines.append(f"| {LABELS.get(m, m)} | {loss:.4f} ± {sd:.4f} | {ppl:.3f} ± {psd:.3f} | "
                     f"{loss / math.log(2):.4f} | {tr:.4f} ± {tsd:.4f} |")
    comparisons = compare_last(records)
    if comparisons:
        lines += ["", "## DASH against each method at the last stage", "",
                  f"Held-out loss of DASH minus the other method's, paired by seed, mean with its {100 * LEVEL:.0f}% "
                  "t interval over seeds. Below 0: DASH predicts the held-out text better. An interval that contains "
                  "0 is not distinguishable.", ""]
        lines += [f"- {c.line()}" for c in comparisons]
    warm_cold = compare_last(records, "warm", ["cold"])
    if warm_cold:
        lines += ["", "The warm-start gap, for context:", "", f"- {warm_cold[0].line()}"]
    return "\n".join(lines) + "\n"

