"""Every script in examples/ runs to the end at a tiny size (``--tiny``), as a subprocess.

``ddp.py`` runs under ``torchrun --nproc_per_node=2`` with the gloo backend on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
EXTRA_RUNS = {"amp.py": [["--sam"]]}  # scripts with a second mode worth running too
TORCHRUN = {"ddp.py"}


def _runs() -> list[pytest.ParameterSet]:
    runs = []
    for path in EXAMPLES:
        for extra in [[], *EXTRA_RUNS.get(path.name, [])]:
            runs.append(pytest.param(path, extra, id=" ".join([path.name, *extra])))
    return runs


def test_every_example_is_covered() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "train_loop.py", "amp.py", "ddp.py"} <= names


@pytest.mark.parametrize(("path", "extra"), _runs())
def test_example_runs(path: Path, extra: list[str]) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, as in CI (ddp.py then uses gloo)
    env["MPLBACKEND"] = "Agg"
    if path.name in TORCHRUN:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(path)]
    else:
        cmd = [sys.executable, str(path)]
    proc = subprocess.run(
        [*cmd, "--tiny", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    if path.name in TORCHRUN:
        assert "replicas identical: True" in proc.stdout
