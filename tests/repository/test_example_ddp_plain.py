"""``python examples/ddp.py``, run plainly as the docs show, starts its own two gloo processes.

It ended in a ``ValueError`` about ``RANK`` (issue 25). ``tests/repository/test_examples.py`` runs
the same script under torchrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ddp_example_run_plainly_starts_two_processes_and_keeps_the_replicas_identical() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, as in CI
    proc = subprocess.run(
        [sys.executable, "examples/ddp.py", "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"examples/ddp.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "starting 2 processes on the gloo backend" in proc.stdout
    assert "torchrun --nproc_per_node=N examples/ddp.py" in proc.stdout
    assert proc.stdout.count("replicas identical: True") == 1  # printed by rank 0 only
    assert "Traceback" not in proc.stderr
