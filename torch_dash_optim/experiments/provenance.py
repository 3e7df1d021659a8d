"""Where a results folder came from: the command, the torch build, the code's commit, the machine.

``dash-warmstart`` appends one entry per invocation to ``OUT/provenance.json``; the published
tables name the build and machine from it. The numbers of a run are bit-reproducible on one
torch build and machine (and the same ``--threads``); another build or CPU may change the last
digits of a loss and, through them, a step count or an accuracy.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .store import atomic_write

__all__ = ["add_invocation", "cpu_name", "git_commit", "read_provenance"]


def cpu_name() -> str:
    """Return the CPU's model name (from ``/proc/cpuinfo`` on Linux), or ``platform.processor()``.

    Examples
    --------
    >>> isinstance(cpu_name(), str)
    True
    """
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> dict[str, Any]:
    """Return the package's git commit and whether its tree had uncommitted changes.

    ``{"commit": None, "dirty": None}`` when the package is not in a git checkout.

    Examples
    --------
    >>> sorted(git_commit())
    ['commit', 'dirty']
    """
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def read_provenance(out: Path) -> list[dict[str, Any]]:
    """Return the invocations recorded in ``OUT/provenance.json`` (oldest first; [] if none).

    Parameters
    ----------
    out:
        The run's output folder (``--out``).

    Returns
    -------
    list of dict
        One record per invocation, oldest first; empty if the file does not exist.

    Examples
    --------
    >>> import tempfile
    >>> read_provenance(Path(tempfile.mkdtemp()))
    []
    """
    path = Path(out) / "provenance.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["invocations"])


def add_invocation(
    out: Path, command: str, jobs: int, threads: int, wall_seconds: float, cpu_seconds: float
) -> dict[str, Any]:
    """Append this invocation (command, versions, commit, machine, times) to ``OUT/provenance.json``.

    Parameters
    ----------
    out:
        The results folder.
    command:
        The command line as typed.
    jobs, threads:
        Worker processes and torch threads per process.
    wall_seconds:
        Wall time of this invocation.
    cpu_seconds:
        CPU time of all the folder's experiments (resumed ones included), summed over processes.

    Returns
    -------
    dict
        The entry written.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> entry = add_invocation(out, "dash-warmstart", 1, 1, 2.0, 1.5)
    >>> read_provenance(out)[0]["torch"] == torch.__version__
    True
    """
    entry = {
        "command": command,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        **git_commit(),
        "jobs": jobs,
        "threads": threads,
        "wall_seconds": round(wall_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "executable": Path(sys.executable).name,
    }
    entries = [*read_provenance(out), entry]
    atomic_write(Path(out) / "provenance.json", json.dumps({"invocations": entries}, indent=1) + "\n")
    return entry
