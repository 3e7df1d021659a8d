"""Smoke run of the benchmark code (benchmarks/), so that it cannot rot.

Tiny models and two repeats: the numbers mean nothing and nothing about time is asserted; the
test checks that every section runs and yields well-formed results, JSON and markdown.
"""

from __future__ import annotations

import doctest
import importlib
import io
import json
import math
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import memory, publish  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.bench_gather import gather_methods  # noqa: E402
from benchmarks.models import make_case  # noqa: E402
from benchmarks.naive import naive_dash  # noqa: E402
from benchmarks.results import Result, Run  # noqa: E402
from benchmarks.runner import DEFAULT_SECTIONS  # noqa: E402
from torch_dash_optim import DASHWrapper  # noqa: E402

EXPECTED = {"gather", "memory", "shrink", "step", "scaling", "tol", "gpu"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    try:
        with redirect_stdout(io.StringIO()):
            assert main(["--quick", "--no-rss", "--json", str(out / "r.json"), "--markdown", str(out / "r.md")]) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text()


def test_quick_run_covers_every_section_with_well_formed_results(quick_run) -> None:
    data, md = quick_run
    assert data["command"].startswith("python -m benchmarks --quick")
    assert {"cpu", "torch", "torch_threads"} <= set(data["machine"])
    assert {r["section"] for r in data["results"]} == EXPECTED
    for r in data["results"]:
        assert set(r) == set(Result.__dataclass_fields__)
        assert isinstance(r["value"], float) and isinstance(r["name"], str) and r["name"]
        assert math.isfinite(r["value"]), r
        if r["goal"] and r["section"] != "gpu":
            assert isinstance(r["holds"], bool), r
        else:
            assert r["holds"] is None or r["goal"], r
    assert md.count("\n| ") == len(data["results"]) + 1  # header + one row per result
    assert set(DEFAULT_SECTIONS) - {"gpu"} <= {r["section"] for r in data["results"]}


def _goal_holds(goal: str, value: float) -> bool:
    op, _, bound = goal.partition(" ")
    return {"<=": value <= float(bound), "<": value < float(bound), ">=": value >= float(bound)}[op]


def test_goal_verdicts_follow_the_figures_and_memory_is_deterministic(quick_run) -> None:
    # No figure's size is asserted (timings of a smoke run on a shared machine mean nothing);
    # what is checked is the bookkeeping: every verdict is the comparison its goal states.
    data, _ = quick_run
    judged = [r for r in data["results"] if r["holds"] is not None]
    assert judged
    for r in judged:
        assert r["holds"] == _goal_holds(r["goal"], r["value"]), r
    # The anchor's deep copy of the model shows up in the allocator's peak in every case
    # (torch's allocator replayed from the profiler: a count of bytes, not a timing).
    naive = [
        r for r in data["results"] if r["section"] == "memory" and r["name"].endswith("naive extra peak over floor")
    ]
    assert len(naive) == 3 and all(r["value"] > 0 for r in naive)


def test_naive_anchor_matches_the_wrapper() -> None:
    case = make_case("resnet18", quick=True)
    model = case.model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = DASHWrapper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, loss_fn=case.loss_fn)
    opt.on_new_data(case.loader)
    ours = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    naive_dash(model, case.loss_fn, case.loader)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ours[k], rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(ours[k], start[k]) for k in start)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_rss_child_reports_every_method(capsys) -> None:
    threads = torch.get_num_threads()
    try:
        memory._child(["mlp", "floor", "ours", "naive", "--quick"])
    finally:
        torch.set_num_threads(threads)
    growth = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(growth) == {"floor", "ours", "naive"} and all(isinstance(v, int) for v in growth.values())
    methods, setup = gather_methods(make_case("mlp", quick=True))
    assert set(methods) == set(growth)


@pytest.mark.parametrize(
    "name",
    [
        "config",
        "models",
        "naive",
        "timing",
        "memory",
        "results",
        "bench_gather",
        "bench_scaling",
        "bench_gpu",
        "bench_tol",
        "bench_cifar",
        "bench_harness",
        "bench_diagnostics",
        "bench_import",
        "runner",
    ],
)
def test_benchmark_docstring_examples_run(name: str) -> None:
    threads = torch.get_num_threads()
    try:
        result = doctest.testmod(importlib.import_module(f"benchmarks.{name}"), optionflags=doctest.ELLIPSIS)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0


def test_out_folder_holds_json_csv_and_markdown_with_provenance(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        with redirect_stdout(io.StringIO()):
            assert main(["--quick", "--sections", "step", "--out", str(tmp_path / "res")]) == 0
    finally:
        torch.set_num_threads(threads)
    run = Run.load(tmp_path / "res")
    assert run.command == f"python -m benchmarks --quick --sections step --out {tmp_path / 'res'}"
    assert {"commit", "torch", "cpu"} <= set(run.machine)
    rows = (tmp_path / "res" / "results.csv").read_text().splitlines()
    assert len(rows) == len(run.results) + 1 and rows[0].startswith("section,name,value,unit,goal,holds")
    assert run.get("step/mlp/sgd/ratio").goal == "<= 1.02"
    with pytest.raises(KeyError, match="no result with key 'nope'; keys: step/mlp/sgd/bare_ms"):
        run.get("nope")


def test_every_renderer_works_on_a_quick_run(quick_run, tmp_path: Path, monkeypatch) -> None:
    data, _ = quick_run
    (tmp_path / "results.json").write_text(json.dumps(data))
    monkeypatch.setattr(publish, "CPU", tmp_path)
    monkeypatch.setattr(publish, "GPU", tmp_path / "absent")
    for fmt in ("md", "rst"):
        for name in (
            "performance_table",
            "summary_table",
            "all_results",
            "tol_table",
            "figure_caption",
            "gpu_table",
            "gpu_line",
        ):
            text = getattr(publish, name)(fmt)
            assert text.strip() and "{" not in text, (name, fmt)
            if fmt == "md":
                assert "``" not in text and "list-table" not in text, name  # no reST in Markdown
    table = publish.performance_table("md")
    ratio = data["results"][[r.get("key") for r in data["results"]].index("gather/mlp/ratio")]["value"]
    assert f"| {ratio:.2f} |" in table.splitlines()[2]  # the figure is the run's, not typed
    assert "not yet taken" in publish.gpu_line("md")


def test_the_committed_figure_was_drawn_from_the_committed_results() -> None:
    from PIL import Image

    from benchmarks.plot import FIGURE

    assert Image.open(FIGURE).text["Source"] == publish.fingerprint(), (
        "docs/figures/benchmarks-cpu.png is stale; run: python -m benchmarks.plot"
    )


def test_the_figure_draws_from_a_run(quick_run, tmp_path: Path) -> None:
    from PIL import Image

    from benchmarks.plot import draw

    data, _ = quick_run
    (tmp_path / "results.json").write_text(json.dumps(data))
    path = draw(tmp_path, tmp_path / "f.png")
    image = Image.open(path)
    assert image.text["Source"] == publish.fingerprint(tmp_path) and image.size[0] >= 400
