"""The published text run (a causal transformer on the standard library's source): setting, tables, verdicts, cost.

Each renderer is named by a generated block's marker in ``docs/text.rst`` (see
``scripts/published.py``), e.g. ``.. generated: scripts.render.text:table rst text-stdlib``, and
is called as ``renderer(fmt, folder)``: ``fmt`` is ``"md"`` or ``"rst"``, ``folder`` a results
folder under ``results/`` written by :data:`COMMANDS`. The numbers come from the folder's
``records.json`` (the comparisons through :func:`torch_dash_optim.experiments.text.compare_last`,
whose intervals are :mod:`torch_dash_optim.experiments.stats`'), the costs from its
``provenance.json``. ``python -m scripts.render.text`` redraws ``docs/_static/text-results.png``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from torch_dash_optim.experiments.provenance import read_provenance
from torch_dash_optim.experiments.stats import LEVEL
from torch_dash_optim.experiments.text import LABELS, CausalLM, compare_last, figure_title, plot_text, stage_table

from .format import RESULTS, ROOT, bullets, check_fmt, code, duration, join_words, tabulate

__all__ = [
    "COMMANDS",
    "FIGURE",
    "cost",
    "draw_figure",
    "factors",
    "load",
    "main",
    "sentence",
    "setting",
    "stages",
    "table",
    "verdicts",
]

#: Each published text folder and the one command that regenerates it (from the repository root).
COMMANDS: dict[str, str] = {"text-stdlib": "python -m torch_dash_optim.experiments.text --out results/text-stdlib"}
#: The docs figure and the folder it is drawn from.
FIGURE: tuple[Path, str] = (ROOT / "docs" / "_static" / "text-results.png", "text-stdlib")


def load(name: str) -> dict[str, Any]:
    """A text folder's ``records.json`` (settings, corpus, records) plus its ``provenance`` entries.

    Examples
    --------
    >>> load("text-stdlib")["corpus"]["files"] > 0
    True
    """
    folder = RESULTS / name
    path = folder / "records.json"
    if not path.exists():
        command = COMMANDS.get(name, f"python -m torch_dash_optim.experiments.text --out results/{name}")
        raise FileNotFoundError(f"{path} is missing; regenerate it with: {command}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"] = read_provenance(folder)
    return data


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _seeds(data: dict[str, Any]) -> str:
    return ", ".join(map(str, sorted({int(r["seed"]) for r in data["records"]})))


def setting(fmt: str, folder: str) -> str:
    """What the run trained, on which text, with which budget: one paragraph from ``records.json``.

    Examples
    --------
    >>> setting("md", "text-stdlib").startswith("The text is Python ")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    c, corpus = data["config"], data["corpus"]
    params = _parameters(c)
    return (
        f"The text is Python {corpus['python']}'s standard library: its {corpus['files']} top-level ``.py`` files, "
        f"{corpus['bytes'] / 1e6:.1f} MB (SHA-256 {code(corpus['sha256'][:16], fmt)}…), read as bytes. Each seed draws "
        f"{c['heldout_bytes'] // 1024} KiB of held-out text from whole files and {c['train_bytes'] // 1024} KiB of "
        f"training text from other files (one segment of at most {c['segment_bytes'] // 1024} KiB per file), which "
        f"arrives in {c['chunks']} chunks. The model is a byte-level causal transformer of {params:,} parameters "
        f"({c['layers']} pre-norm blocks, width {c['width']}, {c['heads']} heads, context {c['context']} bytes). At "
        f"every stage each method trains on all the text so far for {c['epochs']} epochs (batches of "
        f"{c['batch_size']} windows), with a fresh AdamW (peak learning rate {c['lr']:g}, weight decay "
        f"{c['weight_decay']:g}, {100 * c['warmup']:g}% linear warm-up, cosine decay to {100 * c['lr_final']:g}% of "
        f"the peak, gradients clipped at norm {c['clip']:g}); then its held-out loss is measured. Seeds "
        f"{_seeds(data)}; each seed draws its own text, initial model and batch order, shared by its methods."
    ).replace("``.py``", code(".py", fmt))


def _parameters(c: dict[str, Any]) -> int:
    """The model's parameter count, from a model built with the run's settings."""
    model = CausalLM(256, c["context"], c["width"], c["heads"], c["layers"])
    return sum(p.numel() for p in model.parameters())


def table(fmt: str, folder: str) -> str:
    """Held-out loss, perplexity and bits per byte per method at the last stage, mean ± std over seeds.

    Examples
    --------
    >>> print(table("md", "text-stdlib").splitlines()[0])
    | Method | Held-out loss (nats/byte) | Perplexity | Bits per byte | Train loss, last epoch |
    """
    data = load(folder)
    rows = []
    for m, per_stage in stage_table(data["records"]).items():
        row = per_stage[-1]
        (loss, sd), (ppl, psd), (tr, tsd) = row["heldout_loss"], row["heldout_ppl"], row["train_loss"]
        label = f"**{LABELS.get(m, m)}**" if m == "dash" else LABELS.get(m, m)
        rows.append([label, f"{loss:.3f} ± {sd:.3f}", f"{ppl:.2f} ± {psd:.2f}", f"{loss / math.log(2):.3f}",
                     f"{tr:.3f} ± {tsd:.3f}"])
    header = ["Method", "Held-out loss (nats/byte)", "Perplexity", "Bits per byte", "Train loss, last epoch"]
    stages = data["config"]["chunks"]
    note = (
        f"At the last stage (all {stages} chunks). Mean ± std over seeds {_seeds(data)} (std with ddof=0); bits per "
        "byte from the mean loss. Lower is better. The train loss is the mean over the last epoch's batches."
    )
    caption = f"A transformer on the standard library's source, stage {stages}: {code('results/' + folder, fmt)}"
    return tabulate(header, rows, fmt, caption) + "\n\n" + note


def stages(fmt: str, folder: str) -> str:
    """Held-out loss per method after every stage, mean ± std over seeds.

    Examples
    --------
    >>> stages("md", "text-stdlib").splitlines()[0].startswith("| Method | stage 1 (")
    True
    """
    data = load(folder)
    per = stage_table(data["records"])
    first = next(iter(per.values()))
    header = ["Method"] + [f"stage {r['stage']} ({r['train_bytes'] // 1024} KiB)" for r in first]
    rows = [[LABELS.get(m, m)] + [f"{r['heldout_loss'][0]:.3f} ± {r['heldout_loss'][1]:.3f}" for r in rs]
            for m, rs in per.items()]
    note = (
        "Held-out loss (nats per byte) after each stage, mean ± std over seeds; the stage's training text in "
        "parentheses. Stage 1 is the same for every method: one initial model per seed, trained on the first chunk."
    )
    return tabulate(header, rows, fmt, "Held-out loss after each stage") + "\n\n" + note


def verdicts(fmt: str, folder: str) -> str:
    """DASH minus each method at the last stage, paired by seed, with 95% t intervals and verdicts; then warm − cold.

    Examples
    --------
    >>> verdicts("md", "text-stdlib").splitlines()[0].startswith("- DASH − Cold (random init): ")
    True
    """
    check_fmt(fmt)
    records = load(folder)["records"]
    lines = [c.line() for c in compare_last(records)]
    warm = compare_last(records, "warm", ["cold", "sp"])
    gap = [f"For context, the warm start against the others: {'; '.join(c.line() for c in warm)}."] if warm else []
    note = (
        f"Held-out loss of the first method minus the second's at the last stage, in nats per byte, paired by seed: "
        f"the mean with its {100 * LEVEL:.0f}% t interval over seeds. Below 0, the first predicts the held-out text "
        "better; an interval that contains 0 is not distinguishable."
    )
    return "\n\n".join([bullets(lines, fmt), *gap, note])


def sentence(fmt: str, folder: str) -> str:
    """What the paired intervals support at the last stage, in one or two sentences, and no more.

    Examples
    --------
    >>> sentence("md", "text-stdlib").startswith("At the last stage (")
    True
    """
    check_fmt(fmt)
    records = load(folder)["records"]
    comparisons = compare_last(records)
    if not comparisons:
        return f"DASH did not run beside another method in {code('results/' + folder, fmt)}."
    groups: dict[str, list[str]] = {"lower": [], "higher": [], "same": []}
    for c in comparisons:
        verdict = c.verdict()
        key = {"not distinguishable": "same", "one seed: no interval": "no"}.get(verdict) or verdict.split()[1]
        groups.setdefault(key, []).append(f"{LABELS.get(c.other, c.other)} ({_interval(c)})")
    parts = []
    if groups["lower"]:
        parts.append(f"**lower** (better) than that of {join_words(groups['lower'])}")
    if groups["higher"]:
        parts.append(f"**higher** (worse) than that of {join_words(groups['higher'])}")
    if groups["same"]:
        parts.append(f"not distinguishable from that of {join_words(groups['same'])}")
    if groups.get("no"):
        parts.append(f"with one seed, not compared with that of {join_words(groups['no'])}")
    n = len(comparisons[0].seeds)
    text = (f"At the last stage ({n} seeds; DASH minus each method, paired by seed, mean with its "
            f"{100 * LEVEL:.0f}% t interval, in nats per byte), DASH's held-out loss is " + "; ".join(parts) + ".")
    warm = []
    for c in compare_last(records, "warm", ["cold", "sp"]):
        verdict = {"Warm lower (better)": "lower than", "Warm higher (worse)": "higher than"}.get(c.verdict())
        warm.append(f"{verdict or 'not distinguishable from'} that of {LABELS.get(c.other, c.other)} ({_interval(c)})")
    if warm:
        text += f" The warm start's is {join_words(warm)}."
    return text


def _interval(c: Any) -> str:
    iv = c.interval
    return _signed(iv.mean) + ("" if iv.low is None else f" [{_signed(iv.low)}, {_signed(iv.high)}]")


def factors(fmt: str, folder: str) -> str:
    """DASH's factors at each new chunk: mean factor and share of units at the floor, over seeds and stages.

    Examples
    --------
    >>> factors("md", "text-stdlib").startswith("DASH's factors at stages 2 to ")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    rs = [r for r in data["records"] if r["method"] == "dash" and r.get("dash_mean_factor") is not None]
    if not rs:
        return "DASH did not shrink in this folder (one stage, or no DASH run)."
    mean = [r["dash_mean_factor"] for r in rs]
    floor = [100 * r["dash_at_floor"] for r in rs]
    last = max(r["stage"] for r in rs)
    return (
        f"DASH's factors at stages 2 to {last} (every seed): the mean factor over its {rs[0]['dash_units']:,} units "
        f"(Linear rows and bias vectors) was {sum(mean) / len(mean):.2f} (from {min(mean):.2f} to {max(mean):.2f}), "
        f"and {sum(floor) / len(floor):.0f}% of the units were at the floor λ = {data['config']['dash_lambd']:g} "
        f"(from {min(floor):.0f}% to {max(floor):.0f}%)."
    )


def cost(fmt: str, folder: str) -> str:
    """The command, build, machine and what the run cost (CPU and wall time), from ``provenance.json``.

    Examples
    --------
    >>> cost("md", "text-stdlib").startswith("- `python -m torch_dash_optim.experiments.text --out")
    True
    """
    check_fmt(fmt)
    data = load(folder)
    entries = data["provenance"]
    command = COMMANDS.get(folder) or (entries[-1]["command"] if entries else "?")
    if not entries:
        return bullets([f"{code(command, fmt)}: no provenance.json, so no recorded time."], fmt)
    last = entries[-1]
    commit = (last.get("commit") or "unknown")[:10] + (" with uncommitted changes" if last.get("dirty") else "")
    workers = f"{last.get('jobs')} worker{'s' if last.get('jobs') != 1 else ''}"
    return bullets([
        f"{code(command, fmt)}: torch {last.get('torch', '?')}, Python {last.get('python', '?')}, code at {commit}; "
        f"{duration(float(last.get('cpu_seconds') or 0))} of CPU time in the runs, "
        f"{duration(float(last.get('wall_seconds') or 0))} of wall time with {workers} of "
        f"{last.get('threads')} thread each on {last.get('cpu', '?')} ({last.get('cpu_count', '?')} cores). The wall "
        "time depends on what else the machine ran; the CPU time much less."
    ], fmt)


def draw_figure(path: Path | None = None) -> Path:
    """Redraw the docs figure (:data:`FIGURE`) from its folder's records; return the path written.

    Examples
    --------
    >>> import tempfile
    >>> draw_figure(Path(tempfile.mkdtemp()) / "t.png").name
    't.png'
    """
    target, name = FIGURE
    data = load(name)
    seeds = len({r["seed"] for r in data["records"]})
    return plot_text(data["records"], path or target, title=figure_title(data["corpus"]["python"],
                                                                         data["config"]["chunks"], seeds))


def main() -> int:
    """``python -m scripts.render.text``: redraw ``docs/_static/text-results.png``."""
    print(draw_figure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
