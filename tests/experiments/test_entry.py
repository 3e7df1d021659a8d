"""The ``dash-warmstart`` entry point (``_dash_warmstart.run``): Ctrl-C while torch is imported."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs the entry point in a fresh interpreter, with a Ctrl-C arriving while the command (and so
# torch) is being imported: a finder that is asked for the module first sends the signal.
_CTRL_C_WHILE_IMPORTING = """
import importlib.abc
import signal
import sys


class CtrlCWhileImporting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch_dash_optim.experiments.cli":
            signal.raise_signal(signal.SIGINT)
        return None  # the normal finders then import it


if sys.argv[1] == "ignored":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a shell starts
sys.meta_path.insert(0, CtrlCWhileImporting())
import _dash_warmstart

sys.argv = ["dash-warmstart", "--help"]
status = _dash_warmstart.run()
print("imported to the end:", "torch_dash_optim.experiments.cli" in sys.modules)
sys.exit(status)
"""


def _run(sigint: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _CTRL_C_WHILE_IMPORTING, sigint]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_console_script_is_the_light_entry_point() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert installed["dash-warmstart"] == "_dash_warmstart:run"
    code = (
        "import sys, _dash_warmstart; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torch_dash_optim'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stderr  # importing it imports neither torch nor the package


def test_ctrl_c_while_importing_exits_130_with_a_message_and_no_traceback() -> None:
    result = _run("default")
    assert result.returncode == 130, result.stderr
    assert "interrupted while starting (importing torch); nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert "usage: dash-warmstart" not in result.stdout  # the command itself never ran
    assert "imported to the end: True" in result.stdout  # torch's import was not cut short


def test_a_ctrl_c_ignored_by_the_shell_stays_ignored() -> None:
    result = _run("ignored")
    assert result.returncode == 0, result.stderr
    assert "usage: dash-warmstart" in result.stdout and "interrupted" not in result.stderr
