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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import memory  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.bench_gather import gather_methods  # noqa: E402
from benchmarks.models import make_case  # noqa: E402
from benchmarks.naive import naive_dash  # noqa: E402
from benchmarks.results import Result  # noqa: E402
from benchmarks.runner import SECTIONS  # noqa: E402
from torch_dash_optim import DASHWrapper  # noqa: E402

EXPECTED = {"gather", "memory", "shrink", "step", "scaling", "gpu"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    try:
        with redirect_stdout(io.StringIO()):
            assert (
                main(["--quick", "--no-rss", "--json", str(out / "r.json"), "--markdown", str(out / "r.md")])
                == 0
            )
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
    assert set(SECTIONS) - {"gpu"} <= {r["section"] for r in data["results"]}


def test_ratios_and_memory_figures_are_positive(quick_run) -> None:
    data, _ = quick_run
    for r in data["results"]:
        if r["unit"] in ("x", "s", "us/Mparam", "ms"):
            assert r["value"] > 0, r
    naive = [
        r
        for r in data["results"]
        if r["section"] == "memory" and r["name"].endswith("naive extra peak over floor")
    ]
    assert len(naive) == 3 and all(r["value"] > 0 for r in naive)  # the anchor's copy shows up in every case


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
