"""Where a results folder came from: the command, the torch build, the code's commit, the machine.

``dash-warmstart`` appends one entry per invocation to ``OUT/provenance.json``; the published
tables name the build and machine from it. The code is named by its git commit when it runs from
a clone, and as an installed package (name and version, no revision) when it does not
(:func:`git_commit`). The numbers of a run are bit-reproducible on one
torch build and machine (and the same ``--threads``); another build or CPU may change the last
digits of a loss and, through them, a step count or an accuracy.
"""

from __future__ import annotations

import importlib.metadata
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

_DISTRIBUTION = "torch-dash-optim"


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
    """Return the code revision of this package: its git commit and whether the tree had uncommitted changes.

    Git is asked about the folder that holds the package. When that folder is in no git work
    tree, or the work tree does not track the package (an installed wheel, in ``site-packages``),
    the code is an installed package, not a clone: there is no code revision to record, and
    ``installed`` names the package and its version instead.

    Returns
    -------
    dict
        In a clone: ``{"commit": <sha>, "dirty": <bool>}``. Not in a clone:
        ``{"commit": None, "dirty": None, "installed": "torch-dash-optim <version>"}``. When git
        cannot tell (no ``git`` command, or it fails otherwise): ``{"commit": None, "dirty": None}``.

    Examples
    --------
    >>> sorted(git_commit())[:2]
    ['commit', 'dirty']
    """
    here = Path(__file__).resolve().parent
    unknown: dict[str, Any] = {"commit": None, "dirty": None}
    inside = _git(here, "rev-parse", "--is-inside-work-tree")
    if inside is None or (inside.returncode != 0 and "not a git repository" not in inside.stderr):
        return unknown  # no git command, or a clone that git refuses to read ("dubious ownership")
    tracked = inside.returncode == 0 and _git(here, "ls-files", "--error-unmatch", "--", Path(__file__).name)
    if not tracked or tracked.returncode != 0:
        return {**unknown, "installed": f"{_DISTRIBUTION} {_version()}"}
    commit, status = _git(here, "rev-parse", "HEAD"), _git(here, "status", "--porcelain", "--untracked-files=no")
    if commit is None or commit.returncode != 0:
        return unknown
    dirty = bool(status.stdout.strip()) if status is not None and status.returncode == 0 else None
    return {"commit": commit.stdout.strip(), "dirty": dirty}


def _version() -> str:
    """The installed distribution's version, from its metadata."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: no package metadata)"


def _git(where: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """``git -C where args``, run to the end; None if git cannot be run at all."""
    try:
        env = {**os.environ, "LC_ALL": "C"}  # git's messages in English, as read above
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None


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
