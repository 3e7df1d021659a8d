"""Renderers of the published benchmark figures (README "Performance", ``docs/benchmarks.rst``).

Every function here is named in a generated block (see ``scripts/published.py``) and renders
it from the committed results folders, never from a new run:

- ``results/benchmarks-cpu/``: ``python -m benchmarks --out results/benchmarks-cpu``;
- ``results/benchmarks-gpu/``: ``scripts/gpu-check results/benchmarks-gpu`` on a CUDA machine
  (absent until such a run is committed; the blocks then say the figures are not yet taken).

Each renderer takes ``fmt`` (``"md"`` or ``"rst"``) and returns the block's text; the tables
and inline code are formatted by ``scripts/render/format.py``, as every other generated block.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from scripts.render.format import code, tabulate

from .results import Result, Run

__all__ = [
    "CPU",
    "GPU",
    "all_results",
    "cpu_run",
    "figure_caption",
    "fingerprint",
    "gpu_line",
    "gpu_table",
    "performance_table",
    "provenance",
    "summary_table",
    "tol_table",
]

ROOT = Path(__file__).resolve().parent.parent
#: The committed CPU results folder.
CPU = ROOT / "results" / "benchmarks-cpu"
#: The committed GPU results folder (written by ``scripts/gpu-check``).
GPU = ROOT / "results" / "benchmarks-gpu"
CPU_COMMAND = "python -m benchmarks --out results/benchmarks-cpu"
GPU_COMMAND = "scripts/gpu-check results/benchmarks-gpu"
CASE_NAMES = {"mlp": "MLP", "resnet18": "ResNet-18, CIFAR", "transformer": "Transformer"}


def cpu_run(folder: Path | None = None) -> Run:
    """The committed CPU run (or the run in ``folder``)."""
    return Run.load(folder or CPU)


def fingerprint(folder: Path | None = None) -> str:
    """SHA-256 (16 hex digits) of a folder's ``results.json``: the figure records which data it drew."""
    return hashlib.sha256(((folder or CPU) / "results.json").read_bytes()).hexdigest()[:16]


def _x(value: float, digits: int = 2) -> str:
    """A figure with ``digits`` decimals."""
    return f"{value:.{digits}f}"


def _verdict(r: Result) -> str:
    """Whether a figure meets its goal: ``yes``, a bold ``no``, or nothing without a goal."""
    if r.holds is None:
        return ""
    return "yes" if r.holds else "**no**"


def provenance(fmt: str, run: Run | None = None) -> str:
    """One line: machine, torch, threads, commit and the command of the committed CPU run."""
    run = run or cpu_run()
    m = run.machine
    return (
        f"{m['cpu']}, {m['cpu_count']} cores shared with other jobs, torch {m['torch']} on "
        f"{m['torch_threads']} thread(s), Python {m['python']}; commit {m.get('commit', 'unknown')}; "
        f"{_duration(run.seconds)}. Regenerate: {code(CPU_COMMAND, fmt)}, then "
        f"{code('python scripts/published.py --write', fmt)}."
    )


def _duration(seconds: float) -> str:
    """How long the run took: seconds under two minutes, else whole minutes."""
    return f"the run took {seconds:.0f} s" if seconds < 120 else f"the run took {seconds / 60:.0f} min"


def _case_label(run: Run, case: str) -> str:
    name = run.get(f"gather/{case}/ratio").name
    inside = name[name.index("(") + 1 : name.index(")")]  # "1.86M params, 32 batches"
    return f"{CASE_NAMES[case]}: {inside}"


def performance_table(fmt: str) -> str:
    """The README table: time and memory of ``on_new_data`` against the floor and the authors' gathering."""
    run = cpu_run()
    cases = [c for c in CASE_NAMES if any(r.key == f"gather/{c}/ratio" for r in run.results)]
    header = ["", *(_case_label(run, c) for c in cases)]
    rows = [
        [f"{code('on_new_data', fmt)} time / plain forward+backward (goal <= 1.05)"]
        + [_x(run.get(f"gather/{c}/ratio").value) for c in cases],
        ["authors' gathering time / " + code("on_new_data", fmt)]
        + [_x(run.get(f"gather/{c}/naive_over_ours").value) for c in cases],
        [f"extra peak memory over forward+backward, {code('on_new_data', fmt)}"]
        + [f"{run.get(f'memory/{c}/ours').value:.2f}x" for c in cases],
        ["extra peak memory over forward+backward, authors' gathering"]
        + [f"{run.get(f'memory/{c}/naive').value:.2f}x" for c in cases],
    ]
    step = []
    for c in cases:
        try:
            step.append(" / ".join(_x(run.get(f"step/{c}/{o}/ratio").value, 3) for o in ("sgd", "adam")))
        except KeyError:
            step.append("")
    if any(step):
        rows.append([f"{code('step()', fmt)} wrapped / bare, SGD / Adam (goal <= 1.02)", *step])
    text = tabulate(header, rows, fmt)
    shrink = run.get("shrink/resnet18/grouped")
    speed = run.get("shrink/resnet18/loop_over_grouped")
    tols = _tols(run)
    chosen = "0.0001" if "0.0001" in tols else tols[-1]
    tol = run.get(f"tol/{chosen}/ratio")
    tol_diff = run.get(f"tol/{chosen}/max_factor_diff")
    exact = run.get("tol/exact_s")
    chunks = tol.note.split(" of ", 1)[1].split(" ", 1)[0]  # "24 of 50 batches skipped ..."
    model = exact.name.split(", ", 1)[1].split(" (")[0]  # "exact on_new_data, ResNet-18 width 16 (...)"
    notes = (
        "Memory in multiples of the parameter bytes. The shrink itself (factors and in-place multiply) takes "
        f"{shrink.value / 1000:.1f} ms per million parameters of ResNet-18; a per-tensor loop takes {speed.value:.1f}x "
        f"as long. With {code(f'tol={float(chosen):g}', fmt)}, the gradient pass over {chunks} chunks "
        f"(one batch per chunk, the last experiment of the paper's protocol; {model}) "
        f"takes {tol.value:.2f}x the exact pass's time, and no factor moves by more than {tol_diff.value:.1g}. "
        f"Measured on {provenance(fmt, run)}"
    )
    return text + "\n\n" + notes


def summary_table(fmt: str) -> str:
    """One row per goal: the figures measured against it (one per model or optimizer) and whether all hold."""
    run = cpu_run()
    short = {
        "mlp": "MLP",
        "resnet18": "ResNet-18",
        "transformer": "Transformer",
        "gpt100m": "99M Linear stack",
        "sgd": "SGD",
        "adam": "Adam",
    }
    ond, step = code("on_new_data", fmt), code("step()", fmt)
    groups = [
        (f"time of {ond} / plain forward+backward", "gather/", "/ratio", "{:.2f}"),
        (f"extra peak memory of {ond}, in parameter bytes", "memory/", "/ours", "{:.2f}x"),
        ("shrink time / forward+backward over the benchmark's loader", "shrink/", "/share_of_floor", "{:.3f}"),
        (f"{step} wrapped / bare", "step/", "/ratio", "{:.3f}"),
        ("time linear in data size and in parameter count (R2)", "scaling/", "/r2", "{:.3f}"),
        ("host-device syncs in the gathering loop (GPU)", "gpu/", "/loop", "{:.0f}"),
    ]
    rows = []
    for label, prefix, suffix, form in groups:
        found = [r for r in run.results if r.key.startswith(prefix) and r.key.endswith(suffix) and r.goal]
        if not found:
            if prefix == "gpu/":
                rows.append([label, "0", "not run: no GPU in this run", ""])
            continue
        cells = []
        for r in found:
            who = r.key[len(prefix) : -len(suffix)]
            name = " ".join(short.get(part, part) for part in who.split("/")) if prefix != "scaling/" else who
            cells.append(f"{name} {form.format(r.value)}")
        holds = all(bool(r.holds) for r in found)
        goal = found[0].goal
        rows.append([label, goal, ", ".join(cells), "yes" if holds else "**no**"])
    return tabulate(["goal", "target", "measured", "holds"], rows, fmt, widths=(34, 10, 46, 8))


def all_results(fmt: str) -> str:
    """Every figure of the committed CPU run."""
    run = cpu_run()
    return run.markdown().split("\n\n", 1)[1].strip() if fmt == "md" else run.rst().strip()


def tol_table(fmt: str) -> str:
    """``tol`` against exact on the protocol's last experiment (time, factor change, passes saved)."""
    run = cpu_run()
    exact = run.get("tol/exact_s")
    tols = _tols(run)
    rows = []
    for t in tols:
        diff = run.get(f"tol/{t}/max_factor_diff")
        rows.append(
            [
                code(f"tol={t}", fmt),
                f"{int(run.get(f'tol/{t}/skipped').value)}",
                _x(run.get(f"tol/{t}/ratio").value),
                f"{diff.value:.2g}",
                diff.note.split(" over ")[0].removeprefix("mean "),
                f"{run.get(f'tol/{t}/protocol_saving').value:.0%}",
            ]
        )
    setting = exact.name.removeprefix("exact on_new_data, ")
    text = tabulate(
        [
            "tol",
            "batches skipped",
            "time / exact",
            "largest factor change",
            "mean factor change",
            "passes saved, whole protocol",
        ],
        rows,
        fmt,
        widths=(12, 14, 12, 16, 16, 18),
    )
    return (
        f"{text}\n\n{setting}; exact pass {exact.value:.2f} s of CPU time ({exact.note}). "
        f"Measured on {provenance(fmt, run)}"
    )


def _tols(run: Run) -> list[str]:
    """The tolerances of a run's ``tol`` section, as written in the keys, largest first."""
    found = {r.key.split("/")[1] for r in run.results if r.key.startswith("tol/") and r.key != "tol/exact_s"}
    return sorted(found, key=float, reverse=True)


def figure_caption(fmt: str) -> str:
    """The caption of the summary figure, with the fingerprint of the data it was drawn from."""
    run = cpu_run()
    return (
        "Time of one gradient pass, as a multiple of a plain forward and backward pass over the same "
        f"data, for ours and the authors' gathering (CPU, torch {run.machine['torch']}). Drawn by "
        f"{code('python -m benchmarks.plot', fmt)} from results/benchmarks-cpu (data {fingerprint()})."
    )


def gpu_table(fmt: str) -> str:
    """The GPU figures of ``scripts/gpu-check``, or a line saying they are not yet taken."""
    if not (GPU / "results.json").exists():
        return (
            "GPU figures: **not yet taken** (no GPU was available to the project so far). "
            f"{code(GPU_COMMAND, fmt)} takes them in one run of under 8 minutes on one GPU."
        )
    run = Run.load(GPU)
    if run.machine.get("dry_run"):
        raise ValueError(f"{GPU} holds a dry run (scripts/gpu-check --dry-run): a dry run cannot be published")
    rows = [[r.name, f"{r.value:.3g}", r.unit, r.goal, _verdict(r), r.note] for r in run.results]
    m = run.machine
    head = f"{m.get('gpu', 'GPU')}, CUDA {m.get('cuda')}, torch {m['torch']}, commit {m.get('commit')}: "
    return (
        head
        + code(run.command, fmt)
        + "\n\n"
        + tabulate(["figure", "value", "unit", "goal", "holds", "note"], rows, fmt, widths=(40, 10, 10, 8, 6, 26))
    )


def gpu_line(fmt: str) -> str:
    """One README line on the GPU figures: how to take them, or the headline ones once taken."""
    how = f"{code(GPU_COMMAND, fmt)} takes every GPU figure in one run (under 8 minutes on one GPU)"
    if not (GPU / "results.json").exists():
        return f"GPU figures: not yet taken; {how}."
    run = Run.load(GPU)
    if run.machine.get("dry_run"):
        raise ValueError(f"{GPU} holds a dry run (scripts/gpu-check --dry-run): a dry run cannot be published")
    parts = []
    for key, label in (
        ("gather/resnet18/ratio", "ResNet-18 on_new_data / floor"),
        ("cifar/ours_s", "CIFAR-10-sized pass, ours (s)"),
        ("cifar/authors_s", "authors' (s)"),
        ("cifar/ours_mib", "ours peak MiB"),
        ("cifar/authors_mib", "authors' peak MiB"),
    ):
        try:
            parts.append(f"{label} {run.get(key).value:.3g}")
        except KeyError:
            continue
    return f"GPU ({run.machine.get('gpu', 'GPU')}): " + "; ".join(parts) + f". {how}."
