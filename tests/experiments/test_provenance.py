"""Provenance names the code that ran: its commit in a clone, the installed package when not a clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torch_dash_optim
from torch_dash_optim.experiments import provenance
from torch_dash_optim.experiments.provenance import add_invocation, git_commit, read_provenance

PACKAGE = Path(torch_dash_optim.__file__).resolve().parent
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def _run_copy(where: Path, code: str) -> str:
    """Run ``code`` in a fresh Python that imports a copy of the package placed in ``where``."""
    shutil.copytree(PACKAGE, where / "torch_dash_optim", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(where), "GIT_CEILING_DIRECTORIES": str(where.parent)}
    done = subprocess.run([sys.executable, "-c", code], cwd=where, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return done.stdout


@needs_git
def test_in_the_clone_the_commit_is_the_checkout_head() -> None:
    head = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    found = git_commit()
    assert found["commit"] == head and isinstance(found["dirty"], bool)
    assert "installed" not in found


@needs_git
def test_outside_a_clone_it_records_the_installed_package(tmp_path: Path) -> None:
    code = ("import json, torch_dash_optim.experiments.provenance as p; "
            f"assert p.__file__.startswith({str(tmp_path)!r}), p.__file__; print(json.dumps(p.git_commit()))")
    found = json.loads(_run_copy(tmp_path, code))
    assert found == {"commit": None, "dirty": None, "installed": f"torch-dash-optim {torch_dash_optim.__version__}"}


@needs_git
def test_a_package_that_a_work_tree_does_not_track_is_installed_too(tmp_path: Path) -> None:
    """A venv inside a clone (``.venv/lib/.../site-packages``) is in a work tree that does not track it."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    venv = tmp_path / "venv"
    venv.mkdir()
    code = "import json, torch_dash_optim.experiments.provenance as p; print(json.dumps(p.git_commit()))"
    found = json.loads(_run_copy(venv, code))
    assert found["commit"] is None and found["installed"].startswith("torch-dash-optim ")


def test_without_git_it_says_it_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no git command on the path
    assert git_commit() == {"commit": None, "dirty": None}


def test_each_invocation_records_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"commit": None, "dirty": None, "installed": "torch-dash-optim 9.9"}
    monkeypatch.setattr(provenance, "git_commit", lambda: installed)
    add_invocation(tmp_path, "dash-warmstart --out x", 1, 1, 2.0, 1.0)
    monkeypatch.setattr(provenance, "git_commit", lambda: {"commit": "ab" * 20, "dirty": False})
    add_invocation(tmp_path, "dash-warmstart --resume --out x", 1, 1, 2.0, 1.0)
    first, second = read_provenance(tmp_path)
    assert (first["commit"], first["installed"]) == (None, "torch-dash-optim 9.9")
    assert second["commit"] == "ab" * 20 and "installed" not in second
