"""``scripts/gpu-check`` runs end to end on CPU (``--dry-run``), so the GPU command works before a GPU is seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"
sys.path.insert(0, str(ROOT))

from benchmarks import publish  # noqa: E402
from benchmarks.results import Run  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    return out, done


def test_dry_run_runs_every_step(dry_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert [s["step"] for s in status] == ["cuda-tests", "benchmarks", "cifar", "harness"]
    assert [s["state"] for s in status] == ["not run (no CUDA)", "ok", "ok", "ok"]
    tests = status[0]
    assert tests["tests"] >= 20 and tests["skipped"] == tests["tests"]  # collected, every one CUDA-only
    assert "DRY RUN" in (out / "summary.md").read_text()
    for name in ("cuda-tests", "benchmarks", "cifar", "harness"):
        assert (out / "logs" / f"{name}.log").read_text().startswith("$ ")


def test_dry_run_results_hold_every_figure_and_say_what_was_not_run(
    dry_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = dry_run
    run = Run.load(out)
    assert run.machine["dry_run"] is True and run.machine["device"] == "cpu" and "commit" in run.machine
    sections = {r.section for r in run.results}
    assert {"check", "gather", "memory", "shrink", "step", "scaling", "tol", "gpu", "cifar", "harness"} <= sections
    for key in (
        "cifar/ours_s",
        "cifar/authors_s",
        "cifar/floor_mib",
        "harness/dash/projected_h_per_epoch",
        "gather/resnet18/ratio",
        "step/mlp/adam/ratio",
        "shrink/resnet18/grouped",
        "tol/0.1/ratio",
    ):
        run.get(key)
    assert "not run" in run.get("gpu/not_run").note and "dry run" in run.get("gpu/dry_run").note
    assert (out / "results.csv").read_text().splitlines()[0].startswith("section,name,value")


def test_a_dry_run_cannot_be_published(dry_run: tuple[Path, subprocess.CompletedProcess[str]], monkeypatch) -> None:
    out, _ = dry_run
    monkeypatch.setattr(publish, "GPU", out)
    with pytest.raises(ValueError, match="dry run"):
        publish.gpu_table("rst")
    monkeypatch.setattr(publish, "GPU", out / "absent")
    assert "not yet taken" in publish.gpu_table("md")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_a_real_run_is_refused_with_the_fix(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "o")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "--dry-run" in done.stderr
    assert not (tmp_path / "o").exists()
