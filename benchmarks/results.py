"""Result records, the machine description, and JSON / markdown output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Result", "Run", "machine"]


@dataclass
class Result:
    """One figure of the benchmark.

    Attributes
    ----------
    section:
        Which benchmark (``"gather"``, ``"memory"``, ``"shrink"``, ``"step"``, ``"scaling"``, ``"gpu"``).
    name:
        What was measured, e.g. ``"resnet18: on_new_data / floor"``.
    value:
        The number.
    unit:
        ``"x"`` for a ratio, ``"s"``, ``"us/Mparam"``, ``"x param bytes"``, ...
    goal:
        The goal as text (``"<= 1.05"``), or ``""`` for a figure without one.
    holds:
        Whether the goal holds (``None`` without a goal).
    note:
        Anything needed to read the figure.

    Examples
    --------
    >>> Result("step", "sgd", 1.01, "x", "<= 1.02", True).holds
    True
    """

    section: str
    name: str
    value: float
    unit: str
    goal: str = ""
    holds: bool | None = None
    note: str = ""


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict[str, Any]:
    """Describe the machine: CPU model, cores, torch version and threads, GPU if used.

    Examples
    --------
    >>> "torch" in machine()
    True
    """
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class Run:
    """All results of one run, with the machine and the command.

    Examples
    --------
    >>> run = Run(command="python -m benchmarks --quick", machine={"cpu": "x"})
    >>> run.add(Result("step", "sgd", 1.0, "x", "<= 1.02", True))
    >>> "| step | sgd |" in run.markdown()
    True
    """

    command: str
    machine: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        """Append a result."""
        self.results.append(result)

    def to_json(self) -> str:
        """The run as JSON."""
        return json.dumps(
            {
                "command": self.command,
                "machine": self.machine,
                "seconds": self.seconds,
                "results": [asdict(r) for r in self.results],
            },
            indent=2,
        )

    def markdown(self) -> str:
        """The run as a markdown table (one row per result)."""
        lines = [
            f"Command: `{self.command}`  ",
            "Machine: " + ", ".join(f"{k}={v}" for k, v in self.machine.items()) + "  ",
            f"Wall time of the run: {self.seconds:.0f} s",
            "",
            "| section | figure | value | unit | goal | holds | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            holds = "" if r.holds is None else ("yes" if r.holds else "**no**")
            lines.append(
                f"| {r.section} | {r.name} | {_fmt(r.value)} | {r.unit} | {r.goal} | {holds} | {r.note} |"
            )
        return "\n".join(lines) + "\n"

    def rst(self) -> str:
        """The results as a reStructuredText ``list-table`` (for the docs)."""
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 10 40 10 12 8 6 30",
            "",
            "   * - section",
            "     - figure",
            "     - value",
            "     - unit",
            "     - goal",
            "     - holds",
            "     - note",
        ]
        for r in self.results:
            holds = "" if r.holds is None else ("yes" if r.holds else "**no**")
            cells = [r.section, r.name, _fmt(r.value), r.unit, r.goal, holds, r.note]
            lines.append(f"   * - {_rst_cell(cells[0])}")
            for i, c in enumerate(cells[1:], 1):
                lines.append(f"     - {c if i == 5 and c else _rst_cell(c)}")
        return "\n".join(lines) + "\n"


def _rst_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*") if text else "\\-"


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3f}"
    return f"{value:.3g}"
